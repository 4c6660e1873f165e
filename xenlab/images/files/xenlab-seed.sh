#!/bin/sh
# Apply this machine's identity from the xenlab seed disk (label XLSEED) before the
# network and sshd start: its root-overlay tree (hostname, hosts, SSH host key, root's
# authorized key, networkd files, NFS exports) is copied over /. Few commands: each
# exec is slow under TCG. blkid scans /dev itself, so udev need not have announced it.
set -eu
seed=/run/xenlab-seed
mkdir -p "$seed"
mount -o ro "$(blkid -L XLSEED)" "$seed"
# Modes are kept, ownership is not: files belong to root here whoever built the disk.
cp -R --preserve=mode "$seed/root-overlay/." /
umount "$seed"
