#!/bin/busybox sh
# PID 1 of the xenlab PV guest: load the Xen front-end drivers, bring up eth0 with the
# address given on the kernel command line (xenlab.ip=A/N), then run xenlab.run= if set.
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp /run /mnt
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /etc/modules-load); do insmod "/lib/modules/$m.ko" 2>/dev/null || true; done
ip link set lo up
ip link set eth0 up 2>/dev/null || true
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        xenlab.ip=*) ip addr add "${arg#xenlab.ip=}" dev eth0 ;;
        xenlab.hostname=*) hostname "${arg#xenlab.hostname=}" ;;
    esac
done
echo "xenlab-guest: up as $(hostname) $(ip -4 -o addr show eth0 2>/dev/null | awk '{print $4}')" > /dev/hvc0
[ -x /etc/xenlab-run ] && /etc/xenlab-run &
exec /bin/sh -c 'while :; do sleep 3600; done'
