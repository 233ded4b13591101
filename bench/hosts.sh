#!/usr/bin/env bash
# bench/hosts.sh: wall time of 'blk host check', 'blk backend list' and
# 'blk reconcile' (read-only) over 1, 10, 50 and 100 storage hosts, each
# with one lvm backend holding a few volumes (VOLS, 3), simulated on this
# machine (no compute host: no volume is attached): one OpenSSH
# sshd per host on its own port of 127.0.0.1, all sharing a host key and
# an authorized key, whose sessions find stand-in LVM, device-mapper and
# tgt tools first on PATH (sshd's SetEnv). Each stand-in sleeps a few ms,
# as the real tool would take, and prints a healthy host's answer.
#
# blk talks to at most 128 hosts at once (volume.DefaultParallel), over one
# SSH connection each. The goal: 100 hosts in at most 2 s.
# All the simulated hosts share this machine's CPUs, where real hosts each
# have their own: every SSH exec costs a host an sshd session, bash, the
# sh wrapper blk runs and the tool. When the hosts' CPU over the machine's
# CPUs (the floor column) nears the wall time, the simulation, not blk,
# is the limit.
#
# Runs as root (sshd logs in as root, as blk does). Nothing leaves
# 127.0.0.1; every sshd started here is stopped on exit.
#
#   bench/hosts.sh                 # 1 10 50 100 hosts, best of 3 runs
#   COUNTS="1 100" RUNS=5 bench/hosts.sh
set -euo pipefail

counts=${COUNTS:-"1 10 50 100"}
runs=${RUNS:-3}
base_port=${BASE_PORT:-22200}
delay=${TOOL_DELAY:-0.01} # seconds each stand-in LVM tool takes
vols=${VOLS:-3}           # volumes of blk's on each backend

[ "$(id -u)" = 0 ] || { echo "bench/hosts.sh: run as root (the sshd instances log in as root)" >&2; exit 2; }
[ -x /usr/sbin/sshd ] || { echo "bench/hosts.sh: no /usr/sbin/sshd (apt-get install openssh-server)" >&2; exit 2; }

repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/blk-bench-hosts.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	[ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

max=0
for n in $counts; do [ "$n" -gt "$max" ] && max=$n; done

(cd "$repo" && go build -o "$work/blk" ./cmd/blk && go build -o "$work/hostseed" ./bench/hostseed)
mkdir -p /run/sshd # sshd's privilege separation directory
ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -C bench-user -f "$work/id"
cp "$work/id.pub" "$work/authorized_keys"

# The stand-in tools: what a healthy storage host with volume group blk
# and thin pool blk/pool answers, holding $vols thin volumes of blk's (as
# bench/hostseed records them in the state file, so that reconcile finds
# no drift) and no iSCSI target (no volume is attached). One small C
# program, named as each tool: a shell script that runs sleep and cat
# would cost the 2 CPUs that carry all 100 simulated hosts three processes
# a command instead of one. A host knows its number by the port its sshd
# listens on (SSH_CONNECTION). A command it does not simulate fails.
mkdir "$work/bin"
cat >"$work/tool.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define POOL "{\"lv_name\":\"pool\",\"vg_name\":\"blk\",\"lv_size\":\"42949672960\",\"lv_tags\":\"blk\",\"pool_lv\":\"\",\"lv_attr\":\"twi-aotz--\",\"data_percent\":\"12.50\",\"metadata_percent\":\"3.00\"}"
static int host(void) { /* this simulated host's number */
	const char *c = getenv("SSH_CONNECTION"), *b = getenv("BENCH_BASE_PORT");
	int port;
	if (!c || !b || sscanf(c, "%*s %*s %*s %d", &port) != 1) return 0;
	return port - atoi(b);
}
static void lvs(int pool, int vols) { /* a report of the pool and/or the volumes */
	int h = host(), n = vols ? atoi(getenv("BENCH_VOLS") ? getenv("BENCH_VOLS") : "0") : 0;
	fputs("{\"report\":[{\"lv\":[", stdout);
	if (pool) fputs(POOL, stdout);
	for (int j = 1; j <= n; j++)
		printf("%s{\"lv_name\":\"volume-%08x-0000-4000-8000-%012x\",\"vg_name\":\"blk\",\"lv_size\":\"1073741824\","
		       "\"lv_tags\":\"blk,blk-name-b%03d-v%d,blk-vol-%08x-0000-4000-8000-%012x\",\"pool_lv\":\"pool\","
		       "\"lv_attr\":\"Vwi-a-tz--\",\"data_percent\":\"10.00\",\"metadata_percent\":\"\"}",
		       pool || j > 1 ? "," : "", h, j, h, j, h, j);
	fputs("]}]}\n", stdout);
}
static const char *arg(int argc, char **argv, const char *flag) { /* the word after flag */
	for (int i = 1; i + 1 < argc; i++)
		if (strcmp(argv[i], flag) == 0) return argv[i + 1];
	return NULL;
}
int main(int argc, char **argv) {
	const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	const char *d = getenv("TOOL_DELAY");
	double s = d ? atof(d) : 0.01;
	struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
	nanosleep(&ts, NULL);
	const char *sel = arg(argc, argv, "--select"), *mode = arg(argc, argv, "--mode");
	const char *sub = argc > 1 ? argv[1] : "";
	if (strcmp(name, "lvm") == 0 && strcmp(sub, "version") == 0) {
		fputs("  LVM version:     2.03.16(2) (2022-05-18)\n", stdout);
	} else if (strcmp(name, "vgs") == 0) {
		printf("{\"report\":[{\"vg\":[{\"vg_name\":\"blk\",\"vg_size\":\"107369988096\",\"vg_free\":\"53687091200\",\"lv_count\":\"%d\"}]}]}\n",
		       1 + atoi(getenv("BENCH_VOLS") ? getenv("BENCH_VOLS") : "0"));
	} else if (strcmp(name, "lvs") == 0 && !sel && strcmp(argv[argc - 1], "blk/pool") == 0) {
		lvs(1, 0); /* host check: the thin pool */
	} else if (strcmp(name, "lvs") == 0 && sel && strcmp(sel, "lv_name=\"pool\" || pool_lv=\"pool\"") == 0) {
		lvs(1, 1); /* backend list: the pool and its thin volumes */
	} else if (strcmp(name, "lvs") == 0 && sel && strcmp(sel, "lv_tags=blk") == 0) {
		lvs(1, 1); /* reconcile: the LVs tagged blk (the pool is too) */
	} else if (strcmp(name, "lvs") == 0 && sel && strcmp(sel, "lv_tags=blk-backup-base") == 0) {
		lvs(0, 0); /* reconcile: no backup base snapshots */
	} else if (strcmp(name, "lvmconfig") == 0) {
		fputs("global_filter=[\"a|.*|\"]\nfilter=[\"a|.*|\"]\nscan_lvs=0\n", stdout);
	} else if (strcmp(name, "dmsetup") == 0 && strcmp(sub, "targets") == 0) {
		fputs("thin-pool        v1.23.0\nsnapshot         v1.16.0\n", stdout);
	} else if (strcmp(name, "dmsetup") == 0 && strcmp(sub, "status") == 0 && argc == 3 && strcmp(argv[2], "blk-pool-tpool") == 0) {
		/* no metadata snapshot held: field 7 is "-" */
		fputs("0 83886080 thin-pool 7 310/4096 10240/655360 - rw no_discard_passdown queue_if_no_space - 1024\n", stdout);
	} else if (strcmp(name, "tgtadm") == 0 && mode && strcmp(mode, "system") == 0) {
		fputs("System:\n    State: ready\n", stdout);
	} else if (strcmp(name, "tgtadm") == 0 && mode && strcmp(mode, "target") == 0) {
		/* no targets */
	} else if (strcmp(name, "tgtadm") == 0 && mode && strcmp(mode, "account") == 0) {
		fputs("Account list:\n", stdout);
	} else {
		fprintf(stderr, "%s: not simulated:", name);
		for (int i = 1; i < argc; i++) fprintf(stderr, " %s", argv[i]);
		fputc('\n', stderr);
		return strcmp(name, "lvm") && strcmp(name, "vgs") && strcmp(name, "lvs") && strcmp(name, "lvmconfig") &&
		       strcmp(name, "dmsetup") && strcmp(name, "tgtadm") ? 127 : 2;
	}
	return 0;
}
C
cc -O2 -o "$work/tool" "$work/tool.c"
for t in lvm vgs lvs lvmconfig dmsetup tgtadm; do ln "$work/tool" "$work/bin/$t"; done

cat >"$work/sshd_config" <<EOF
HostKey $work/host_key
AuthorizedKeysFile $work/authorized_keys
PidFile none
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
LogLevel ERROR
SetEnv PATH=$work/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=$work/home TOOL_DELAY=$delay BENCH_BASE_PORT=$base_port BENCH_VOLS=$vols
EOF
# A HOME of its own: bash, started by sshd, reads ~/.bashrc even to run
# one command, and this machine's root .bashrc (pyenv init) costs 400 ms a
# command; a storage host's stock Debian .bashrc returns at once.
mkdir "$work/home"

: >"$work/known_hosts"
for i in $(seq 1 "$max"); do
	port=$((base_port + i))
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "bench/hosts.sh: port $port is taken: set BASE_PORT to a free range" >&2
		exit 1
	fi
	/usr/sbin/sshd -D -e -f "$work/sshd_config" -o "ListenAddress=127.0.0.1:$port" 2>>"$work/sshd.log" &
	pids+=($!)
	echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$work/host_key.pub")" >>"$work/known_hosts"
done
for i in $(seq 1 "$max"); do # wait until every sshd listens
	port=$((base_port + i))
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
		sleep 0.05
	done
done

config() { # n: a configuration with n storage hosts, one lvm backend each
	echo "state: $work/state.db"
	echo "hosts:"
	for i in $(seq 1 "$1"); do
		printf '  h%03d: {address: "127.0.0.1:%d", identity: %s, known_hosts: %s}\n' "$i" $((base_port + i)) "$work/id" "$work/known_hosts"
	done
	echo "backends:"
	for i in $(seq 1 "$1"); do
		printf '  b%03d: {type: lvm, host: h%03d, vg: blk, thin_pool: pool, portal: "127.0.0.1:3260", iqn_prefix: iqn.2026-11.org.example.blk}\n' "$i" "$i"
	done
	echo "defaults: {backend: auto}"
}

hosts_cpu() { # ms of CPU the simulated hosts' sessions used so far: what
	# each sshd reaped of its children (fields 16 and 17, in clock ticks)
	local t=0 p f
	for p in "${pids[@]}"; do
		f=$(cut -d' ' -f16,17 "/proc/$p/stat" 2>/dev/null) || continue
		t=$((t + ${f% *} + ${f#* }))
	done
	echo $((t * 1000 / $(getconf CLK_TCK)))
}

reaped() { # wait until every sshd has reaped its sessions: a connection's
	# process ends after blk does, and its CPU counts only once reaped
	local list
	list=$(IFS=,; echo "${pids[*]}")
	for _ in $(seq 500); do
		pgrep -P "$list" >/dev/null || return 0
		sleep 0.01
	done
}

# best runs blk ARGS $runs times and sets wall, blk_cpu and host_cpu (ms)
# to those of the fastest run.
best() {
	wall=""
	for _ in $(seq "$runs"); do
		local h0 h1
		h0=$(hosts_cpu)
		if ! SSH_AUTH_SOCK= /usr/bin/time -f "%e %U %S" -o "$work/time" "$work/blk" --config "$work/blk.yaml" "$@" >"$work/out" 2>&1; then
			echo "bench/hosts.sh: blk $* failed:" >&2
			tail -20 "$work/out" >&2
			exit 1
		fi
		reaped
		h1=$(hosts_cpu)
		local e u s
		read -r e u s <"$work/time"
		local ms=$(awk "BEGIN{printf \"%d\", $e*1000}")
		if [ -z "$wall" ] || [ "$ms" -lt "$wall" ]; then
			wall=$ms blk_cpu=$(awk "BEGIN{printf \"%d\", ($u+$s)*1000}") host_cpu=$((h1 - h0))
		fi
	done
}

echo "blk over N simulated storage hosts (sshd on 127.0.0.1, tools ${delay}s each, $vols volumes a backend), best of $runs runs, $(nproc) CPUs"
echo "wall: blk's run time; x1: against 1 host; blk cpu: blk's own CPU time; hosts cpu: what the simulated hosts' sessions took;"
echo "floor: (blk cpu + hosts cpu) / $(nproc) CPUs, the least wall time this machine allows when the CPUs are the limit (all in ms)"
printf '%5s | %-40s | %-40s | %-40s\n' "" "host check" "backend list" "reconcile"
h=' wall ms    x1   blk cpu hosts cpu  floor'
printf '%5s | %s | %s | %s\n' hosts "$h" "$h" "$h"
c1="" l1="" r1=""
ratio() { awk "BEGIN{printf \"%.1f\", $1/$2}"; }
floor() { echo $((($1 + $2) / $(nproc))); }
for n in $counts; do
	config "$n" >"$work/blk.yaml"
	rm -f "$work/state.db"
	"$work/hostseed" -state "$work/state.db" -backends "$n" -per "$vols"
	best host check
	c=$wall cb=$blk_cpu ch=$host_cpu
	checks=$(awk -F'\t' '$3 == "ok"' "$work/out" | wc -l)
	[ "$checks" = $((6 * n)) ] || { echo "bench/hosts.sh: host check passed $checks checks, want $((6 * n))" >&2; exit 1; }
	best backend list
	l=$wall lb=$blk_cpu lh=$host_cpu
	rows=$(grep -c '^b[0-9]' "$work/out" || true)
	[ "$rows" = "$n" ] || { echo "bench/hosts.sh: backend list showed $rows backends, want $n" >&2; exit 1; }
	# Read-only: exit 0 is no drift (6 is drift, 1 a host not looked at),
	# which best already requires; every host must be reported clean.
	best reconcile -o json
	clean=$(grep -o '"roles":\["storage"\],"drift":\[\]' "$work/out" | wc -l)
	[ "$clean" = "$n" ] && ! grep -q '"error"' "$work/out" ||
		{ echo "bench/hosts.sh: reconcile reported $clean clean hosts, want $n:" >&2; head -c 2000 "$work/out" >&2; exit 1; }
	[ -n "$c1" ] || { c1=$c; l1=$l; r1=$wall; }
	printf '%5d | %8d %5s %9d %9d %6d | %8d %5s %9d %9d %6d | %8d %5s %9d %9d %6d\n' "$n" \
		"$c" "$(ratio "$c" "$c1")" "$cb" "$ch" "$(floor "$cb" "$ch")" \
		"$l" "$(ratio "$l" "$l1")" "$lb" "$lh" "$(floor "$lb" "$lh")" \
		"$wall" "$(ratio "$wall" "$r1")" "$blk_cpu" "$host_cpu" "$(floor "$blk_cpu" "$host_cpu")"
done
