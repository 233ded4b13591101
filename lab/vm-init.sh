#!/bin/busybox sh
# PID 1 of lab-vm2, the nested domain that runs a real kernel so that it
# answers virtio-blk hot-unplug (a domain with no OS never releases the disk).
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /mods/order); do insmod /mods/$m 2>/dev/null; done
echo BLK-VM-READY > /dev/ttyS0
while :; do sleep 3600; done
