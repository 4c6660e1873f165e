"""Network faults on hosts xenlab did not build: nftables rules in dom0, always undone.

A partition drops everything between the host and its pool network, both dom0's own
traffic (table `inet xenlab_partition`) and its guests' traffic through the bridge (table
`bridge xenlab_partition`, frames between the guests' vifs and the uplink), except the
controller's own SSH (the address the host sees xenlab's session come from), so xenlab
can still heal it. A storage loss drops dom0's traffic with the NFS server (table `inet
xenlab_storage`). Each kind has its own tables, so both may be inflicted on one host.

Every fault arms a dead-man switch in dom0 first: a transient systemd timer
(`systemd-run --unit=xenlab-undo-KIND --on-active=`) that deletes that fault's tables after
DEADMAN_S seconds. Healing stops the timer and deletes the tables, and checks that none of
them is left. If
xenlab dies without healing (SIGKILL, a crash, the controller losing power), the timer
still removes the rules: the host is cut off at most DEADMAN_S seconds. `clear` (run by a
static lab's up and down) removes anything a dead run left.
"""

from __future__ import annotations

import ipaddress
import shlex
from typing import Protocol

from ..errors import XenlabError

PREFIX = "xenlab_"  # every table xenlab loads is named xenlab_KIND
KINDS = ("partition", "storage")
DEADMAN_S = 300  # the longest a host stays cut off if xenlab dies mid-fault


def table(kind: str) -> str:
    if kind not in KINDS:
        raise XenlabError(f"no firewall fault {kind!r} (one of {', '.join(KINDS)})")
    return PREFIX + kind


def undo_unit(kind: str) -> str:
    return f"xenlab-undo-{kind}"


def undo_script(kind: str) -> str:
    """Delete the tables of `kind` (inet and bridge); fail if one is still there."""
    name = table(kind)
    return (f"nft delete table inet {name} 2>/dev/null; nft delete table bridge {name} 2>/dev/null; "
            f"nft list tables | grep -qw {name} && exit 1; exit 0")


class Dom0(Protocol):
    name: str

    def run(self, command: str, timeout: float = ...): ...

    def succeed(self, command: str, timeout: float = ...) -> str: ...


def partition_ruleset(subnet: ipaddress.IPv4Network, keep: str | None, uplinks: list[str]) -> str:
    """nft rules that cut a host off `subnet`, but for the controller at `keep`."""
    allow = f"ip saddr {keep} accept\n    ip daddr {keep} accept\n    " if keep else ""
    name = table("partition")
    lines = [
        f"table inet {name} {{",
        "  chain input { type filter hook input priority -10; policy accept;",
        f"    {allow}ip saddr {subnet} drop",
        "  }",
        "  chain output { type filter hook output priority -10; policy accept;",
        f"    {allow}ip daddr {subnet} drop",
        "  }",
        "}",
    ]
    if uplinks:
        ports = ", ".join(f'"{u}"' for u in uplinks)
        lines += [
            f"table bridge {name} {{",
            "  chain forward { type filter hook forward priority -10; policy accept;",
            f"    iifname {{ {ports} }} drop",
            f"    oifname {{ {ports} }} drop",
            "  }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def storage_ruleset(nfs_server: str) -> str:
    """nft rules that cut dom0 off its NFS server (the shared SR stops answering)."""
    return "\n".join([
        f"table inet {table('storage')} {{",
        "  chain input { type filter hook input priority -10; policy accept;",
        f"    ip saddr {nfs_server} drop",
        "  }",
        "  chain output { type filter hook output priority -10; policy accept;",
        f"    ip daddr {nfs_server} drop",
        "  }",
        "}",
    ]) + "\n"


def controller_address(host: Dom0) -> str | None:
    """The address `host` sees xenlab's SSH session come from."""
    out = host.run("echo $SSH_CLIENT", timeout=30).stdout.split()
    try:
        return str(ipaddress.ip_address(out[0])) if out else None
    except ValueError:
        return None


def bridge_uplinks(host: Dom0, bridge: str = "xenbr0") -> list[str]:
    """The bridge's ports that are not guests' vifs (its uplinks to the network)."""
    out = host.run(f"ls /sys/class/net/{bridge}/brif 2>/dev/null", timeout=30).stdout.split()
    return [p for p in out if not p.startswith(("vif", "tap"))]


def require_nft(host: Dom0) -> None:
    if not host.run("command -v nft", timeout=30).ok:
        raise XenlabError(f"{host.name}: no `nft` in dom0: install nftables there (partition and storage-loss "
                          "faults on a static host are nftables rules)")


def apply(host: Dom0, kind: str, ruleset: str, deadman_s: int = DEADMAN_S) -> None:
    """Arm the dead-man switch of `kind`, then load its `ruleset` (a host never holds rules without it)."""
    clear(host, kind)
    unit = undo_unit(kind)
    host.succeed(f"systemd-run --unit={unit} --on-active={int(deadman_s)} --timer-property=AccuracySec=1s "
                 f"/bin/sh -c {shlex.quote(undo_script(kind))}", timeout=30)
    try:
        host.succeed(f"printf %s {shlex.quote(ruleset)} | nft -f -", timeout=30)
    except Exception:
        clear(host, kind)
        raise


def clear(host: Dom0, kind: str) -> None:
    """Remove the rules of `kind` and their timer; raise if one of its tables is left."""
    unit = undo_unit(kind)
    host.run(f"systemctl stop {unit}.timer {unit}.service 2>/dev/null; "
             f"systemctl reset-failed {unit}.timer {unit}.service 2>/dev/null; true", timeout=30)
    result = host.run(f"/bin/sh -c {shlex.quote(undo_script(kind))}", timeout=30)
    if not result.ok:
        raise XenlabError(f"{host.name}: xenlab's nftables table {table(kind)} is still there after removing it "
                          f"(`nft list tables` in dom0): {result.stderr.strip()}")


def clear_all(host: Dom0) -> None:
    for kind in KINDS:
        clear(host, kind)


def leftover(host: Dom0) -> list[str]:
    """xenlab's tables `host` holds (`family name`), if any."""
    out = host.run("nft list tables 2>/dev/null", timeout=30).stdout
    return [line.split(None, 1)[1] for line in out.splitlines() if line.startswith("table ") and PREFIX in line]
