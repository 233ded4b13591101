#!/bin/bash
# PID 1 of the lab guest (no systemd): mount the basics, load the storage
# modules, start udev and sshd, then set up what blk drives: a volume group
# with a thin pool, tgtd, iscsid, an NFS export and libvirtd with two domains.
# Every service listens on 127.0.0.1, except sshd on the NIC that qemu forwards
# 127.0.0.1:PORT of the host to.
set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C
arg() { sed -n "s/.*blk\.$1=\([^ ]*\).*/\1/p" /proc/cmdline 2>/dev/null; }
mount -t proc proc /proc
LAB=$(arg lab) KVER=$(arg kver)
console() { echo "$*" > /dev/ttyS0; }
fail() { console "BLK-LAB-FAILED $*"; tail -n 20 /run/blk-lab-setup.log > /dev/ttyS0 2>/dev/null; }

mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0700 tmpfs /root
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p "/lib/modules/$KVER" && mount --bind "$LAB/kernel/root/lib/modules/$KVER" "/lib/modules/$KVER"
modprobe -a virtio_net virtio_blk virtio_scsi sd_mod sg ext4 dm_mod dm_thin_pool dm_snapshot \
  iscsi_tcp nfsd nfs nfsv4 loop || fail "modprobe"
hostname blk-lab

/lib/systemd/systemd-udevd --daemon >/dev/null 2>&1
for s in block net misc scsi virtio tty; do udevadm trigger --action=add --subsystem-match=$s; done
udevadm settle --timeout=30

ip link set lo up
nic=$(ls /sys/class/net | grep -v '^lo$' | head -n 1)
ip link set "$nic" up
ip addr add 10.0.2.15/24 dev "$nic"

mkdir -p /run/sshd
/usr/sbin/sshd -f /dev/null -h "$LAB/ssh/host_ed25519" -o ListenAddress=10.0.2.15 \
  -o AuthorizedKeysFile="$LAB/ssh/authorized_keys" -o PermitRootLogin=prohibit-password \
  -o PasswordAuthentication=no -o UseDNS=no -o PidFile=/run/sshd.pid -o Subsystem="sftp internal-sftp" \
  -o MaxSessions=100 -o MaxStartups=100 || fail "sshd"
console BLK-LAB-SSHD

setup() {
  set -ex
  dev=/dev/disk/by-id/virtio-labdata
  pvcreate -y "$dev"
  vgcreate blk "$dev"
  lvcreate --yes --type thin-pool -L 4G -n pool blk

  tgtd --iscsi portal=127.0.0.1:3260
  echo "InitiatorName=iqn.2026-11.org.example.lab:compute" > /etc/iscsi/initiatorname.iscsi
  iscsid

  lvcreate --yes -L 1G -n nfs blk
  mkfs.ext4 -q /dev/blk/nfs
  # NFSv4 walks the path from / and cannot cross the 9p overlay: give /srv
  # a tmpfs of its own.
  mount -t tmpfs -o mode=0755 tmpfs /srv
  mkdir -p /srv/blk
  mount /dev/blk/nfs /srv/blk
  echo "/srv/blk 127.0.0.1(rw,sync,no_root_squash,no_subtree_check)" > /etc/exports
  mount -t nfsd nfsd /proc/fs/nfsd
  echo 15 > /proc/fs/nfsd/nfsv4gracetime
  # NFSv4 only: it needs no rpcbind (whose -h crashes here), so nothing but
  # nfsd on 127.0.0.1:2049 listens.
  exportfs -ra
  rpc.mountd -N 2 -N 3 --no-udp --no-tcp
  rpc.nfsd -N 3 -H 127.0.0.1 2

  cat >> /etc/libvirt/qemu.conf <<CONF
stdio_handler = "file"
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
namespaces = []
cgroup_controllers = []
security_driver = "none"
CONF
  virtlogd -d
  libvirtd -d
  for _ in $(seq 120); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.5; done
  # lab-vm1: no OS, a virtio-scsi controller; it completes scsi hot-unplug.
  # lab-vm2: Debian's kernel with a tiny initramfs, so that it also answers
  # virtio-blk hot-unplug (about a minute to boot under nested emulation;
  # it writes BLK-VM-READY to /run/lab-vm2.console when it can).
  for vm in lab-vm1 lab-vm2; do
    os="<type arch='x86_64' machine='q35'>hvm</type>" channel=
    if [ "$vm" = lab-vm2 ]; then
      channel="<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
      os="$os<kernel>$LAB/kernel/root/boot/vmlinuz-$KVER</kernel><initrd>$LAB/vm-initramfs.cpio.gz</initrd>"
      os="$os<cmdline>console=ttyS0 quiet panic=-1</cmdline>"
    fi
    cat > "/run/$vm.xml" <<XML
<domain type='qemu'>
  <name>$vm</name>
  <memory unit='MiB'>192</memory>
  <vcpu>1</vcpu>
  <os>$os</os>
  <features><acpi/><apic/></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='scsi' index='0' model='virtio-scsi'/>
    <controller type='pci' index='0' model='pcie-root'/>
    <controller type='pci' model='pcie-root-port'/>
    <controller type='pci' model='pcie-root-port'/>
    <controller type='pci' model='pcie-root-port'/>
    <controller type='pci' model='pcie-root-port'/>
    <controller type='pci' model='pcie-root-port'/>
    <controller type='pci' model='pcie-root-port'/>
    <serial type='file'><source path='/run/$vm.console'/></serial>$channel
    <memballoon model='none'/>
  </devices>
</domain>
XML
    virsh -c qemu:///system define "/run/$vm.xml"
    virsh -c qemu:///system start "$vm"
  done
  boot_image
  touch /run/blk-lab-ready
}

# boot_image writes /run/blk-images/boot.{raw,qcow2}: a 1 MiB disk whose MBR
# prints BLK-BOOTED-FROM-VOLUME to COM1 and halts, so that the boot test
# knows the guest ran code that only the volume holds; and defines lab-boot,
# a stopped domain with no disk and no kernel, for blk to attach it to.
#   cli; xor ax,ax; mov ds,ax; cld; mov dx,0x3f8; mov si,msg
#   next: lodsb; test al,al; jz done; out dx,al; jmp next
#   done: hlt; jmp done
#   msg: db "BLK-BOOTED-FROM-VOLUME",13,10,0
boot_image() {
  local img=/run/blk-images
  mkdir -p $img
  truncate -s 1M $img/boot.raw
  printf '\xfa\x31\xc0\x8e\xd8\xfc\xba\xf8\x03\xbe\x17\x7c\xac\x84\xc0\x74\x03\xee\xeb\xf8\xf4\xeb\xfdBLK-BOOTED-FROM-VOLUME\r\n\0' |
    dd of=$img/boot.raw conv=notrunc status=none
  printf '\x55\xaa' | dd of=$img/boot.raw bs=1 seek=510 conv=notrunc status=none
  qemu-img convert -f raw -O qcow2 $img/boot.raw $img/boot.qcow2
  cat > /run/lab-boot.xml <<XML
<domain type='qemu'>
  <name>lab-boot</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <features><acpi/><apic/></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='pci' index='0' model='pcie-root'/>
    <controller type='pci' model='pcie-root-port'/>
    <controller type='pci' model='pcie-root-port'/>
    <serial type='file'><source path='/run/lab-boot.console'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
XML
  virsh -c qemu:///system define /run/lab-boot.xml
}
# In the background, not under ||: bash ignores set -e in a function whose
# status is tested.
( setup ) > /run/blk-lab-setup.log 2>&1 &
wait $! || fail "setup (see /run/blk-lab-setup.log)"
console BLK-LAB-READY

# PID 1 must never exit; bash reaps the orphans it inherits.
while :; do sleep 3600 & wait $!; done
