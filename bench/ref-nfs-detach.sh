#!/bin/bash
# The bare sequence blk's NFS detach runs, for comparison:
# usage: ref-nfs-detach.sh UUID DOMAIN
set -e
uuid=$1 dom=$2 mp=/var/lib/blk/mnt/ref-bench
virsh -q detach-device "$dom" /tmp/ref-nfs-disk.xml --config >/dev/null
virsh -q detach-device "$dom" /tmp/ref-nfs-disk.xml --live >/dev/null
# virsh's success is no proof: wait for the disk to leave the live XML.
while virsh dumpxml "$dom" | grep -q "${uuid:0:20}"; do sleep 0.25; done
umount $mp
rmdir $mp
