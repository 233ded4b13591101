#!/bin/bash
# The bare sequence blk's extend of an in-use iSCSI volume runs, for
# comparison, on a volume bench/ref-attach.sh attached (tid 900, sdc):
# usage: ref-extend.sh LV UUID DOMAIN BYTES
set -e
lv=$1 uuid=$2 dom=$3 size=$4 tid=900 portal=127.0.0.1:3260
iqn=iqn.2026-11.org.example.blk:$uuid
lvextend -q -L "${size}b" "$lv" >/dev/null
virsh -q suspend "$dom" >/dev/null
tgtadm --lld iscsi --op update --mode logicalunit --tid $tid --lun 1 --params "online=0,path=$lv"
virsh -q resume "$dom" >/dev/null
iscsiadm -m node -T "$iqn" -p $portal -R >/dev/null
link=/dev/disk/by-path/ip-$portal-iscsi-$iqn-lun-1
until [ "$(blockdev --getsize64 "$link")" -ge "$size" ]; do sleep 0.1; done
virsh -q blockresize "$dom" sdc "${size}B" >/dev/null
