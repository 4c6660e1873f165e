#!/bin/sh
# Apply this machine's identity from the xenlab seed disk (label XLSEED) before the
# network and sshd start: hostname, SSH host key, root's authorized key, lab network
# configuration, /etc/hosts and NFS exports. Clones of one golden image never share these.
set -eu
seed=/run/xenlab-seed
mkdir -p "$seed"
# blkid scans /dev directly: no need to wait for udev to announce the disk.
mount -o ro "$(blkid -L XLSEED)" "$seed"
trap 'umount "$seed"' EXIT
install -m 0644 "$seed/hostname" /etc/hostname
hostname "$(cat /etc/hostname)"
install -m 0644 "$seed/hosts" /etc/hosts
install -d -m 0700 /root/.ssh
install -m 0600 "$seed/authorized_keys" /root/.ssh/authorized_keys
rm -f /etc/ssh/ssh_host_*
install -m 0600 "$seed/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key
install -m 0644 "$seed/ssh_host_ed25519_key.pub" /etc/ssh/ssh_host_ed25519_key.pub
install -d /etc/network/interfaces.d
install -m 0644 "$seed/interfaces" /etc/network/interfaces.d/xenlab
if [ -f "$seed/exports" ]; then
    install -d /etc/exports.d
    install -m 0644 "$seed/exports" /etc/exports.d/xenlab.exports
    while read -r dir _; do mkdir -p "$dir"; done < "$seed/exports"
fi
