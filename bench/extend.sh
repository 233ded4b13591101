#!/usr/bin/env bash
# Extend of an in-use iSCSI volume (issue 10): blk volume extend vs a bash
# script running the same bare lvextend/tgtadm/iscsiadm/virsh sequence
# (bench/ref-extend.sh), measured alternately in the same run inside the
# guest, on lab-vm1 (scsi: blockresize needs no guest OS). Each run grows
# its volume by 16MiB, so the runs are timed by hand rather than by
# hyperfine, which would run the same command again.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-9}
LAB=$(lab/lab.sh dir)
out=$LAB/bench/extend-$(date +%s)
mkdir -p "$out"
go build -o "$out/blk" ./cmd/blk
cp bench/ref-attach.sh bench/ref-detach.sh bench/ref-extend.sh "$out/"
started=0
lab/lab.sh status >/dev/null 2>&1 || { started=1; lab/lab.sh up; }
trap '[ "$started" = 1 ] && lab/lab.sh down' EXIT

lab/lab.sh ssh "set -e; cd $out
export BLK_CONFIG=$LAB/blk-local.yaml BLK_STATE=$out/state.db
B=$out/blk
\$B volume create bench-ext --size 64MiB -q >/dev/null
\$B volume attach bench-ext --instance lab-vm1 --bus scsi -q >/dev/null
\$B volume create bench-ref --size 64MiB -q -o json > ref.json
U=\$(sed 's/.*\"uuid\":\"\([^\"]*\)\".*/\1/' ref.json); LV=/dev/blk/volume-\$U
./ref-attach.sh \$LV \$U lab-vm1
now() { date +%s%N; }
: > times.txt
for i in \$(seq $RUNS); do
  size=\$(( (64 + 16 * i) * 1048576 ))
  t0=\$(now); \$B volume extend bench-ext --size \$((64 + 16 * i))MiB -q >/dev/null; t1=\$(now)
  ./ref-extend.sh \$LV \$U lab-vm1 \$size; t2=\$(now)
  echo \"\$((t1 - t0)) \$((t2 - t1))\" >> times.txt
done
\$B volume detach bench-ext -q >/dev/null
./ref-detach.sh \$U lab-vm1 >/dev/null 2>&1 || true
\$B volume delete bench-ext bench-ref --yes -q >/dev/null"

lab/lab.sh ssh cat "$out/times.txt" > "$out/times.txt"
python3 - "$out/times.txt" <<'PY'
import statistics, sys
rows = [list(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
b = statistics.median(r[0] for r in rows) / 1e9
s = statistics.median(r[1] for r in rows) / 1e9
print(f"extend in use: blk median {b:.2f}s, bare bash script {s:.2f}s: ratio {b/s:.2f}x ({len(rows)} runs each)")
PY
rm -rf "$out"
