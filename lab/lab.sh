#!/usr/bin/env bash
# The blk lab: a QEMU guest booted from Debian's kernel, where device-mapper,
# iscsi_tcp and nfsd exist, sharing this machine's root read-only over 9p so it
# runs these very binaries. See ../README.md "The lab" and shared LAB.md.
#
#   lab.sh install  install the Debian packages the lab and the unit tests need (sshd, PostgreSQL)
#   lab.sh up       install what is missing, build kernel + initramfs, boot or reuse
#   lab.sh down     stop the guest this lab started (by its recorded PID)
#   lab.sh ssh ...  run a command in the guest (no args: a shell)
#   lab.sh status   say whether the guest is up
#   lab.sh console  print the guest console's tail
set -euo pipefail

LAB=${BLK_LAB_DIR:-/var/cache/blk-lab}
PORT=${BLK_LAB_PORT:-2222}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KDIR=$LAB/kernel
SSHDIR=$LAB/ssh
RUN=$LAB/run
PACKAGES="qemu-system-x86 qemu-utils tgt libiscsi-bin open-iscsi libvirt-daemon-system
  libvirt-daemon-driver-qemu libvirt-clients lvm2 thin-provisioning-tools nfs-kernel-server
  nfs-common busybox-static cpio kmod openssh-server openssh-client e2fsprogs iproute2 udev
  qemu-guest-agent postgresql"

log() { printf 'lab: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
phase_start=0
phase() { phase_start=$(date +%s.%N); log "$1..."; }
phase_end() { log "$(printf '%s done in %.1fs' "$1" "$(echo "$(date +%s.%N) - $phase_start" | bc)")"; }

install_packages() {
  local missing=()
  for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  command -v bc >/dev/null || missing+=(bc)
  [ ${#missing[@]} -eq 0 ] && return 0
  phase install
  # Installing must not start daemons on this machine (the guest runs them):
  # a policy-rc.d that says no, only for this install, removed right after
  # unless the machine had one of its own.
  local policy=/usr/sbin/policy-rc.d ours=0
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\n# written by blk lab/lab.sh for one apt-get install\nexit 101\n' > $policy
    chmod +x $policy
    ours=1
  fi
  local rc=0
  apt-get update -q >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  [ $ours = 1 ] && rm -f $policy
  [ $rc = 0 ] || die "apt-get install ${missing[*]} failed (exit $rc)"
  phase_end install
}

kernel_version() { ls "$KDIR/root/lib/modules" 2>/dev/null | head -n 1; }

build_kernel() {
  [ -e "$KDIR/ready" ] && return 0
  phase kernel
  rm -rf "$KDIR" && mkdir -p "$KDIR"
  local pkg
  pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$pkg" ] || die "cannot find Debian's kernel package (apt-get update?)"
  (cd "$KDIR" && apt-get download "$pkg" >/dev/null 2>&1) || die "apt-get download $pkg failed"
  dpkg-deb -x "$KDIR"/*.deb "$KDIR/root"
  rm -f "$KDIR"/*.deb
  depmod -b "$KDIR/root" "$(kernel_version)"
  touch "$KDIR/ready"
  phase_end kernel
}

# Tiny initramfs images: busybox and a few modules. The guest's mounts this
# machine's root over 9p with an overlay; lab-vm2's (nested in the guest)
# only loads the virtio disk drivers so that it answers hot-unplug.
build_initramfs() {
  initramfs "$LAB/initramfs.cpio.gz" "$HERE/initramfs-init.sh" virtio_pci 9pnet_virtio 9p overlay
  # lab-vm2 also runs qemu-ga: blk's quiesced snapshots talk to it, and the
  # lab tests run commands in the guest through its guest-exec.
  INITRAMFS_BINS="/usr/sbin/qemu-ga" \
    initramfs "$LAB/vm-initramfs.cpio.gz" "$HERE/vm-init.sh" virtio_pci virtio_blk virtio_scsi sd_mod \
    virtio_console ext4
}

initramfs() {
  local out=$1 init=$2 kver stamp tmp
  shift 2
  kver=$(kernel_version)
  stamp=$(cat "$init" <(echo "$@" "${INITRAMFS_BINS:-}") | sha256sum | cut -c1-16)
  [ -e "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ] && return 0
  phase "initramfs $(basename "$out")"
  tmp=$(mktemp -d)
  mkdir -p "$tmp"/{bin,dev,proc,sys,lower,upper,newroot,mods}
  cp /bin/busybox "$tmp/bin/busybox"
  for m in "$@"; do
    modprobe -d "$KDIR/root" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
  done | awk '!seen[$0]++' | while read -r ko; do
    cp "$ko" "$tmp/mods/"
    basename "$ko" >> "$tmp/mods/order"
  done
  local bin lib
  for bin in ${INITRAMFS_BINS:-}; do
    mkdir -p "$tmp$(dirname "$bin")"
    cp "$bin" "$tmp$bin"
    for lib in $(ldd "$bin" | awk '$(NF-1) ~ /^\// {print $(NF-1)} $1 ~ /^\// {print $1}'); do
      mkdir -p "$tmp$(dirname "$lib")"
      cp -L "$lib" "$tmp$lib"
    done
  done
  cp "$init" "$tmp/init"
  chmod +x "$tmp/init"
  (cd "$tmp" && find . | cpio -o -H newc --quiet | gzip -1 > "$out.new")
  mv "$out.new" "$out"
  echo "$stamp" > "$out.stamp"
  rm -rf "$tmp"
  phase_end initramfs
}

make_keys() {
  mkdir -p "$SSHDIR" && chmod 700 "$SSHDIR"
  [ -e "$SSHDIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C blk-lab -f "$SSHDIR/id_ed25519"
  [ -e "$SSHDIR/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C blk-lab-host -f "$SSHDIR/host_ed25519"
  cp "$SSHDIR/id_ed25519.pub" "$SSHDIR/authorized_keys"
  echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$SSHDIR/host_ed25519.pub")" > "$SSHDIR/known_hosts"
}

# blk configurations for the lab: one for blk running on this machine and
# driving the guest over SSH, one for blk running inside the guest.
write_configs() {
  mkdir -p "$LAB/state"
  config "$LAB/state/ssh.db" "address: 127.0.0.1, port: $PORT, user: root, identity: $SSHDIR/id_ed25519, known_hosts: $SSHDIR/known_hosts" > "$LAB/blk-ssh.yaml"
  config /var/lib/blk/state.db "local: true" > "$LAB/blk-local.yaml"
  # make demo's: blk builds this backend's group itself (blk backend init on
  # a loop file in the guest). Not in the two above: until it is made, its
  # missing group would fail 'blk backend list' in the lab tests.
  config "$LAB/state/demo.db" "address: 127.0.0.1, port: $PORT, user: root, identity: $SSHDIR/id_ed25519, known_hosts: $SSHDIR/known_hosts" \
    "$(printf '  lvm-init:\n    type: lvm\n    host: lab\n    vg: blkinit\n    thin_pool: pool\n    portal: 127.0.0.1:3260\n    iqn_prefix: iqn.2026-11.org.example.blk')" \
    lvm-init > "$LAB/blk-demo.yaml"
}

config() {
  cat <<YAML
# blk configuration for the lab, written by lab/lab.sh
state: $1
hosts:
  lab: {$2}
backends:${3:+
$3}
  lvm-1:
    type: lvm
    host: lab
    vg: blk
    thin_pool: pool
    portal: 127.0.0.1:3260
    iqn_prefix: iqn.2026-11.org.example.blk
    chap: true
  nfs-1:
    type: nfs
    host: lab
    export: 127.0.0.1:/srv/blk
    path: /srv/blk
    mount_options: vers=4.2
compute: [lab]
# In the guest: from blk-ssh.yaml the repository is written over SFTP.
backup_repos:
  lab: {host: lab, path: /var/lib/blk-backups}
defaults: {backend: ${4:-lvm-1}, backup_repo: lab}
YAML
}

ssh_guest() {
  ssh -q -i "$SSHDIR/id_ed25519" -o UserKnownHostsFile="$SSHDIR/known_hosts" -o StrictHostKeyChecking=yes \
      -o BatchMode=yes -o ConnectTimeout=5 -p "$PORT" root@127.0.0.1 "$@"
}

running() {
  local pid
  pid=$(cat "$RUN/qemu.pid" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null && grep -q qemu "/proc/$pid/cmdline" 2>/dev/null
}

ready() { ssh_guest test -e /run/blk-lab-ready 2>/dev/null; }

boot() {
  local kver
  kver=$(kernel_version)
  mkdir -p "$RUN"
  rm -f "$RUN/console.log" "$RUN/data.img"
  # The guest has its own /tmp (and /root): the checkout may be invisible to
  # it, the lab folder never is.
  cp "$HERE/guest-init.sh" "$RUN/guest-init.sh"
  # A fresh sparse data disk each boot: every lab starts clean.
  truncate -s 8G "$RUN/data.img"
  phase boot
  qemu-system-x86_64 -accel tcg,thread=multi,tb-size=512 -cpu max -smp 2 -m 6144 -machine q35 \
    -nodefaults -no-reboot -display none -serial "file:$RUN/console.log" -pidfile "$RUN/qemu.pid" -daemonize \
    -kernel "$KDIR/root/boot/vmlinuz-$kver" -initrd "$LAB/initramfs.cpio.gz" \
    -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$PORT-:22" -device virtio-net-pci,netdev=n0 \
    -device virtio-rng-pci \
    -fsdev local,id=rootfs,path=/,security_model=none,readonly=on,multidevs=remap \
    -device virtio-9p-pci,fsdev=rootfs,mount_tag=rootfs \
    -drive "file=$RUN/data.img,if=none,id=d0,format=raw,cache=unsafe,discard=unmap" \
    -device virtio-blk-pci,drive=d0,serial=labdata \
    -append "console=ttyS0 panic=-1 quiet blk.init=$RUN/guest-init.sh blk.lab=$LAB blk.kver=$kver"
  local deadline=$(( $(date +%s) + ${BLK_LAB_BOOT_TIMEOUT:-300} ))
  until grep -q BLK-LAB-SSHD "$RUN/console.log" 2>/dev/null; do
    running || { console_tail; die "guest died while booting"; }
    [ "$(date +%s)" -lt "$deadline" ] || { console_tail; die "guest did not start sshd in time"; }
    sleep 0.5
  done
  phase_end boot
  phase services
  until ready; do
    grep -q BLK-LAB-FAILED "$RUN/console.log" && { console_tail; die "guest set-up failed"; }
    [ "$(date +%s)" -lt "$deadline" ] || { console_tail; die "guest services did not come up in time"; }
    sleep 1
  done
  phase_end services
}

console_tail() {
  log "guest console (last 40 lines of $RUN/console.log):"
  tail -n 40 "$RUN/console.log" 2>/dev/null | sed 's/^/  console| /' >&2 || true
}

up() {
  install_packages
  build_kernel
  build_initramfs
  make_keys
  write_configs
  if running && ready; then
    log "reusing the running lab (pid $(cat "$RUN/qemu.pid"))"
  else
    running && down
    boot
  fi
  log "up: ssh with 'make lab-ssh'; blk configs: $LAB/blk-ssh.yaml (from here), $LAB/blk-local.yaml (inside)"
}

down() {
  running || { log "not running"; rm -f "$RUN/qemu.pid"; return 0; }
  local pid
  pid=$(cat "$RUN/qemu.pid")
  # The guest has nothing to save (its disk is scratch): stop qemu itself.
  kill "$pid"
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$RUN/qemu.pid" "$RUN/data.img"
  log "stopped (pid $pid)"
}

case "${1:-}" in
  install) install_packages ;;
  up) up ;;
  down) down ;;
  ssh) shift; if [ $# -eq 0 ]; then ssh -i "$SSHDIR/id_ed25519" -o UserKnownHostsFile="$SSHDIR/known_hosts" -p "$PORT" -t root@127.0.0.1; else ssh_guest "$@"; fi ;;
  status) if running && ready; then echo "up (pid $(cat "$RUN/qemu.pid"), ssh 127.0.0.1:$PORT)"; else echo down; exit 1; fi ;;
  console) console_tail ;;
  dir) echo "$LAB" ;;
  *) echo "usage: $0 install|up|down|ssh [CMD...]|status|console|dir" >&2; exit 2 ;;
esac
