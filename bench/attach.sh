#!/usr/bin/env bash
# Attach and detach wall times in the lab (issue #4), each as a ratio to a
# bash script running the same bare tgtadm/iscsiadm/virsh sequence
# (bench/ref-attach.sh, bench/ref-detach.sh), measured in the same run inside
# the guest; plus the SSH connections one blk invocation opens per host when
# it drives the guest from this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-7}
LAB=$(lab/lab.sh dir)
out=$LAB/bench/attach-$(date +%s)
mkdir -p "$out"
go build -o "$out/blk" ./cmd/blk
cp bench/ref-attach.sh bench/ref-detach.sh "$out/"
started=0
lab/lab.sh status >/dev/null 2>&1 || { started=1; lab/lab.sh up; }
trap '[ "$started" = 1 ] && lab/lab.sh down' EXIT

lab/lab.sh ssh "set -e; cd $out
export BLK_CONFIG=$LAB/blk-local.yaml BLK_STATE=$out/state.db
B=$out/blk
\$B volume create bench-blk --size 64MiB -q >/dev/null
\$B volume create bench-ref --size 64MiB -q -o json > ref.json
U=\$(sed 's/.*\"uuid\":\"\([^\"]*\)\".*/\1/' ref.json); LV=/dev/blk/volume-\$U
hyperfine -N -w 1 -r $RUNS --export-json attach.json \
  -n 'blk attach' -p \"\$B volume detach bench-blk -q\" \"\$B volume attach bench-blk --instance lab-vm1 --bus scsi -q\" \
  -n 'bash attach' -p \"bash -c './ref-detach.sh \$U lab-vm1 >/dev/null 2>&1; true'\" \"./ref-attach.sh \$LV \$U lab-vm1\" >&2
hyperfine -N -w 1 -r $RUNS --export-json detach.json \
  -n 'blk detach' -p \"\$B volume attach bench-blk --instance lab-vm1 --bus scsi -q\" \"\$B volume detach bench-blk -q\" \
  -n 'bash detach' -p \"bash -c './ref-detach.sh \$U lab-vm1 >/dev/null 2>&1; ./ref-attach.sh \$LV \$U lab-vm1'\" \"./ref-detach.sh \$U lab-vm1\" >&2
\$B volume detach bench-blk -q >/dev/null
./ref-detach.sh \$U lab-vm1 >/dev/null 2>&1 || true
\$B volume delete bench-blk bench-ref --yes -q >/dev/null"

# One blk invocation over SSH: how many connections to the guest?
export BLK_CONFIG=$LAB/blk-ssh.yaml BLK_STATE=$out/ssh.db
"$out/blk" volume create bench-ssh --size 8MiB -q >/dev/null
conns() { "$out/blk" -v "$@" 2>&1 >/dev/null | sed -n 's/.*msg=ssh host=\([^ ]*\) connections=\([0-9]*\).*/\1=\2/p'; }
ca=$(conns volume attach bench-ssh --instance lab-vm1 --bus scsi)
cd_=$(conns volume detach bench-ssh)
"$out/blk" volume delete bench-ssh --yes -q >/dev/null

# The guest writes into its own overlay: fetch the results.
for f in attach detach; do lab/lab.sh ssh cat "$out/$f.json" > "$out/$f.json"; done
python3 - "$out" "$ca" "$cd_" <<'PY'
import json, sys
out, ca, cd = sys.argv[1:]
for op in ("attach", "detach"):
    r = {x["command"]: x for x in json.load(open(f"{out}/{op}.json"))["results"]}
    b, s = r[f"blk {op}"], r[f"bash {op}"]
    print(f"{op}: blk median {b['median']:.2f}s, bare bash script {s['median']:.2f}s: ratio {b['median']/s['median']:.2f}x ({len(b['times'])} runs each)")
print(f"ssh connections per invocation from this machine: attach {ca}, detach {cd}")
PY
rm -rf "$out"
