#!/usr/bin/env bash
# NFS attach and detach wall times in the lab (issue #9), each as a ratio to
# a bash script running the bare sequence (bench/ref-nfs-attach.sh: mount +
# virsh attach-device; bench/ref-nfs-detach.sh: virsh detach-device +
# umount), measured in the same run inside the guest. Each side runs alone:
# the other's volume is detached and its mount gone, so neither reuses a
# mount the other made.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-7}
LAB=$(lab/lab.sh dir)
out=$LAB/bench/nfs-attach-$(date +%s)
mkdir -p "$out"
go build -o "$out/blk" ./cmd/blk
cp bench/ref-nfs-attach.sh bench/ref-nfs-detach.sh "$out/"
started=0
lab/lab.sh status >/dev/null 2>&1 || { started=1; lab/lab.sh up; }
trap '[ "$started" = 1 ] && lab/lab.sh down' EXIT

lab/lab.sh ssh "set -e; cd $out
export BLK_CONFIG=$LAB/blk-local.yaml BLK_STATE=$out/state.db
B=$out/blk E=127.0.0.1:/srv/blk
\$B volume create bench-blk --size 64MiB --backend nfs-1 -q >/dev/null
\$B volume create bench-ref --size 64MiB --backend nfs-1 -q -o json > ref.json
U=\$(sed 's/.*\"uuid\":\"\([^\"]*\)\".*/\1/' ref.json); F=volume-\$U
h() { hyperfine -N -w 1 -r $RUNS \"\$@\" >&2; }
h --export-json blk-attach.json -n 'blk attach' -p \"\$B volume detach bench-blk -q\" \
  \"\$B volume attach bench-blk --instance lab-vm1 --bus scsi -q\"
\$B volume detach bench-blk -q
h --export-json bash-attach.json -n 'bash attach' -p \"bash -c './ref-nfs-detach.sh \$U lab-vm1 >/dev/null 2>&1; true'\" \
  \"./ref-nfs-attach.sh \$E \$F \$U lab-vm1\"
./ref-nfs-detach.sh \$U lab-vm1
h --export-json blk-detach.json -n 'blk detach' -p \"\$B volume attach bench-blk --instance lab-vm1 --bus scsi -q\" \
  \"\$B volume detach bench-blk -q\"
h --export-json bash-detach.json -n 'bash detach' -p \"./ref-nfs-attach.sh \$E \$F \$U lab-vm1\" \
  \"./ref-nfs-detach.sh \$U lab-vm1\"
\$B volume delete bench-blk bench-ref --yes -q >/dev/null
if findmnt --source \$E >/dev/null; then echo 'a mount of the export is left' >&2; exit 1; fi"

# The guest writes into its own overlay: fetch the results.
for f in blk-attach bash-attach blk-detach bash-detach; do lab/lab.sh ssh cat "$out/$f.json" > "$out/$f.json"; done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
for op in ("attach", "detach"):
    b = json.load(open(f"{out}/blk-{op}.json"))["results"][0]
    s = json.load(open(f"{out}/bash-{op}.json"))["results"][0]
    print(f"nfs {op}: blk median {b['median']:.2f}s, bare bash script {s['median']:.2f}s: ratio {b['median']/s['median']:.2f}x ({len(b['times'])} runs each)")
PY
rm -rf "$out"
