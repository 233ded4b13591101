#!/bin/bash
# The bare sequence blk's NFS attach runs (lab layout), for comparison:
# usage: ref-nfs-attach.sh EXPORT FILE-NAME UUID DOMAIN
set -e
export=$1 file=$2 uuid=$3 dom=$4 mp=/var/lib/blk/mnt/ref-bench
mkdir -p $mp
mount -t nfs -o vers=4.2 "$export" $mp
cat > /tmp/ref-nfs-disk.xml <<XML
<disk type='file' device='disk'><driver name='qemu' type='raw' cache='none' io='native'/>
<source file='$mp/$file'/><target dev='sdc' bus='scsi'/><serial>${uuid:0:20}</serial></disk>
XML
virsh -q attach-device "$dom" /tmp/ref-nfs-disk.xml --live --config >/dev/null
