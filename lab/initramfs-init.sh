#!/bin/busybox sh
# The lab guest's first init: mount this machine's root (9p, read-only) under
# a tmpfs overlay, give each top-level folder its own bind mount on a tmpfs
# root (NFSv4 cannot export from an overlay root), and hand over to the lab's
# init script named on the kernel command line.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /mods/order); do insmod /mods/$m 2>/dev/null; done
fail() { echo "BLK-LAB-FAILED initramfs: $*" > /dev/ttyS0; sleep 2; poweroff -f; }
mount -t 9p -o trans=virtio,version=9p2000.L,cache=loose,msize=262144,ro rootfs /lower || fail "9p mount"
mount -t tmpfs -o mode=0755 tmpfs /upper
mkdir -p /upper/u /upper/w /upper/o
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w /upper/o || fail "overlay"
mount -t tmpfs -o mode=0755 tmpfs /newroot
for d in /upper/o/* /upper/o/.[!.]*; do
  [ -e "$d" ] || [ -L "$d" ] || continue
  n=${d#/upper/o/}
  case "$n" in
    proc|sys|dev|run|tmp|root|mnt|media|lost+found) mkdir -p "/newroot/$n" ;;
    *) if [ -L "$d" ]; then cp -a "$d" "/newroot/$n"
       elif [ -d "$d" ]; then mkdir -p "/newroot/$n" && mount --bind "$d" "/newroot/$n"
       fi ;;
  esac
done
# Keep the upper tmpfs reachable so nothing is hidden below it.
mkdir -p /newroot/run
init=$(sed -n 's/.*blk\.init=\([^ ]*\).*/\1/p' /proc/cmdline)
[ -n "$init" ] || fail "no blk.init= on the kernel command line"
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /bin/bash "$init"
