#!/bin/bash
# The bare sequence blk's detach runs, for comparison: ref-detach.sh UUID DOMAIN
set -e
uuid=$1 dom=$2 tid=900 portal=127.0.0.1:3260
iqn=iqn.2026-11.org.example.blk:$uuid user=blk-${uuid:0:8}
ini=$(sed -n 's/^InitiatorName=//p' /etc/iscsi/initiatorname.iscsi)
virsh -q detach-device "$dom" /tmp/ref-disk.xml --config >/dev/null
virsh -q detach-device "$dom" /tmp/ref-disk.xml --live >/dev/null
# virsh's success is no proof: wait for the disk to leave the live XML.
while virsh dumpxml "$dom" | grep -q "${uuid:0:20}"; do sleep 0.25; done
link=/dev/disk/by-path/ip-$portal-iscsi-$iqn-lun-1
dev=$(readlink -e "$link")
blockdev --flushbufs "$dev"
echo 1 > "/sys/block/${dev#/dev/}/device/delete"
iscsiadm -m node -T "$iqn" -p $portal --logout >/dev/null
iscsiadm -m node -T "$iqn" -p $portal -o delete
tgtadm --lld iscsi --op unbind --mode target --tid $tid --initiator-name "$ini"
tgtadm --lld iscsi --op delete --mode account --user "$user"
tgtadm --lld iscsi --op delete --mode logicalunit --tid $tid --lun 1
tgtadm --lld iscsi --op delete --mode target --force --tid $tid
