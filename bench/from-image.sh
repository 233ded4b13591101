#!/usr/bin/env bash
# Create from an image (issue 10): blk volume create --from-image of a 256MiB
# qcow2 image (half random data, half zeros) vs qemu-img convert alone into an
# LV made beforehand, thick and thin, in the same run inside the guest.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
LAB=$(lab/lab.sh dir)
out=$LAB/bench/from-image-$(date +%s)
mkdir -p "$out"
go build -o "$out/blk" ./cmd/blk
started=0
lab/lab.sh status >/dev/null 2>&1 || { started=1; lab/lab.sh up; }
trap '[ "$started" = 1 ] && lab/lab.sh down' EXIT

lab/lab.sh ssh "set -e; cd $out
export BLK_CONFIG=$LAB/blk-local.yaml BLK_STATE=$out/state.db
B=$out/blk
head -c 134217728 /dev/urandom > img.raw; truncate -s 268435456 img.raw
qemu-img convert -f raw -O qcow2 img.raw img.qcow2; rm img.raw
lvcreate -q -y -n bench-img-thick -L 256m blk >/dev/null
lvcreate -q -y -n bench-img-thin -V 256m --thinpool pool blk >/dev/null
hyperfine -N -w 1 -r $RUNS --export-json thick.json \
  -n 'blk thick' -p \"bash -c '\$B volume delete bench-img --yes -q >/dev/null 2>&1; true'\" \"\$B volume create bench-img --from-image $out/img.qcow2 -q\" \
  -n 'qemu-img thick' \"qemu-img convert -n -O raw -f qcow2 $out/img.qcow2 /dev/blk/bench-img-thick\" >&2
hyperfine -N -w 1 -r $RUNS --export-json thin.json \
  -n 'blk thin' -p \"bash -c '\$B volume delete bench-img --yes -q >/dev/null 2>&1; true'\" \"\$B volume create bench-img --thin --from-image $out/img.qcow2 -q\" \
  -n 'qemu-img thin' -p \"bash -c 'lvremove -q -y blk/bench-img-thin >/dev/null; lvcreate -q -y -n bench-img-thin -V 256m --thinpool pool blk >/dev/null'\" \
     \"qemu-img convert -n --target-is-zero -O raw -f qcow2 $out/img.qcow2 /dev/blk/bench-img-thin\" >&2
\$B volume delete bench-img --yes -q >/dev/null 2>&1 || true
lvremove -q -y blk/bench-img-thick blk/bench-img-thin >/dev/null"

for f in thick thin; do lab/lab.sh ssh cat "$out/$f.json" > "$out/$f.json"; done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
for kind in ("thick", "thin"):
    r = {x["command"]: x for x in json.load(open(f"{out}/{kind}.json"))["results"]}
    b, q = r[f"blk {kind}"], r[f"qemu-img {kind}"]
    print(f"from image ({kind}): blk median {b['median']:.2f}s, qemu-img convert alone {q['median']:.2f}s: "
          f"ratio {b['median']/q['median']:.2f}x ({len(b['times'])} runs each)")
PY
rm -rf "$out"
