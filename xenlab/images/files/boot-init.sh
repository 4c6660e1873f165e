#!/bin/sh
# xenlab's initramfs /init for dom0 and the services node (busybox sh).
#
# Why not initramfs-tools: its init starts udev and waits for it to settle, which took
# ~20 s per boot of a Xen host under TCG (every process is expensive in a PV dom0).
# A lab machine needs only this: load the modules named in /conf/modules (their
# dependencies come from modules.dep), find the root file system named by root= (a
# LABEL=, UUID= or device path), mount it and hand over to its init.  A hardware
# variant's initrd appends more modules and a /conf/modules naming them (variant.py).
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() { echo "xenlab-init: $*" > /dev/console; }

root=""
mode=ro
fstype=auto
init=/sbin/init
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        root=*) root="${arg#root=}" ;;
        rootfstype=*) fstype="${arg#rootfstype=}" ;;
        rw) mode=rw ;;
        ro) mode=ro ;;
        init=*) init="${arg#init=}" ;;
    esac
done

for module in $(cat /conf/modules); do
    modprobe "$module" || say "loading kernel module $module failed"
done

# Disks on some buses (AHCI, NVMe, SCSI) appear after their driver returns: poll for
# the root device, up to 30 s, and say what was found if it never shows.
device=""
tries=0
while [ -z "$device" ]; do
    case "$root" in
        LABEL=*|UUID=*) device="$(findfs "$root" 2>/dev/null)" ;;
        /dev/*) [ -b "$root" ] && device="$root" ;;
        *) say "no usable root= on the kernel command line: '$root'"; break ;;
    esac
    [ -n "$device" ] && break
    tries=$((tries + 1))
    if [ "$tries" -ge 300 ]; then
        say "root file system $root not found after 30 s; block devices:"
        cat /proc/partitions > /dev/console
        break
    fi
    sleep 0.1
done

if [ -n "$device" ] && mount -t "$fstype" -o "$mode" "$device" /root; then
    mount --move /dev /root/dev
    mount --move /sys /root/sys
    mount --move /proc /root/proc
    exec switch_root /root "$init"
fi
say "cannot mount the root file system ($root on '${device:-nothing}'); a shell on the console"
exec sh
