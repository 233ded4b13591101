#!/usr/bin/env bash
# Issue #11's lab figure, run inside the lab guest by the lead (blk local
# there): an incremental backup of a thin volume after 1% of it changed,
# against a full backup of the same volume.      goal <= 0.1x
#   BLK=/path/to/blk BLK_CONFIG=$LAB/blk-local.yaml bench/incremental.sh
# The volume (BENCH_MIB, default 2048) is filled with random data (nothing
# for dedup or zero-skipping to win on), backed up in full (--full, timed),
# 1% of it rewritten in whole chunks spread over the volume, and backed up
# again (incremental, timed). Volume and backups are removed at the end.
set -euo pipefail
blk=${BLK:-blk}
export BLK_CONFIG=${BLK_CONFIG:?set BLK_CONFIG to the lab config (blk-local.yaml inside the guest)}
mib=${BENCH_MIB:-2048}
name=bench-inc-$$
json() { sed -n "s/.*\"$1\": *\"\{0,1\}\([^,\"}]*\)\"\{0,1\}.*/\1/p" | head -1; }

cleanup() {
  for u in $("$blk" backup list "$name" -o json 2>/dev/null | grep -o '"uuid": *"[^"]*"' | cut -d'"' -f4); do
    "$blk" backup delete "$u" --yes >/dev/null 2>&1 || true
  done
  "$blk" volume delete "$name" --yes >/dev/null 2>&1 || true
}
trap cleanup EXIT

path=$("$blk" volume create "$name" --size "${mib}MiB" --thin -o json | json path)
echo "== filling $mib MiB of $path with random data"
head -c $((mib << 20)) /dev/urandom | dd of="$path" bs=4M iflag=fullblock oflag=direct status=none
"$blk" backup create "$name" -q >/dev/null # the base of the incremental one

# timed NAME CMD...: wall seconds of CMD into $NAME_s, its JSON into $NAME_json.
timed() {
  local n=$1; shift
  local t0 t1 out
  t0=$(date +%s.%N)
  out=$("$@")
  t1=$(date +%s.%N)
  printf -v "${n}_s" '%s' "$(echo "$t1 - $t0" | bc)"
  printf -v "${n}_json" '%s' "$out"
}

echo "== full backup (--full: every chunk read, none new to store)"
timed full "$blk" backup create "$name" --full -o json
# 1%: whole 4 MiB chunks evenly spread. (1% in 64 KiB writes spread evenly
# would touch about 64% of the chunks: a backup of fixed 4 MiB chunks reads
# every chunk a write touches.)
chunks=$((mib / 4))
writes=$(((chunks + 99) / 100))
step=$((chunks / writes))
echo "== rewriting $writes chunks of 4 MiB (1% of the volume)"
for i in $(seq 0 $((writes - 1))); do
  head -c 4194304 /dev/urandom | dd of="$path" bs=4M seek=$((i * step)) iflag=fullblock oflag=direct conv=notrunc status=none
done
sync
echo "== incremental backup"
timed inc "$blk" backup create "$name" -o json

full_read=$(echo "$full_json" | json read_bytes)
inc_read=$(echo "$inc_json" | json read_bytes)
incremental=$(echo "$inc_json" | json incremental)
ratio=$(echo "scale=3; $inc_s / $full_s" | bc)
printf 'full backup:        %6.2fs, read %d bytes\n' "$full_s" "$full_read"
printf 'incremental backup: %6.2fs, read %d bytes (incremental: %s)\n' "$inc_s" "$inc_read" "$incremental"
printf 'incremental / full: %sx (goal <= 0.1x)\n' "$ratio"
[ "$incremental" = true ] || { echo "the second backup was not incremental"; exit 1; }
