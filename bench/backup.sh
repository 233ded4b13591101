#!/usr/bin/env bash
# make bench: issue #11's backup figures, each a ratio to a reference measured
# in the same run, natively on this machine (no lab):
#   full backup of 4 GiB vs zstd -1 -T2 (the CPU bound)      goal <= 1.2x
#   full backup vs restic backup --stdin (Debian's restic)   goal <= 0.5x
#   restore vs restic restore                                goal <= 0.5x
#   second, unchanged backup vs the first                    goal <= 0.1x
#     (next to its floor: reading the file, and SHA-256 of its non-zero
#     two thirds spread over every core, whichever is longer)
#   peak RSS of the full backup                              goal <= 128 MiB
# Restores are timed alone and with the sync that makes them durable.
# The data: a third zeros, a third binaries and text from /usr, a third random.
# It lives under $BENCH_DIR (default /var/tmp/blk-bench-backup), removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
for t in zstd restic openssl /usr/bin/time; do
  command -v $t >/dev/null || { apt-get update -q; apt-get install -y -q zstd restic openssl time; }
done
dir=${BENCH_DIR:-/var/tmp/blk-bench-backup}
rm -rf "$dir"
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT
go build -o "$dir/backupfile" ./bench/backupfile

data=$dir/data
mib=${BENCH_MIB:-4096} # the issue's figure is 4 GiB; smaller for a quick look
third=$((mib / 3))
echo "== generating $mib MiB of test data in $data"
{
  head -c $((third << 20)) /dev/zero
  find /usr/bin /usr/share /usr/lib -type f -print0 2>/dev/null | xargs -0 cat 2>/dev/null | head -c $((third << 20)) || true
  head -c $(((mib - 2 * third) << 20)) /dev/urandom
} > "$data"
test "$(stat -c %s "$data")" -eq $((mib << 20)) || { echo "test data is short"; exit 1; }
# Each measured run reads from the page cache: the data and a repository
# are read once just before, so the order of the runs favours no one.
warm() { find "$@" -type f -exec cat {} + > /dev/null; }

# measure NAME CMD...: run CMD under /usr/bin/time; wall seconds, CPU
# seconds (user+sys, children included) and peak RSS land in $dir/NAME.time.
# CPU seconds are reported too: other work on a shared machine stretches
# wall times, far less CPU times.
measure() {
  local name=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$dir/$name.time" "$@" > "$dir/$name.out"
}
wall() { cut -d' ' -f1 "$dir/$1.time"; }
cpu() { awk '{print $2 + $3}' "$dir/$1.time"; }
rss_mib() { awk '{print int($4 / 1024)}' "$dir/$1.time"; }

echo "== zstd -1 -T2"
warm "$data"
measure zstd sh -c "zstd -q -1 -T2 -c '$data' > /dev/null"

echo "== blk full backup"
warm "$data"
measure full "$dir/backupfile" backup -repo "$dir/repo" "$data"
full_id=$(sed -n 's/.*"uuid":"\([^"]*\)".*/\1/p' "$dir/full.out")

echo "== blk second backup, unchanged, read in full (thick LVM, NFS)"
warm "$data"
measure again "$dir/backupfile" backup -repo "$dir/repo" -parent "$full_id" "$data"
echo "== blk second backup, unchanged, thin_delta says nothing changed"
measure thin "$dir/backupfile" backup -repo "$dir/repo" -parent "$full_id" -unchanged "$data"

echo "== floor of a read in full: cat, and SHA-256 of the file (openssl, one core)"
warm "$data"
measure cat sh -c "cat '$data' > /dev/null"
measure sha openssl dgst -sha256 "$data"

echo "== restic backup --stdin"
export RESTIC_PASSWORD=bench RESTIC_REPOSITORY=$dir/restic
restic init -q
warm "$data"
measure restic sh -c "restic backup -q --stdin --stdin-filename data < '$data'"

echo "== blk restore"
sync
warm "$dir/repo"
measure restore "$dir/backupfile" restore -repo "$dir/repo" -id "$full_id" "$dir/restored"
measure restore-sync sync
cmp "$data" "$dir/restored"
rm -f "$dir/restored"

echo "== restic restore"
sync
warm "$dir/restic"
measure rrestore restic restore -q latest --target "$dir/rrestored"
measure rrestore-sync sync
cmp "$data" "$dir/rrestored/data"

ratio() { echo "scale=3; $1 / $2" | bc; }
# A restore is done when its data is on disk: restic does not fsync, so
# each restore is also timed with the sync that follows it.
for n in restore rrestore; do
  read -r w1 u1 s1 m1 < "$dir/$n.time"
  read -r w2 u2 s2 _ < "$dir/$n-sync.time"
  echo "$(echo "$w1 + $w2" | bc) $(echo "$u1 + $u2" | bc) $(echo "$s1 + $s2" | bc) $m1" > "$dir/$n+sync.time"
done
line() { # label name reference goal
  printf '  %-30s %7.2fs wall %7.2fs cpu' "$1" "$(wall $2)" "$(cpu $2)"
  if [ -n "${3:-}" ]; then
    printf '   %sx / %sx %s (goal <= %s)' "$(ratio "$(wall $2)" "$(wall $3)")" "$(ratio "$(cpu $2)" "$(cpu $3)")" "$3" "$4"
  fi
  echo
}
echo
echo "backup figures ($mib MiB, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), one run; ratios wall / cpu)"
line "zstd -1 -T2" zstd
line "restic backup --stdin" restic
line "restic restore" rrestore
line "restic restore + sync" rrestore+sync
line "blk full backup" full zstd 1.2
line "blk full backup" full restic 0.5
line "blk restore" restore rrestore 0.5
line "blk restore + sync" restore+sync rrestore+sync 0.5
line "blk unchanged, full read" again full 0.1
# Zero chunks are not hashed: the floor hashes the other two thirds.
floor=$(awk -v c="$(wall cat)" -v s="$(cpu sha)" -v f="$(echo "($mib - $third) / $mib" | bc -l)" -v n="$(nproc)" \
  'BEGIN { h = s * f / n; printf "%.2f", (c > h ? c : h) }')
echo "  floor of a full read            ${floor}s: max(cat $(wall cat)s, SHA-256 of the non-zero data $(cpu sha)s cpu x $(((mib - third) * 100 / mib))% / $(nproc) cores) = $(ratio "$floor" "$(wall full)")x full"
line "blk unchanged, thin_delta" thin full 0.1
echo "  blk full backup peak RSS       $(rss_mib full) MiB (goal <= 128)"
echo "  repository: blk $(du -sm "$dir/repo" | cut -f1) MiB, restic $(du -sm "$dir/restic" | cut -f1) MiB"
