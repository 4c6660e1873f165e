"""The xl pool's high availability: Pacemaker and corosync, fencing through the hosts' BMCs.

On upstream Xen the stack people run to keep guests up is corosync (membership, quorum),
Pacemaker (decisions), `ocf:heartbeat:Xen` (a guest as a resource: `xl create`, `xl
migrate`, `xl shutdown`) and fencing through each server's BMC with `fence_ipmilan`.
Forming an xl pool forms that cluster over the pool network; xenlab then only injects
faults and reads what the stack did from its own records (the members' journals,
`crm_mon`, `stonith_admin --history`).

How a scenario's `pool:` settings map onto the stack (docs/real-hosts.md repeats it):
- `detection_timeout_s` is the time from a member's silence to the new membership:
  corosync's token timeout plus its consensus timeout (1.2x token), so token =
  detection / 2.2 (30 s: token 13.6 s, consensus 16.4 s; long enough for the dom0 stalls
  of a nested lab under TCG, see bench/dom0_stalls.py).
- `protected` guests are `ocf:heartbeat:Xen` resources (`allow-migrate=true`), their
  order the resources' `priority` (the first listed is started first when not all fit).
- Fencing: one `fence_ipmilan` device per member (`stonith-action=off`, the device never
  runs on the host it fences), preceded in a fencing topology by `fence_heuristics_ping`
  of the services node (the shared SR): a member that cannot reach the storage loses a
  fence race instead of fencing the member that can.
- Two members: corosync's `two_node` quorum (with its `wait_for_all`); three or more: a
  majority of votes.

The stack is installed in the host image but not started at boot (images/debian-xen.yaml
`disable_units`): forming the pool starts it.
"""

from __future__ import annotations

import re
import secrets
import shlex
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import XenlabError
from ..waiting import wait_for

if TYPE_CHECKING:
    from ..lab.ssh import RemoteShell

COROSYNC_CONF = "/etc/corosync/corosync.conf"
AUTHKEY = "/etc/corosync/authkey"
SECRETS_DIR = "/etc/xenlab"


def bmc_password_file(host: str) -> str:
    """0600 in every member's dom0: `host`'s BMC password, on no command line and in no CIB."""
    return f"{SECRETS_DIR}/bmc-password-{host}"


def bmc_password_script(host: str) -> str:
    """fence_ipmilan's `password_script` for `host`'s BMC (0700): it prints the password file."""
    return f"{SECRETS_DIR}/bmc-password-{host}.sh"


CONSENSUS_FACTOR = 1.2  # corosync's default consensus, as a multiple of the token
DETECTION_PER_TOKEN = 1.0 + CONSENSUS_FACTOR
MIN_TOKEN_MS = 3000  # corosync 3.1's default
STACK_UNITS = ("corosync", "pacemaker")


@dataclass(frozen=True)
class FenceTarget:
    """How the other members reach one member's BMC (IPMI over LAN)."""

    host: str
    address: str
    port: int
    user: str


@dataclass(frozen=True)
class ClusterPlan:
    name: str
    members: tuple[tuple[str, str], ...]  # (name, address on the pool network), in pool order
    token_ms: int
    fence_targets: tuple[FenceTarget, ...]
    ping_target: str  # the services node's pool address: the storage a survivor must reach

    @property
    def consensus_ms(self) -> int:
        return int(self.token_ms * CONSENSUS_FACTOR)


def token_ms(detection_timeout_s: float) -> int:
    """corosync's token for a pool whose members are to be declared lost after `detection_timeout_s`."""
    return max(MIN_TOKEN_MS, int(detection_timeout_s * 1000 / DETECTION_PER_TOKEN))


def corosync_conf(plan: ClusterPlan) -> str:
    """corosync.conf of the pool: knet over the pool network, encrypted with the pool's authkey."""
    nodes = "".join(f"    node {{\n        ring0_addr: {address}\n        name: {name}\n        nodeid: {i + 1}\n"
                    "    }\n" for i, (name, address) in enumerate(plan.members))
    quorum = "    two_node: 1\n" if len(plan.members) == 2 else ""
    return (
        "# written by xenlab (toolstack/cluster.py)\n"
        "totem {\n    version: 2\n"
        f"    cluster_name: {plan.name}\n    transport: knet\n"
        f"    token: {plan.token_ms}\n    consensus: {plan.consensus_ms}\n"
        "    crypto_cipher: aes256\n    crypto_hash: sha256\n}\n"
        f"nodelist {{\n{nodes}}}\n"
        f"quorum {{\n    provider: corosync_votequorum\n{quorum}}}\n"
        "logging {\n    to_syslog: yes\n    to_logfile: no\n    timestamp: on\n}\n"
    )


def _nvpairs(parent: ET.Element, tag: str, set_id: str, values: dict[str, str]) -> ET.Element:
    """`<tag id=set_id>` of nvpairs under `parent`, each id `<set_id>-<name>` as crmsh names them."""
    attrs = ET.SubElement(parent, tag, id=set_id)
    for name, value in values.items():
        ET.SubElement(attrs, "nvpair", id=f"{set_id}-{name}", name=name, value=value)
    return attrs


def _primitive(parent: ET.Element, rid: str, cls: str, kind: str, params: dict[str, str],
               ops: list[tuple[str, str, str | None]], meta: dict[str, str] | None = None,
               provider: str | None = None) -> ET.Element:
    """A `<primitive>` with its instance attributes, meta attributes and operations
    ((name, interval, timeout or None))."""
    primitive = ET.SubElement(parent, "primitive", id=rid, attrib={"class": cls, "type": kind})
    if provider:
        primitive.set("provider", provider)
    _nvpairs(primitive, "instance_attributes", f"{rid}-instance_attributes", params)
    if meta:
        _nvpairs(primitive, "meta_attributes", f"{rid}-meta_attributes", meta)
    operations = ET.SubElement(primitive, "operations")
    for name, interval, timeout in ops:
        op = ET.SubElement(operations, "op", id=f"{rid}-{name}-{interval}", name=name, interval=interval)
        if timeout:
            op.set("timeout", timeout)
    return primitive


def cib_config(plan: ClusterPlan) -> str:
    """The cluster's options and fencing as a CIB `<configuration>` fragment, for `cibadmin
    --modify` (objects merged by id). Pacemaker's own C tool, not crmsh: under TCG crmsh's
    Python start costs a PV dom0 seconds per call (bench/pool_formation.py)."""
    config = ET.Element("configuration")
    _nvpairs(ET.SubElement(config, "crm_config"), "cluster_property_set", "cib-bootstrap-options",
             {"stonith-enabled": "true", "stonith-action": "off", "stonith-timeout": "240s",
              "cluster-recheck-interval": "1min"})
    _nvpairs(ET.SubElement(config, "rsc_defaults"), "meta_attributes", "rsc-options", {"resource-stickiness": "100"})
    _nvpairs(ET.SubElement(config, "op_defaults"), "meta_attributes", "op-options", {"timeout": "240s"})
    resources = ET.SubElement(config, "resources")
    constraints = ET.SubElement(config, "constraints")
    members = " ".join(name for name, _ in plan.members)
    # the heuristic answers `reboot` only (its `off` waits for a power status it has not)
    _primitive(resources, "fence-ping", "stonith", "fence_heuristics_ping",
               {"ping_targets": plan.ping_target, "ping_count": "3", "ping_good_count": "2",
                "pcmk_off_action": "reboot", "pcmk_host_list": members}, [("monitor", "0", None)])
    topology = ET.SubElement(config, "fencing-topology")
    for target in plan.fence_targets:
        device = f"fence-{target.host}"
        _primitive(resources, device, "stonith", "fence_ipmilan",
                   {"ip": target.address, "ipport": str(target.port), "username": target.user,
                    "password_script": bmc_password_script(target.host), "lanplus": "1",
                    "pcmk_host_list": target.host, "pcmk_host_check": "static-list"}, [("monitor", "0", None)])
        ET.SubElement(constraints, "rsc_location", id=f"{device}-elsewhere", rsc=device, score="-INFINITY",
                      node=target.host)
        ET.SubElement(topology, "fencing-level", id=f"fencing-{target.host}-1", target=target.host, index="1",
                      devices=f"fence-ping,{device}")
    return ET.tostring(config, encoding="unicode")


def guest_resource(vm: str, config_path: str, priority: int, host: str) -> str:
    """A protected guest as a `<configuration>` fragment: an ocf:heartbeat:Xen `<primitive>`,
    migrating live, and the `<rsc_location>` `<vm>-placed` that first places it on `host`
    (lifted once it runs there)."""
    config = ET.Element("configuration")
    _primitive(ET.SubElement(config, "resources"), vm, "ocf", "Xen", {"xmfile": config_path, "name": vm},
               [("start", "0", "300s"), ("stop", "0", "240s"), ("monitor", "10s", "120s"),
                ("migrate_to", "0", "900s"), ("migrate_from", "0", "240s")],
               meta={"allow-migrate": "true", "priority": str(priority)}, provider="heartbeat")
    ET.SubElement(ET.SubElement(config, "constraints"), "rsc_location", id=f"{vm}-placed", rsc=vm,
                  score="INFINITY", node=host)
    return ET.tostring(config, encoding="unicode")


# -- the stack's own records (pure; tests/unit/test_cluster.py on captured output) ------------
@dataclass(frozen=True)
class Quorum:
    quorate: bool
    total_votes: int
    expected_votes: int
    members: tuple[str, ...]
    flags: tuple[str, ...]


def parse_quorumtool(text: str) -> Quorum:
    """`corosync-quorumtool -s`: quorate, votes, members (by name), flags (2Node, WaitForAll)."""
    fields: dict[str, str] = {}
    members = []
    in_members = False
    for line in text.splitlines():
        if line.startswith("Membership information"):
            in_members = True
            continue
        if in_members:
            parts = line.split()
            if len(parts) >= 3 and parts[0].isdigit():
                members.append(parts[2])
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    if "Quorate" not in fields:
        raise XenlabError(f"corosync-quorumtool said no quorum state: {text.strip()[:200]!r}")

    def number(name: str) -> int:
        value = fields.get(name, "0").split()[0] if fields.get(name) else "0"
        return int(value) if value.isdigit() else 0

    return Quorum(fields["Quorate"].lower().startswith("yes"), number("Total votes"), number("Expected votes"),
                  tuple(members), tuple(fields.get("Flags", "").split()))


@dataclass(frozen=True)
class ClusterState:
    """What `crm_mon --output-as=xml` says: the nodes online, quorum, and where each resource runs."""

    online: tuple[str, ...]
    offline: tuple[str, ...]
    with_quorum: bool
    dc: str | None
    resources: dict[str, tuple[str, ...]]  # resource id -> nodes it is active on
    failed: dict[str, tuple[str, ...]] = field(default_factory=dict)


def parse_crm_mon(text: str) -> ClusterState:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise XenlabError(f"crm_mon's XML does not parse ({exc}): {text[:200]!r}") from None
    online, offline = [], []
    for node in root.iter("node"):
        if node.get("online") is None:
            continue  # a node_history entry, not the nodes list
        (online if node.get("online") == "true" else offline).append(node.get("name", ""))
    dc = root.find("./summary/current_dc")
    resources: dict[str, tuple[str, ...]] = {}
    failed: dict[str, tuple[str, ...]] = {}
    for resource in root.iter("resource"):
        rid = resource.get("id", "")
        nodes = tuple(n.get("name", "") for n in resource.findall("node"))
        if resource.get("active") == "true" and resource.get("role") in ("Started", "Promoted", "Unpromoted"):
            resources[rid] = nodes
        if resource.get("failed") == "true":
            failed[rid] = nodes
    return ClusterState(tuple(online), tuple(offline),
                        dc is not None and dc.get("with_quorum") == "true",
                        dc.get("name") if dc is not None and dc.get("present") == "true" else None,
                        resources, failed)


@dataclass(frozen=True)
class FenceEvent:
    """One entry of `stonith_admin --history NODE --output-as=xml`."""

    target: str
    action: str
    delegate: str  # the member that ran the fencing device: the fence race's winner
    origin: str  # the member that asked for it
    status: str  # success | failed | pending
    completed: float | None  # epoch seconds


def parse_fence_history(text: str) -> list[FenceEvent]:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise XenlabError(f"stonith_admin's XML does not parse ({exc}): {text[:200]!r}") from None
    events = []
    for event in root.iter("fence_event"):
        completed = event.get("completed")
        events.append(FenceEvent(event.get("target", ""), event.get("action", ""), event.get("delegate", ""),
                                 event.get("origin", ""), event.get("status", ""),
                                 _epoch(completed) if completed else None))
    return events


def _epoch(text: str) -> float | None:
    """stonith_admin's `completed` ("2026-12-07 14:01:02 +00:00" or with fractions) to epoch seconds."""
    from datetime import datetime

    cleaned = re.sub(r"\.\d+", "", text.strip()).replace("Z", "+00:00")
    for fmt in ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(cleaned, fmt).timestamp()
        except ValueError:
            continue
    return None


@dataclass(frozen=True)
class JournalLine:
    at: float  # epoch seconds, on the member's clock
    unit: str  # the syslog identifier: corosync, pacemaker-fenced, pacemaker-controld, ...
    text: str


def parse_journal(text: str) -> list[JournalLine]:
    """`journalctl -o short-unix`: `1765110000.123456 h2 pacemaker-fenced[812]: message`."""
    lines = []
    for raw in text.splitlines():
        parts = raw.split(" ", 3)
        if len(parts) < 4:
            continue
        try:
            at = float(parts[0])
        except ValueError:
            continue
        unit = parts[2].rstrip(":").split("[")[0]
        lines.append(JournalLine(at, unit, parts[3]))
    return lines


@dataclass
class FailoverRecord:
    """What the stack did about a lost member, each moment from its own log (member's clock)."""

    membership_changed_at: float | None = None  # corosync formed a membership without the lost member
    fence_requested_at: float | None = None  # pacemaker asked for the lost member to be fenced
    fence_done_at: float | None = None  # the fencing action's result
    fence_result: str = ""  # the stack's words for it
    fenced_by: str = ""  # which member ran the fencing device
    fence_failures: int = 0  # attempts the stack reported failed before (or without) success
    started: dict[str, float] = field(default_factory=dict)  # resource -> when its start (or migrate) succeeded
    lines: list[str] = field(default_factory=list)  # the log lines the moments come from


MEMBERS_LEFT = re.compile(r"\[TOTEM \] A new membership \(.*\) was formed\. Members left: (?P<left>[\d ]+)")
FENCE_REQUESTED = re.compile(r"Requesting (?:peer )?fencing \((?P<action>\w+)\) (?:of|targeting) (?:node )?(?P<target>\S+)")
FENCE_RESULT = re.compile(r"Operation '?(?P<action>\w+)'? (?:\[\d+\] )?targeting (?P<target>\S+) "
                          r"(?:by (?P<by>\S+) )?.*?(?:returned|: ) ?(?P<result>OK|ok|0|Error.*|failed.*|\d+)")
PEER_FENCED = re.compile(r"Peer (?P<target>\S+) was (?P<outcome>terminated|not terminated) \((?P<action>\w+)\) by "
                         r"(?P<by>\S+) on behalf of \S+: (?P<result>.+)")
RESOURCE_STARTED = re.compile(r"Result of (?P<op>start|migrate_from) operation for (?P<rsc>\S+) on (?P<node>\S+): "
                              r"(?P<result>ok|OK)")


def failover_record(lines: list[JournalLine], lost: str, lost_nodeid: int, resources: list[str],
                    since: float) -> FailoverRecord:
    """The first membership change, fencing request and result about `lost`, and each resource's
    first successful start after `since`, from one survivor's journal."""
    record = FailoverRecord()
    for line in lines:
        if line.at < since:
            continue
        m = MEMBERS_LEFT.search(line.text)
        if m and record.membership_changed_at is None and str(lost_nodeid) in m.group("left").split():
            record.membership_changed_at = line.at
            record.lines.append(f"{line.at:.3f} {line.unit}: {line.text}")
            continue
        m = FENCE_REQUESTED.search(line.text)
        if m and m.group("target") == lost and record.fence_requested_at is None:
            record.fence_requested_at = line.at
            record.lines.append(f"{line.at:.3f} {line.unit}: {line.text}")
            continue
        m = PEER_FENCED.search(line.text)
        if m and m.group("target") == lost and record.fence_done_at is None:
            record.lines.append(f"{line.at:.3f} {line.unit}: {line.text}")
            if m.group("outcome") == "terminated":
                record.fence_done_at = line.at
                record.fence_result = f"{m.group('action')} by {m.group('by')}: {m.group('result')}"
                record.fenced_by = m.group("by")
            else:
                record.fence_failures += 1
            continue
        m = RESOURCE_STARTED.search(line.text)
        if m and m.group("rsc") in resources and m.group("rsc") not in record.started:
            record.started[m.group("rsc")] = line.at
            record.lines.append(f"{line.at:.3f} {line.unit}: {line.text}")
    return record


# -- the stack on the members ----------------------------------------------------------------
class ClusterStack:
    """Pacemaker and corosync on an xl pool's members, driven over their dom0 shells."""

    def __init__(self, shells: dict[str, RemoteShell]):
        self.shells = shells  # member name -> its dom0 shell

    def shell(self, member: str) -> RemoteShell:
        return self.shells[member]

    def form(self, plan: ClusterPlan, bmc_passwords: dict[str, str], timeout: float = 600) -> Quorum:
        """Write the configuration on every member, start the stack, wait for full membership
        and quorum, then configure fencing. A cluster formed before on these members is
        replaced (its configuration and CIB removed first)."""
        authkey = secrets.token_bytes(256)  # as corosync-keygen makes it
        conf = corosync_conf(plan)
        names = [n for n, _ in plan.members]

        for name in names:
            shell = self.shell(name)
            shell.succeed("systemctl stop pacemaker corosync 2>/dev/null; rm -f /var/lib/pacemaker/cib/cib* "
                          f"/var/lib/pacemaker/pengine/* && mkdir -p {SECRETS_DIR} && chmod 700 {SECRETS_DIR}",
                          timeout=180)
            shell.write_file(COROSYNC_CONF, conf, 0o644)
            shell.succeed(f"umask 077 && cat > {AUTHKEY}.new && chmod 400 {AUTHKEY}.new && mv {AUTHKEY}.new {AUTHKEY}",
                          input=authkey)
            for host, password in bmc_passwords.items():
                shell.write_file(bmc_password_file(host), password + "\n", 0o600)
                shell.write_file(bmc_password_script(host), f"#!/bin/sh\nexec cat {bmc_password_file(host)}\n", 0o700)
        # one member after another: run at once, each dom0's commands took twice as long under
        # TCG on 2 cores (bench/pool_formation.py, 2026-12-07), so nothing was gained
        for name in names:  # corosync first everywhere: wait_for_all needs every member
            self.shell(name).succeed("systemctl start corosync", timeout=180)
        for name in names:
            self.shell(name).succeed("systemctl start pacemaker", timeout=180)
        first = plan.members[0][0]

        def formed() -> ClusterState | None:
            state = self.state(first)
            return state if state and sorted(state.online) == sorted(names) and state.with_quorum else None

        wait_for(formed, f"a cluster of {', '.join(names)} with quorum", timeout, 2.0,
                 lambda: self.shell(first).run("crm_mon -1 2>&1 | head -30", timeout=60).stdout)
        self.configure(first, cib_config(plan))
        quorum = self.quorum(first)
        if not quorum.quorate or sorted(quorum.members) != sorted(names):
            raise XenlabError(f"corosync says quorate={quorum.quorate}, members {', '.join(quorum.members)}: "
                              f"not the pool's {', '.join(names)}")
        return quorum

    def configure(self, member: str, configuration_xml: str) -> None:
        """Merge a `<configuration>` fragment into the CIB (objects matched by id are updated,
        others created), with Pacemaker's `cibadmin`."""
        path = f"/run/xenlab-cib-{time.monotonic_ns()}.xml"
        shell = self.shell(member)
        shell.write_file(path, configuration_xml, 0o600)
        result = shell.run(f"cibadmin --modify --allow-create --scope configuration --xml-file {path}; "
                           f"status=$?; rm -f {path}; exit $status", timeout=300)
        if not result.ok:
            raise XenlabError(f"cibadmin on {member} refused the pool's configuration: "
                              f"{(result.stderr or result.stdout).strip()[-500:]}")

    def state(self, member: str) -> ClusterState | None:
        result = self.shell(member).run("crm_mon --output-as=xml -1", timeout=90)
        if not result.ok or "<" not in result.stdout:
            return None
        return parse_crm_mon(result.stdout)

    def quorum(self, member: str) -> Quorum:
        return parse_quorumtool(self.shell(member).run("corosync-quorumtool -s", timeout=60).stdout)

    def running_on(self, member: str, resource: str) -> tuple[str, ...]:
        state = self.state(member)
        return state.resources.get(resource, ()) if state else ()

    def journal(self, member: str, since: float) -> list[JournalLine]:
        result = self.shell(member).run(
            f"journalctl -o short-unix --no-pager --since @{int(since)} "
            "-t corosync -t pacemaker-fenced -t pacemaker-controld -t pacemaker-schedulerd -t Xen",
            timeout=120)
        return parse_journal(result.stdout)

    def fence_history(self, member: str, target: str) -> list[FenceEvent]:
        result = self.shell(member).run(f"stonith_admin --history {shlex.quote(target)} --output-as=xml", timeout=60)
        return parse_fence_history(result.stdout) if result.ok and "<" in result.stdout else []

    def clock_offset(self, member: str) -> float:
        """The member's clock minus this machine's (the midpoint of one `date` over SSH)."""
        before = time.time()
        out = self.shell(member).run("date +%s.%N", timeout=30).stdout.strip()
        after = time.time()
        try:
            return float(out) - (before + after) / 2
        except ValueError:
            return 0.0
