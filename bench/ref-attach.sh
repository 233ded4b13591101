#!/bin/bash
# The bare sequence blk's attach runs (lab layout, CHAP on), for comparison:
# usage: ref-attach.sh LV UUID DOMAIN
set -e
lv=$1 uuid=$2 dom=$3 tid=900 portal=127.0.0.1:3260
iqn=iqn.2026-11.org.example.blk:$uuid user=blk-${uuid:0:8} pass=benchBenchBench1
ini=$(sed -n 's/^InitiatorName=//p' /etc/iscsi/initiatorname.iscsi)
tgtadm --lld iscsi --op new --mode target --tid $tid --targetname "$iqn"
tgtadm --lld iscsi --op new --mode logicalunit --tid $tid --lun 1 --backing-store "$lv"
tgtadm --lld iscsi --op bind --mode target --tid $tid --initiator-name "$ini"
tgtadm --lld iscsi --op new --mode account --user "$user" --password "$pass"
tgtadm --lld iscsi --op bind --mode account --tid $tid --user "$user"
n() { iscsiadm -m node -T "$iqn" -p $portal "$@" >/dev/null; }
n -o new
n -o update -n node.startup -v automatic
n -o update -n node.session.auth.authmethod -v CHAP
n -o update -n node.session.auth.username -v "$user"
n -o update -n node.session.auth.password -v "$pass"
n --login
link=/dev/disk/by-path/ip-$portal-iscsi-$iqn-lun-1
until [ -e "$link" ]; do sleep 0.1; done
cat > /tmp/ref-disk.xml <<XML
<disk type='block' device='disk'><driver name='qemu' type='raw' cache='none' io='native'/>
<source dev='$link'/><target dev='sdc' bus='scsi'/><serial>${uuid:0:20}</serial></disk>
XML
virsh -q attach-device "$dom" /tmp/ref-disk.xml --live --config >/dev/null
