#!/bin/busybox sh
# /init of the ferry lab guest (busybox sh, PID 1).
#
# Everything the guest needs comes from the kernel command line (ferry.*), so
# one initramfs serves every lab VM. /etc/ferry-modules lists the kernel
# modules in dependency order; ferry.lab.guest writes it at build time.

/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

NAME=unnamed
IP=
COLLECTOR=
LISTEN_PORT=
HEARTBEAT=0
MEMORY=0
DISK=0
PROBE=0
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        ferry.name=*) NAME="${arg#ferry.name=}" ;;
        ferry.ip=*) IP="${arg#ferry.ip=}" ;;
        ferry.collector=*) COLLECTOR="${arg#ferry.collector=}" ;;
        ferry.listen_port=*) LISTEN_PORT="${arg#ferry.listen_port=}" ;;
        ferry.heartbeat=*) HEARTBEAT="${arg#ferry.heartbeat=}" ;;
        ferry.memory_mib=*) MEMORY="${arg#ferry.memory_mib=}" ;;
        ferry.disk_writer=*) DISK="${arg#ferry.disk_writer=}" ;;
        ferry.probe=*) PROBE="${arg#ferry.probe=}" ;;
    esac
done

if [ "$PROBE" = 1 ]; then
    # Accelerator probe: reaching userspace is all we wanted to know.
    echo "FERRY-PROBE-OK"
    poweroff -f
fi

while read -r module; do
    [ -n "$module" ] && insmod "/lib/modules/$module"
done < /etc/ferry-modules

hostname "$NAME"
ip link set lo up
if [ -n "$IP" ]; then
    # virtio-net may appear a moment after insmod returns.
    n=0
    while ! ip link show eth0 >/dev/null 2>&1 && [ $n -lt 50 ]; do
        sleep 0.1
        n=$((n + 1))
    done
    ip addr add "$IP" dev eth0
    ip link set eth0 up
fi

echo "FERRY-READY name=$NAME uptime=$(cut -d' ' -f1 /proc/uptime)"

if [ -z "$COLLECTOR" ] || [ -z "$IP" ] || { [ "$HEARTBEAT" = 0 ] && [ "$MEMORY" = 0 ] && [ "$DISK" = 0 ]; }; then
    # No workload: PID 1 must never exit, or the kernel panics.
    while true; do sleep 3600; done
fi

DISK_DEV=
if [ "$DISK" = 1 ]; then
    n=0
    while [ ! -b /dev/vda ] && [ $n -lt 20 ]; do
        sleep 0.1
        n=$((n + 1))
    done
    [ -b /dev/vda ] && DISK_DEV=/dev/vda
fi

# Respawn rather than exec: PID 1 must survive an agent crash, and the
# console line tells whoever reads it that the agent restarted.
while true; do
    /sbin/ferry-agent --name "$NAME" --collector "$COLLECTOR" \
        --listen "${IP%/*}:$LISTEN_PORT" --heartbeat "$HEARTBEAT" \
        --memory "$MEMORY" --disk "$DISK_DEV"
    echo "FERRY-AGENT-EXIT status=$?"
    sleep 1
done
