#!/usr/bin/env bash
# Install what xenlab needs on a Debian 12 machine: QEMU, vde2, mmdebstrap and fakeroot (image
# builds), debootstrap (root's older road), uidmap (image builds without root; acl lets the test's throwaway users reach this Python), e2fsprogs, a static
# busybox and gcc (for the PV guest image), Chromium (HTML report checks), ipmitool (drives
# the virtual BMCs in the tests), nftables (firewall rules checked in a network namespace),
# GRUB for BIOS and UEFI, OVMF, mtools, dosfstools, fdisk and kmod (hardware variants of the
# Xen image: firmware boots, other disk buses),
# then xenlab itself with its test extras and the simulator's Python clients (Ansible: the `sim-clients`
# extra), and Xen Orchestra's npm client for the simulator tests.
# Idempotent: packages already present are not reinstalled.
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
PACKAGES=(qemu-system-x86 qemu-utils vde2 debootstrap mmdebstrap uidmap fakeroot acl e2fsprogs busybox-static cpio
          openssh-client iproute2 procps gcc libc6-dev chromium fonts-dejavu-core ipmitool nftables
          grub-pc-bin grub-efi-amd64-bin ovmf mtools dosfstools fdisk kmod)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test,sim-clients]'
# Image builds without root map the user's subordinate ids (/etc/subuid, /etc/subgid).
me=$(id -un)
if [ "$(id -u)" -ne 0 ] && ! { grep -q "^$me:" /etc/subuid 2>/dev/null && grep -q "^$me:" /etc/subgid 2>/dev/null; }; then
    echo "setup: $me has no subordinate ids, which image builds without root need; \`xenlab doctor\` says how to add them"
fi
# Xen Orchestra's XAPI client (npm xen-api), which tests/sim drives the simulator with;
# `npm ci` installs exactly the lock file, and only when it changed since the last run.
XO_DIR=tests/sim/xo_client
if ! command -v npm >/dev/null; then
    echo "setup: installing Debian's nodejs and npm (the simulator's client tests need Node.js >= 18)"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends nodejs npm
fi
if ! cmp -s "$XO_DIR/package-lock.json" "$XO_DIR/node_modules/.xenlab-installed-lock" \
        || [ ! -f "$XO_DIR/node_modules/xen-api/package.json" ]; then
    echo "setup: installing Xen Orchestra's xen-api client in $XO_DIR"
    (cd "$XO_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$XO_DIR/package-lock.json" "$XO_DIR/node_modules/.xenlab-installed-lock"
fi
echo "setup: done ($(xenlab --version))"
