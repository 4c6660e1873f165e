"""Network faults on hosts xenlab did not build: nftables rules in dom0, always undone.

A partition drops everything between the host and its pool network, both dom0's own
traffic (table `inet xenlab_fault`) and its guests' traffic through the bridge (table
`bridge xenlab_fault`, frames between the guests' vifs and the uplink), except the
controller's own SSH (the address the host sees xenlab's session come from), so xenlab
can still heal it. A storage loss drops dom0's traffic with the NFS server.

Every fault arms a dead-man switch in dom0 first: a transient systemd timer
(`systemd-run --on-active=`) that deletes xenlab's tables after DEADMAN_S seconds. Healing
stops the timer and deletes the tables, and checks that no xenlab table is left. If
xenlab dies without healing (SIGKILL, a crash, the controller losing power), the timer
still removes the rules: the host is cut off at most DEADMAN_S seconds. `clear` (run by a
static lab's up and down) removes anything a dead run left.
"""

from __future__ import annotations

import ipaddress
import shlex
from typing import Protocol

from ..errors import XenlabError

TABLE = "xenlab_fault"
UNDO_UNIT = "xenlab-fault-undo"
DEADMAN_S = 300  # the longest a host stays cut off if xenlab dies mid-fault
UNDO = (f"nft delete table inet {TABLE} 2>/dev/null; nft delete table bridge {TABLE} 2>/dev/null; "
        f"nft list tables | grep -q {TABLE} && exit 1; exit 0")


class Dom0(Protocol):
    name: str

    def run(self, command: str, timeout: float = ...): ...

    def succeed(self, command: str, timeout: float = ...) -> str: ...


def partition_ruleset(subnet: ipaddress.IPv4Network, keep: str | None, uplinks: list[str]) -> str:
    """nft rules that cut a host off `subnet`, but for the controller at `keep`."""
    allow = f"ip saddr {keep} accept\n    ip daddr {keep} accept\n    " if keep else ""
    lines = [
        f"table inet {TABLE} {{",
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
            f"table bridge {TABLE} {{",
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
        f"table inet {TABLE} {{",
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


def apply(host: Dom0, ruleset: str, deadman_s: int = DEADMAN_S) -> None:
    """Arm the dead-man switch, then load `ruleset` (a host never holds rules without it)."""
    clear(host)
    host.succeed(f"systemd-run --unit={UNDO_UNIT} --on-active={int(deadman_s)} --timer-property=AccuracySec=1s "
                 f"/bin/sh -c {shlex.quote(UNDO)}", timeout=30)
    try:
        host.succeed(f"printf %s {shlex.quote(ruleset)} | nft -f -", timeout=30)
    except Exception:
        clear(host)
        raise


def clear(host: Dom0) -> None:
    """Remove xenlab's rules and their timer; raise if a rule is left."""
    host.run(f"systemctl stop {UNDO_UNIT}.timer {UNDO_UNIT}.service 2>/dev/null; "
             f"systemctl reset-failed {UNDO_UNIT}.timer {UNDO_UNIT}.service 2>/dev/null; true", timeout=30)
    result = host.run(f"/bin/sh -c {shlex.quote(UNDO)}", timeout=30)
    if not result.ok:
        raise XenlabError(f"{host.name}: xenlab's nftables table {TABLE} is still there after removing it "
                          f"(`nft list tables` in dom0): {result.stderr.strip()}")


def leftover(host: Dom0) -> bool:
    """Does `host` hold any xenlab rule?"""
    return TABLE in host.run("nft list tables 2>/dev/null", timeout=30).stdout
