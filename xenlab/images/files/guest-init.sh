#!/bin/busybox sh
# First stage of the xenlab PV guest (run by busybox init as sysinit): load the Xen
# front-end drivers, bring up eth0 with the address from the kernel command line, then
# start the measurement agents in the background:
#   xenlab.ip=A/N        address of eth0
#   xenlab.hostname=N    guest name (sent in every heartbeat)
#   xenlab.hb=IP:PORT    heartbeat collector (services node); one datagram every 10 ms
#   xenlab.hbkey=KEY     the lab's heartbeat key: each datagram carries an HMAC made with it
#   xenlab.writer=1      write verifiable records to /dev/xvda (see xenlab/metrics.py)
#   xenlab.sink=PORT     receive TCP streams on PORT, print each one's bytes and seconds
#   xenlab.send=IP:PORT:SECONDS  send one TCP stream to a sink (guest-to-guest throughput)
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in $(cat /etc/modules-load); do insmod "/lib/modules/$m.ko" 2>/dev/null; done
# The front-ends attach asynchronously (in an HVM guest only once the platform device has
# unplugged the emulated NIC and disk): wait up to 10 s for each device to appear.
appear() { i=0; while [ ! -e "$1" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done; }
appear /sys/class/net/eth0
ip link set lo up
ip link set eth0 up
name=guest hb= hbkey= writer= sink= send=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        xenlab.ip=*) ip addr add "${arg#xenlab.ip=}" dev eth0 ;;
        xenlab.hostname=*) name="${arg#xenlab.hostname=}"; hostname "$name" ;;
        xenlab.hb=*) hb="${arg#xenlab.hb=}" ;;
        xenlab.hbkey=*) hbkey="${arg#xenlab.hbkey=}" ;;
        xenlab.writer=*) writer="${arg#xenlab.writer=}" ;;
        xenlab.sink=*) sink="${arg#xenlab.sink=}" ;;
        xenlab.send=*) send="${arg#xenlab.send=}" ;;
    esac
done
if [ -n "$hb" ] && [ -n "$hbkey" ]; then
    /bin/xenlab-heartbeat "${hb%:*}" "${hb#*:}" "$name" "$hbkey" 10 &
fi
[ "$writer" = 1 ] && appear /dev/xvda
if [ "$writer" = 1 ] && [ -b /dev/xvda ]; then
    /bin/xenlab-writer /dev/xvda &
fi
if [ -n "$sink" ]; then
    /bin/xenlab-traffic sink "$sink" &
fi
if [ -n "$send" ]; then
    to="${send%%:*}" rest="${send#*:}"
    /bin/xenlab-traffic send "$to" "${rest%%:*}" "${rest#*:}" &
fi
# The kernel says what kind of guest it runs as (PV, PVH or HVM): the console log proves it.
echo "xenlab-guest: $name up, $(ip -4 -o addr show eth0 | awk '{print $4}'), $(cat /sys/hypervisor/guest_type 2>/dev/null || echo unknown) guest"
