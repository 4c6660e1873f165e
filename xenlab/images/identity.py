"""Per-machine identity: keys and a small read-only seed disk applied at boot.

Clones of one golden image must never share a machine-id, hostname, SSH host key or
bridge MAC (a shared machine-id gave two hosts the same xenbr0 MAC). The machine-id and
hostname go on the kernel command line; the rest is on an ext4 seed disk labelled
XLSEED that `xenlab-seed.service` applies before the network starts.
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


def interfaces_for(machine: MachinePlan) -> str:
    """ifupdown stanzas for the lab NICs: Xen hosts bridge the first one as xenbr0."""
    out = [f"# lab networks of {machine.name}, written by xenlab"]
    for position, nic in enumerate(machine.nics):
        if machine.role == "xen" and position == 0:
            out += [
                f"auto {nic.device}", f"iface {nic.device} inet manual", "",
                "auto xenbr0", "iface xenbr0 inet static", f"    address {nic.address}",
                f"    bridge_ports {nic.device}", f"    bridge_hw {nic.mac}",
                "    bridge_stp off", "    bridge_fd 0", "    bridge_maxwait 0", "",
            ]
        else:
            out += [f"auto {nic.device}", f"iface {nic.device} inet static", f"    address {nic.address}", ""]
    return "\n".join(out) + "\n"


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
    nfs_export: str | None = None,
) -> Path:
    """Create the machine's seed disk (a small raw ext4 image) at `target`."""
    if not shutil.which("mkfs.ext4"):
        raise XenlabError("mkfs.ext4 is not installed (Debian package e2fsprogs)")
    with tempfile.TemporaryDirectory(prefix="xenlab-seed-") as work:
        root = Path(work)
        (root / "hostname").write_text(machine.name + "\n")
        (root / "hosts").write_text(hosts_file(plan))
        (root / "authorized_keys").write_text(authorized.public_line + "\n")
        shutil.copy(host_key.private_path, root / "ssh_host_ed25519_key")
        (root / "ssh_host_ed25519_key.pub").write_text(host_key.public_line + "\n")
        (root / "interfaces").write_text(interfaces_for(machine))
        if machine.role == "services" and nfs_export:
            (root / "exports").write_text(exports_for(plan, machine, nfs_export))
        target.unlink(missing_ok=True)
        proc = subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-L", SEED_LABEL, "-d", str(root), str(target), "4M"],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise XenlabError(f"cannot make the seed disk of {machine.name}: {proc.stderr.strip()}")
    target.chmod(0o600)
    return target
