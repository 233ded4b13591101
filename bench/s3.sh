#!/usr/bin/env bash
# Issue #13's S3 figure: a full backup (and its restore) of the same data
# into an S3 repository served by versitygw on 127.0.0.1, against a local
# directory repository, natively on this machine (no lab). Each is run
# BENCH_RUNS times (default 3) into a fresh repository; the medians and the
# ratio S3 / dir are printed.
# The data (BENCH_MIB, default 1024): as bench/backup.sh, a third zeros, a
# third binaries and text from /usr, a third random. It, both repositories
# and versitygw's directory live under $BENCH_DIR (default
# /var/tmp/blk-bench-s3, one file system), removed at the end.
# versitygw: $BLK_VERSITYGW, else on PATH, else $(go env GOPATH)/bin
# (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { apt-get update -q; apt-get install -y -q time; }
vgw=${BLK_VERSITYGW:-$(command -v versitygw || echo "$(go env GOPATH)/bin/versitygw")}
test -x "$vgw" || { echo "no versitygw: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"; exit 1; }
dir=${BENCH_DIR:-/var/tmp/blk-bench-s3}
runs=${BENCH_RUNS:-3}
rm -rf "$dir"
mkdir -p "$dir/gw"
pid=
trap '[ -n "$pid" ] && kill "$pid"; rm -rf "$dir"' EXIT
go build -o "$dir/backupfile" ./bench/backupfile

data=$dir/data
mib=${BENCH_MIB:-1024}
third=$((mib / 3))
echo "== generating $mib MiB of test data in $data"
{
  head -c $((third << 20)) /dev/zero
  find /usr/bin /usr/share /usr/lib -type f -print0 2>/dev/null | xargs -0 cat 2>/dev/null | head -c $((third << 20)) || true
  head -c $(((mib - 2 * third) << 20)) /dev/urandom
} > "$data"
test "$(stat -c %s "$data")" -eq $((mib << 20)) || { echo "test data is short"; exit 1; }

export AWS_ACCESS_KEY_ID=benchaccess AWS_SECRET_ACCESS_KEY=bench-secret-key
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$vgw" --access "$AWS_ACCESS_KEY_ID" --secret "$AWS_SECRET_ACCESS_KEY" --port "127.0.0.1:$port" --quiet posix "$dir/gw" > "$dir/gw.log" 2>&1 &
pid=$!
endpoint=http://127.0.0.1:$port
for _ in $(seq 100); do curl -s -o /dev/null "$endpoint/" && break; sleep 0.1; done
curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
  -X PUT "$endpoint/bench" \
  || { echo "cannot make the bucket"; cat "$dir/gw.log"; exit 1; }

warm() { find "$@" -type f -exec cat {} + > /dev/null; }
measure() { # NAME CMD...: wall, user and sys seconds in $dir/NAME.time
  local name=$1; shift
  /usr/bin/time -f "%e %U %S" -o "$dir/$name.time" "$@" > "$dir/$name.out"
}
median() { # NAME-PREFIX: median wall seconds over the runs
  for i in $(seq "$runs"); do cut -d' ' -f1 "$dir/$1-$i.time"; done | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
for i in $(seq "$runs"); do
  echo "== run $i: full backup into a directory, then into S3, then both restores"
  warm "$data"
  sync
  measure dir-$i "$dir/backupfile" backup -repo "$dir/repo-$i" "$data"
  warm "$data"
  sync
  measure s3-$i "$dir/backupfile" backup -s3 "$endpoint" -repo "bench/run-$i" "$data"
  id=$(sed -n 's/.*"uuid":"\([^"]*\)".*/\1/p' "$dir/dir-$i.out")
  sid=$(sed -n 's/.*"uuid":"\([^"]*\)".*/\1/p' "$dir/s3-$i.out")
  sync
  measure rdir-$i "$dir/backupfile" restore -repo "$dir/repo-$i" -id "$id" "$dir/restored"
  cmp "$data" "$dir/restored"
  rm -f "$dir/restored"
  sync
  measure rs3-$i "$dir/backupfile" restore -s3 "$endpoint" -repo "bench/run-$i" -id "$sid" "$dir/restored"
  cmp "$data" "$dir/restored"
  rm -f "$dir/restored"
  rm -rf "$dir/repo-$i" "$dir/gw/bench/run-$i"
done
ratio() { echo "scale=2; $1 / $2" | bc; }
d=$(median dir) s=$(median s3) rd=$(median rdir) rs=$(median rs3)
echo
echo "S3 figures ($mib MiB, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), median of $runs runs, versitygw posix on 127.0.0.1)"
printf '  %-28s %7.2fs   %6.0f MiB/s\n' "full backup, directory" "$d" "$(echo "$mib / $d" | bc -l)"
printf '  %-28s %7.2fs   %6.0f MiB/s   %sx the directory\n' "full backup, S3" "$s" "$(echo "$mib / $s" | bc -l)" "$(ratio "$s" "$d")"
printf '  %-28s %7.2fs   %6.0f MiB/s\n' "restore, directory" "$rd" "$(echo "$mib / $rd" | bc -l)"
printf '  %-28s %7.2fs   %6.0f MiB/s   %sx the directory\n' "restore, S3" "$rs" "$(echo "$mib / $rs" | bc -l)" "$(ratio "$rs" "$rd")"
