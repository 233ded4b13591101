#!/usr/bin/env bash
# make lab-test: build blk and the lab test binary here, boot (or reuse) the
# lab, run the tests with blk on this machine driving the guest over SSH and
# with blk inside the guest, shut down what this run booted, and print a
# summary. Exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
LAB=$(lab/lab.sh dir)
started=0
lab/lab.sh status >/dev/null 2>&1 || started=1
finish() {
  [ "$started" = 1 ] && [ -z "${BLK_LAB_KEEP:-}" ] && lab/lab.sh down
}
trap finish EXIT
t0=$(date +%s.%N)
lab/lab.sh up || exit 1
# The guest sees this machine's files over 9p, which may cache a file seen
# before: build into a folder of its own for each run.
bin=$LAB/bin/run-$(date +%s)-$$
mkdir -p "$bin"
go build -o "$bin/blk" ./cmd/blk || exit 1
# TestCrash kills blk at every step of every workflow: the matrix of create,
# delete, attach and detach took about 15 minutes a mode; NFS, snapshots,
# extend, clones and images add to it (BLK_LAB_RUN='TestCrash/...' runs a
# part; BLK_LAB_TIMEOUT, 45m by default, bounds each mode). By default it
# tries the first, every third and the last kill point (make check, CI: every sixth);
# BLK_CRASH_EVERY=1 runs all of them.
export BLK_CRASH_EVERY=${BLK_CRASH_EVERY:-3}
timeout=${BLK_LAB_TIMEOUT:-45m}
# The same blk with the fault-injection switch, for TestCrash (crash_test.go).
go build -tags faultinject -o "$bin/blk-fault" ./cmd/blk || exit 1
go test -c -tags lab -o "$bin/lab.test" ./test/lab || exit 1
t1=$(date +%s.%N)

fail=0 pass=0 failed=0
# BLK_LAB_MODES picks the modes to run (both by default).
modes=${BLK_LAB_MODES:-over-ssh in-guest}
run() {
  local where=$1; shift
  case " $modes " in *" $where "*) ;; *) return 0 ;; esac
  echo "=== lab tests, blk $where"
  "$@" 2>&1 | tee "$bin/$where.log"
  local rc=${PIPESTATUS[0]}
  pass=$((pass + $(grep -c -- '^--- PASS' "$bin/$where.log")))
  failed=$((failed + $(grep -c -- '^--- FAIL' "$bin/$where.log")))
  [ "$rc" = 0 ] || fail=1
}
ssh_conf="$LAB/blk-ssh.yaml"
rm -f "$LAB"/state/ssh.db*
run over-ssh env BLK_BIN="$bin/blk" BLK_FAULT_BIN="$bin/blk-fault" BLK_CONFIG="$ssh_conf" \
  BLK_LAB_SSH="127.0.0.1:${BLK_LAB_PORT:-2222},$LAB/ssh/id_ed25519,$LAB/ssh/known_hosts" \
  "$bin/lab.test" -test.v -test.timeout $timeout ${BLK_LAB_RUN:+-test.run "$BLK_LAB_RUN"}
run in-guest lab/lab.sh ssh "rm -f /var/lib/blk/state.db*; cd /tmp && BLK_BIN=$bin/blk BLK_FAULT_BIN=$bin/blk-fault ${BLK_CRASH_EVERY:+BLK_CRASH_EVERY=$BLK_CRASH_EVERY} ${BLK_CRASH_ALL:+BLK_CRASH_ALL=$BLK_CRASH_ALL} BLK_CONFIG=$LAB/blk-local.yaml $bin/lab.test -test.v -test.timeout $timeout ${BLK_LAB_RUN:+-test.run '$BLK_LAB_RUN'}"
t2=$(date +%s.%N)

if [ "$fail" != 0 ]; then
  lab/lab.sh console
  echo "lab: the failing tests above show blk's error: host, command and the tool's stderr"
fi
printf 'lab: build+boot %.1fs, tests %.1fs\n' "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)"
rm -rf "$bin"
echo "lab: $pass passed, $failed failed"
exit $fail
