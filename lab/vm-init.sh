#!/bin/busybox sh
# PID 1 of lab-vm2, the nested domain that runs a real kernel so that it
# answers virtio-blk hot-unplug (a domain with no OS never releases the disk).
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /mods/order); do insmod /mods/$m 2>/dev/null; done
mkdir -p /run /tmp
# qemu-ga on the channel libvirt names org.qemu.guest_agent.0: blk freezes
# the guest's filesystems through it, the lab tests run commands with it.
for _ in $(seq 50); do
  for p in /sys/class/virtio-ports/*; do
    [ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] || continue
    /usr/sbin/qemu-ga -m virtio-serial -p "/dev/$(basename "$p")" -t /run -f /run/qemu-ga.pid \
      2> /dev/ttyS0 &
    break 2
  done
  sleep 0.1
done
echo BLK-VM-READY > /dev/ttyS0
while :; do sleep 3600; done
