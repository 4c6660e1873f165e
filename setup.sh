#!/usr/bin/env bash
# Install what xenlab needs on a Debian 12 machine: QEMU, vde2, debootstrap, e2fsprogs,
# a static busybox and gcc (for the PV guest image), Chromium (HTML report checks), then
# xenlab itself with its test extras.
# Idempotent: packages already present are not reinstalled.
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
PACKAGES=(qemu-system-x86 qemu-utils vde2 debootstrap e2fsprogs busybox-static cpio openssh-client iproute2 procps
          gcc libc6-dev chromium fonts-dejavu-core)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
echo "setup: done ($(xenlab --version))"
