#!/usr/bin/env bash
# bench/hosts.sh: wall time of 'blk host check' and 'blk backend list' over
# 1, 10, 50 and 100 storage hosts, simulated on this machine: one OpenSSH
# sshd per host on its own port of 127.0.0.1, all sharing a host key and
# an authorized key, whose sessions find stand-in LVM, device-mapper and
# tgt tools first on PATH (sshd's SetEnv). Each stand-in sleeps a few ms,
# as the real tool would take, and prints a healthy host's answer.
#
# blk talks to at most 128 hosts at once (volume.DefaultParallel), over one
# SSH connection each. The goal: 100 hosts in at most 2 s.
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

(cd "$repo" && go build -o "$work/blk" ./cmd/blk)
mkdir -p /run/sshd # sshd's privilege separation directory
ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -C bench-user -f "$work/id"
cp "$work/id.pub" "$work/authorized_keys"

# The stand-in tools: what a healthy storage host with volume group blk
# and thin pool blk/pool answers. One small C program, named as each tool:
# a shell script that runs sleep and cat would cost the 2 CPUs that carry
# all 100 simulated hosts three processes a command instead of one.
mkdir "$work/bin"
cat >"$work/tool.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static const char *answers[][2] = {
	{"lvm", "  LVM version:     2.03.16(2) (2022-05-18)\n"},
	{"vgs", "{\"report\":[{\"vg\":[{\"vg_name\":\"blk\",\"vg_size\":\"107369988096\",\"vg_free\":\"53687091200\",\"lv_count\":\"3\"}]}]}\n"},
	{"lvs", "{\"report\":[{\"lv\":[{\"lv_name\":\"pool\",\"vg_name\":\"blk\",\"lv_size\":\"42949672960\",\"lv_tags\":\"\",\"pool_lv\":\"\",\"lv_attr\":\"twi-aotz--\",\"data_percent\":\"12.50\",\"metadata_percent\":\"3.00\"}]}]}\n"},
	{"lvmconfig", "global_filter=[\"a|.*|\"]\nfilter=[\"a|.*|\"]\nscan_lvs=0\n"},
	{"dmsetup", "thin-pool        v1.23.0\nsnapshot         v1.16.0\n"},
	{"tgtadm", "System:\n    State: ready\n"},
};
int main(int argc, char **argv) {
	const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	const char *d = getenv("TOOL_DELAY");
	double s = d ? atof(d) : 0.01;
	struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
	nanosleep(&ts, NULL);
	for (size_t i = 0; i < sizeof answers / sizeof answers[0]; i++)
		if (strcmp(name, answers[i][0]) == 0) { fputs(answers[i][1], stdout); return 0; }
	fprintf(stderr, "%s: not simulated\n", name);
	return 127;
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
SetEnv PATH=$work/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=$work/home TOOL_DELAY=$delay
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
		h1=$(hosts_cpu)
		local e u s
		read -r e u s <"$work/time"
		local ms=$(awk "BEGIN{printf \"%d\", $e*1000}")
		if [ -z "$wall" ] || [ "$ms" -lt "$wall" ]; then
			wall=$ms blk_cpu=$(awk "BEGIN{printf \"%d\", ($u+$s)*1000}") host_cpu=$((h1 - h0))
		fi
	done
}

echo "blk over N simulated storage hosts (sshd on 127.0.0.1, tools ${delay}s each), best of $runs runs, $(nproc) CPUs"
echo "wall: blk's run time; x1: against 1 host; blk cpu: blk's own CPU time; hosts cpu: what the simulated hosts' sessions took"
printf '%5s | %-34s | %-34s\n' "" "host check" "backend list"
printf '%5s | %8s %5s %9s %9s | %8s %5s %9s %9s\n' hosts "wall ms" x1 "blk cpu" "hosts cpu" "wall ms" x1 "blk cpu" "hosts cpu"
c1="" l1=""
for n in $counts; do
	config "$n" >"$work/blk.yaml"
	best host check
	c=$wall cb=$blk_cpu ch=$host_cpu
	checks=$(awk -F'\t' '$3 == "ok"' "$work/out" | wc -l)
	[ "$checks" = $((6 * n)) ] || { echo "bench/hosts.sh: host check passed $checks checks, want $((6 * n))" >&2; exit 1; }
	best backend list
	rows=$(grep -c '^b[0-9]' "$work/out" || true)
	[ "$rows" = "$n" ] || { echo "bench/hosts.sh: backend list showed $rows backends, want $n" >&2; exit 1; }
	[ -n "$c1" ] || { c1=$c; l1=$wall; }
	printf '%5d | %8d %5s %9d %9d | %8d %5s %9d %9d\n' "$n" "$c" "$(awk "BEGIN{printf \"%.1f\", $c/$c1}")" "$cb" "$ch" \
		"$wall" "$(awk "BEGIN{printf \"%.1f\", $wall/$l1}")" "$blk_cpu" "$host_cpu"
done
