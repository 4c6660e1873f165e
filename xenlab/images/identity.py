"""Per-machine identity: keys and a small read-only seed disk applied at boot.

Clones of one golden image must never share a machine-id, hostname, SSH host key or
bridge MAC (a shared machine-id gave two hosts the same xenbr0 MAC). The machine-id and
hostname go on the kernel command line; the rest is on an ext4 seed disk labelled
XLSEED that `xenlab-seed.service` copies over / before the network starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..errors import XenlabError
from ..plan import LabPlan, MachinePlan

SEED_LABEL = "XLSEED"
BOOT_CONFIG = "xenlab-boot.cfg"  # a firmware-booted host's Xen and dom0 command lines, for its GRUB


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_line: str  # "ssh-ed25519 AAAA... comment"


def generate_keypair(path: Path, comment: str) -> KeyPair:
    """An ed25519 key in OpenSSH format at `path` (0600) and `path`.pub; reused if present."""
    pub_path = path.with_name(path.name + ".pub")
    if path.exists() and pub_path.exists():
        return KeyPair(path, pub_path.read_text().strip())
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    line = f"{public.decode()} {comment}"
    pub_path.write_text(line + "\n")
    return KeyPair(path, line)


def network_files_for(machine: MachinePlan) -> dict[str, str]:
    """systemd-networkd files for the lab NICs: Xen hosts bridge the first one as xenbr0
    with that NIC's planned MAC (never one derived from a shared machine-id)."""
    files: dict[str, str] = {}
    common = "LinkLocalAddressing=no\nIPv6AcceptRA=no\nConfigureWithoutCarrier=yes\n"

    def match(nic) -> str:
        # Another NIC model than virtio loads its driver from the root file system, after
        # the management NIC took eth0: match it by its planned MAC whatever its name
        # (Type=ether: the bridge xenbr0 has the same MAC). virtio labs keep their files.
        if machine.hardware.nic == "virtio":
            return f"[Match]\nName={nic.device}\n"
        return f"[Match]\nMACAddress={nic.mac}\nType=ether\n"

    for position, nic in enumerate(machine.nics):
        if machine.role == "xen" and position == 0:
            files["20-xenbr0.netdev"] = (
                f"[NetDev]\nName=xenbr0\nKind=bridge\nMACAddress={nic.mac}\n\n[Bridge]\nSTP=no\nForwardDelaySec=0\n"
            )
            files[f"20-{nic.device}.network"] = f"{match(nic)}\n[Network]\nBridge=xenbr0\n{common}"
            files["21-xenbr0.network"] = (
                f"[Match]\nName=xenbr0\n\n[Network]\nAddress={nic.address}\n{common}"
            )
        else:
            files[f"20-{nic.device}.network"] = f"{match(nic)}\n[Network]\nAddress={nic.address}\n{common}"
    return files


def network_ready_command(machine: MachinePlan) -> str:
    """A shell test that passes once every lab NIC is up and carries its planned address (a
    Xen host's first NIC as an up port of xenbr0, the address on the bridge). Readiness waits
    for it: under a heavily loaded TCG machine networkd has been seen to give up creating
    the bridge ("netdev could not be created: Connection timed out") and leave the lab NIC
    down while SSH and the toolstack answer. Two `ip` per NIC and shell matching, no grep or
    awk: each program started costs a TCG machine a tenth of a second or more, more still
    right after a restore, when none of its code is translated yet."""
    tests = []
    for position, nic in enumerate(machine.nics):
        address = f"inet {nic.address.ip}/{nic.address.network.prefixlen} "
        if machine.role == "xen" and position == 0:
            tests.append(_has("ip -o link show master xenbr0", "state UP"))
            tests.append(_has("ip -o -4 addr show dev xenbr0", address))
        else:
            # the NIC holding the address (its name is the second word of `ip -o addr`)
            tests.append(f"set -- $(ip -o -4 addr show to {nic.address.ip}/32) && "
                         + _has('ip -o link show dev "${2:-none}"', "state UP"))
            tests.append(f"case \"$*\" in *'{address}'*) ;; *) false ;; esac")
    return " && ".join(tests) if tests else "true"


def _has(command: str, text: str) -> str:
    """A POSIX shell test: `command` succeeds and its output contains `text`."""
    return f"case \"$({command} 2>/dev/null)\" in *'{text}'*) ;; *) false ;; esac"


NETWORK_REPAIR_COMMAND = "systemctl restart systemd-networkd"  # the images have no D-Bus for networkctl


def hosts_file(plan: LabPlan) -> str:
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    for machine in plan.machines:
        if machine.nics:
            lines.append(f"{machine.nics[0].address.ip} {machine.name}")
    return "\n".join(lines) + "\n"


def exports_for(plan: LabPlan, machine: MachinePlan, export: str) -> str:
    """NFS export of the services node to every lab subnet it sits on."""
    rules = " ".join(
        f"{next(n.subnet for n in plan.networks if n.name == nic.network)}(rw,sync,no_root_squash,no_subtree_check)"
        for nic in machine.nics
    )
    return f"{export} {rules}\n"


def write_seed_disk(
    target: Path, plan: LabPlan, machine: MachinePlan, host_key: KeyPair, authorized: KeyPair,
    nfs_export: str | None = None, boot_config: str | None = None,
) -> Path:
    """Create the machine's seed disk (a small raw ext4 image) at `target`.

    The disk holds a tree (`/root-overlay`) laid out like the machine's root file system,
    with modes set; the machine copies it over / in one command at boot (fast under TCG).
    """
    if not shutil.which("mkfs.ext4"):
        raise XenlabError("mkfs.ext4 is not installed (Debian package e2fsprogs)")
    with tempfile.TemporaryDirectory(prefix="xenlab-seed-") as work:
        tree = Path(work) / "root-overlay"

        def put(path: str, content: str, mode: int = 0o644) -> None:
            file = tree / path
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(content)
            file.chmod(mode)

        put("etc/hostname", machine.name + "\n")
        put("etc/hosts", hosts_file(plan))
        put("root/.ssh/authorized_keys", authorized.public_line + "\n", 0o600)
        (tree / "root/.ssh").chmod(0o700)
        (tree / "root").chmod(0o700)
        put("etc/ssh/ssh_host_ed25519_key", host_key.private_path.read_text(), 0o600)
        put("etc/ssh/ssh_host_ed25519_key.pub", host_key.public_line + "\n")
        for name, content in network_files_for(machine).items():
            put(f"etc/systemd/network/{name}", content)
        if machine.role == "services" and nfs_export:
            put("etc/exports.d/xenlab.exports", exports_for(plan, machine, nfs_export))
            # Short NFSv4 lease and grace: a dead member's state is dropped in seconds, and
            # a restarted server does not stall every open for the default 90 s.
            put("etc/nfs.conf.d/xenlab.conf", "[nfsd]\nlease-time=10\ngrace-time=10\n")
            (tree / nfs_export.lstrip("/")).mkdir(parents=True, exist_ok=True)
        tree.chmod(0o755)
        if boot_config is not None:
            # Read by GRUB's grub.cfg on a firmware-booted host (images/variant.py), not copied over /.
            (Path(work) / BOOT_CONFIG).write_text(boot_config)
        target.unlink(missing_ok=True)
        proc = subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-L", SEED_LABEL, "-d", work, str(target), "4M"],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            raise XenlabError(f"cannot make the seed disk of {machine.name}: {proc.stderr.strip()}")
    target.chmod(0o600)
    return target
