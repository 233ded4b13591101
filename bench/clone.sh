#!/usr/bin/env bash
# Clone wall times in the lab (issue #10), each as a ratio to the bare LVM or
# dd command measured in the same run inside the guest:
#  - thin clone of a 4 GiB thin volume (blk volume create --from-volume,
#    a thin snapshot) vs lvcreate -s of the same volume alone;
#  - thick clone (a new LV and blk's streamed copy) vs
#    dd bs=4M iflag=direct oflag=direct of the same LV into an LV of the same
#    size made beforehand (the reference does not count its lvcreate).
# SIZE and THICK_SIZE change the sizes (the thick one needs three times its
# size free in the group); RUNS the repetitions.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
SIZE=${SIZE:-4GiB}
THICK_SIZE=${THICK_SIZE:-1GiB}
LAB=$(lab/lab.sh dir)
out=$LAB/bench/clone-$(date +%s)
mkdir -p "$out"
go build -o "$out/blk" ./cmd/blk
started=0
lab/lab.sh status >/dev/null 2>&1 || { started=1; lab/lab.sh up; }
trap '[ "$started" = 1 ] && lab/lab.sh down' EXIT

lab/lab.sh ssh "set -e; cd $out
export BLK_CONFIG=$LAB/blk-local.yaml BLK_STATE=$out/state.db LVM_SUPPRESS_FD_WARNINGS=1
B=$out/blk
uuid() { sed 's/.*\"uuid\":\"\([^\"]*\)\".*/\1/'; }
T=\$(\$B volume create bench-thin --size $SIZE --thin -q -o json | uuid)
dd if=/dev/urandom of=/dev/blk/volume-\$T bs=4M count=64 oflag=direct status=none
hyperfine -N -w 1 -r $RUNS --export-json thin.json \
  -n 'blk thin clone' -p \"bash -c '\$B volume delete bench-thin-c --yes -q >/dev/null 2>&1; true'\" \
     \"\$B volume create bench-thin-c --from-volume bench-thin -q\" \
  -n 'lvcreate -s' -p \"bash -c 'lvremove -y blk/bench-ref-snap >/dev/null 2>&1; true'\" \
     \"lvcreate -q -s -kn -ay -n bench-ref-snap blk/volume-\$T\" >&2
\$B volume delete bench-thin-c --yes -q >/dev/null 2>&1 || true
lvremove -y blk/bench-ref-snap >/dev/null 2>&1 || true

K=\$(\$B volume create bench-thick --size $THICK_SIZE -q -o json | uuid)
R=\$(\$B volume create bench-ref --size $THICK_SIZE -q -o json | uuid)
dd if=/dev/urandom of=/dev/blk/volume-\$K bs=4M oflag=direct status=none || true
hyperfine -N -w 1 -r $RUNS --export-json thick.json \
  -n 'blk thick clone' -p \"bash -c '\$B volume delete bench-thick-c --yes -q >/dev/null 2>&1; true'\" \
     \"\$B volume create bench-thick-c --from-volume bench-thick -q\" \
  -n 'dd direct' -p true \"dd if=/dev/blk/volume-\$K of=/dev/blk/volume-\$R bs=4M iflag=direct oflag=direct status=none\" >&2
cmp /dev/blk/volume-\$K /dev/blk/volume-\$(\$B volume show bench-thick-c -o json | uuid)
\$B volume delete bench-thin bench-thick bench-thick-c bench-ref --yes -q >/dev/null"

# The guest writes into its own overlay: fetch the results.
for f in thin thick; do lab/lab.sh ssh cat "$out/$f.json" > "$out/$f.json"; done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
for f, blk, ref in (("thin", "blk thin clone", "lvcreate -s"), ("thick", "blk thick clone", "dd direct")):
    r = {x["command"]: x for x in json.load(open(f"{out}/{f}.json"))["results"]}
    b, s = r[blk], r[ref]
    print(f"{blk}: median {b['median']:.2f}s, {ref} {s['median']:.2f}s: ratio {b['median']/s['median']:.2f}x ({len(b['times'])} runs each)")
PY
rm -rf "$out"
