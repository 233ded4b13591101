#!/usr/bin/env bash
# make demo: build blk, boot the lab, and run blk's main job for a new user to
# watch. blk runs on this machine and drives the lab guest over SSH.
set -euo pipefail
cd "$(dirname "$0")/.."
lab/lab.sh up
LAB=$(lab/lab.sh dir)
go build -o bin/blk ./cmd/blk
# The demo's backend lvm-init names a volume group (blkinit) that does not
# exist until blk makes it, below, as an operator would on a new host.
export BLK_CONFIG=$LAB/blk-demo.yaml
blk() { printf '\n\033[1m$ blk %s\033[0m\n' "$*"; bin/blk "$@"; }
name=demo-$(date +%H%M%S)
backing=/var/tmp/blk-lvm-init.img

# Half the group for thin volumes, half left for thick ones.
blk --dry-run backend init lvm-init --loop-file $backing --size 2GiB --thin-pool-size 50%
blk backend init lvm-init --loop-file $backing --size 2GiB --thin-pool-size 50% --lvm-filter
# After init: before it, host check fails on lvm-init's missing group.
blk host check
blk backend list
blk volume create "$name" --size 512MiB
blk volume create "$name-thin" --size 20GiB --thin
blk volume list
blk --dry-run volume attach "$name" --instance lab-vm1 --bus scsi
blk volume attach "$name" --instance lab-vm1 --bus scsi
blk volume show "$name"
blk volume show "$name" -o json
blk volume detach "$name"
blk --dry-run volume delete "$name" "$name-thin"
blk volume delete "$name" "$name-thin" --yes --wipe
blk volume list

cat <<TXT

The lab is still running. To explore further:
  export BLK_CONFIG=$BLK_CONFIG
  bin/blk --help                           every command, with examples and exit codes
  bin/blk volume create db1 --size 1GiB    then: bin/blk volume list -o wide
  bin/blk volume attach db1 --instance lab-vm2   virtio on lab-vm2, which runs a kernel (boots in ~1 min)
  bin/blk volume detach db1
  bin/blk -v volume delete db1 --yes       -v logs each command blk runs on the lab
  make lab-ssh                             a shell in the lab guest (lvs, tgtadm, virsh list)
The backend lvm-init lives on a sparse file in the guest ($backing):
fine for trying blk, not for production. On a real host:
  bin/blk backend init BACKEND --device /dev/disk/by-id/...
Stop the lab with: make lab-down
TXT
