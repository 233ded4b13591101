#!/usr/bin/env bash
# make bench: the figures issues #2 and #7 name, each as a ratio to a reference
# measured in the same run (the machines are shared and noisy).
#  1. blk volume list -o json over 10,000 volumes vs sqlite3 -json printing the
#     same join from the same file (bench/list-ref.sql), on this machine.
#  2. start-up: blk version and blk volume list (empty state) vs /bin/true and
#     lvm version, on this machine.
#  3. blk volume list -o json over 10,000 volumes vs one lvs --reportformat json,
#     both inside the lab guest (where LVM works), same emulated CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
for t in hyperfine sqlite3; do
  command -v $t >/dev/null || { apt-get update -q; apt-get install -y -q $t; }
done
LAB=$(lab/lab.sh dir)
out=$LAB/bench/run-$(date +%s)
mkdir -p "$out"
go build -o "$out/blk" ./cmd/blk
go build -o "$out/seed" ./bench/seed
"$out/seed" -state "$out/10k.db" -n 10000
cat > "$out/blk.yaml" <<YAML
state: $out/empty.db
hosts: {local: {local: true}}
backends: {lvm-1: {type: lvm, host: local, vg: blk, portal: "127.0.0.1:3260", iqn_prefix: iqn.2026-11.org.example.blk}}
YAML
export LVM_SUPPRESS_FD_WARNINGS=1

echo "== list 10,000 volumes: blk vs sqlite3 -json of the same join, on this machine"
printf '#!/bin/sh\nexec sqlite3 -json %s < %s\n' "$out/10k.db" "$PWD/bench/list-ref.sql" > "$out/sqlite3-json"
chmod +x "$out/sqlite3-json"
hyperfine -N -w 5 -r 60 --export-json "$out/list-native.json" \
  -n 'sqlite3 -json' "$out/sqlite3-json" \
  -n 'blk volume list -o json' "$out/blk --config $out/blk.yaml --state $out/10k.db volume list -o json"

echo "== start-up on this machine (empty state file)"
"$out/seed" -state "$out/empty.db" -n 0 # volume list reads, never creates, the state file
hyperfine -N -w 5 -r 100 --export-json "$out/startup.json" \
  -n true /bin/true \
  -n 'lvm version' 'lvm version' \
  -n 'blk version' "$out/blk version" \
  -n 'blk volume list' "$out/blk --config $out/blk.yaml volume list -o json"

echo "== list 10,000 volumes vs one lvs call, in the lab guest"
started=0
lab/lab.sh status >/dev/null 2>&1 || { started=1; lab/lab.sh up; }
lab/lab.sh ssh "cd /tmp && LVM_SUPPRESS_FD_WARNINGS=1 hyperfine -N -w 3 -r 30 --export-json /tmp/list.json \
  -n 'lvs --reportformat json' 'lvs --reportformat json --units b --nosuffix -o lv_name,vg_name,lv_size,lv_tags blk' \
  -n 'blk volume list -o json (10k)' '$out/blk --config $out/blk.yaml --state $out/10k.db volume list -o json' \
  && cat /tmp/list.json" > "$out/list.json.raw"
sed -n '/^{/,$p' "$out/list.json.raw" > "$out/list.json"
[ "$started" = 1 ] && lab/lab.sh down

python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def load(f):
    return {r["command"]: r for r in json.load(open(f"{out}/{f}"))["results"]}
n = load("list-native.json")
s = load("startup.json")
l = load("list.json")
ms = lambda r: f'{r["median"]*1000:.1f} ms'
b, r = n["blk volume list -o json"], n["sqlite3 -json"]
print(f'\nlist 10,000 volumes, this machine (median): blk {ms(b)} = {b["median"]/r["median"]:.2f}x sqlite3 -json of the same join ({ms(r)})')
print("\nstart-up (this machine, median):")
for k in ["blk version", "blk volume list"]:
    print(f'  {k:<18} {ms(s[k]):>10}  = {s[k]["median"]/s["true"]["median"]:.1f}x /bin/true, {s[k]["median"]/s["lvm version"]["median"]:.2f}x lvm version ({ms(s["lvm version"])})')
b, r = l["blk volume list -o json (10k)"], l["lvs --reportformat json"]
print("\nlist in the lab guest (median):")
print(f'  blk volume list -o json, 10,000 volumes: {ms(b)}  = {b["median"]/r["median"]:.2f}x one lvs --reportformat json ({ms(r)})')
PY
rm -rf "$out"
