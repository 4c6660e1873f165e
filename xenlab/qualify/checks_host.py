"""Checks that run commands in the hosts' dom0: boot, network, storage, stability.

Each `plan_*` returns the checks of its kind as (id, subject, run) so the suite can skip
the ones a resumed run already finished. Tools (iperf3, fio) are started and stopped by
the check itself; what they print is parsed by `parsers`.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import XenlabError
from ..lab.host import BOOT_MARKERS
from ..report.suite_profile import SUITE_FIGURES
from ..toolstack.xl import parse_xl_list
from ..waiting import wait_for
from .context import COMMAND_TIMEOUT, Context
from .model import CheckOutcome, Measured, judge, not_run, outcome_of
from .parsers import XEN_SERIOUS, ParseError, filter_log, parse_fio, parse_iperf3, parse_ping

IPERF_PORT = 5201


@dataclass(frozen=True)
class Planned:
    id: str
    check: str
    subject: str
    run: Callable[[], CheckOutcome]


def _missing_tool(host: Any, tool: str) -> str:
    if host.run(f"command -v {tool}", timeout=30).ok:
        return ""
    return f"{tool} is not installed in {host.name}'s dom0 (images/debian-xen.yaml installs it; rebuild the image)"


# -- boot ------------------------------------------------------------------------------
BOOT_MEANING = {"to_xen": "power-on to Xen's banner on the serial console",
                "to_ssh": "power-on to dom0 answering SSH", "to_toolstack": "power-on to `xl info` answering"}
BOOT_STAGES = {"boot": "to_xen", "ssh": "to_ssh", "toolstack": "to_toolstack"}


def plan_boot(ctx: Context) -> list[Planned]:
    section = ctx.suite.boot
    lab = ctx.lab
    booted_here = ctx.backend != "static"  # a static lab's `up` boots nothing: its stages are no boot times
    if (booted_here and ctx.started_here and lab.bringup_stages
            and "restore" not in next(iter(lab.bringup_stages.values()), {})):
        return [Planned(f"boot/{h.name}", "boot", h.name, lambda h=h: _boot_from_bringup(ctx, h.name))
                for h in lab.hosts if h.name in lab.bringup_stages]
    shells = ctx.shells()
    # a static XCP-ng host reached through xapi only still boots through its BMC, timed to xapi answering
    powered = [lab.machines[h.name] for h in lab.hosts
               if ctx.backend == "static" and getattr(lab.machines.get(h.name), "bmc", None) is not None]
    if not shells and not powered:
        return [Planned("boot", "boot", "lab", lambda: not_run("boot", "boot", "lab", ctx.no_shell_reason()))]
    host = (shells or powered)[0]
    why = ("a static lab's hosts are up before xenlab comes" if not booted_here else
           "the lab was already up" if not ctx.started_here else "the lab came up warm (restored, not booted)")
    if not section.power_cycle:
        return [Planned(f"boot/{host.name}", "boot", host.name, lambda: not_run(
            f"boot/{host.name}", "boot", host.name, f"{why} and the profile sets boot.power_cycle: false"))]
    return [Planned(f"boot/{host.name}", "boot", host.name, lambda: _power_cycle(ctx, host, why))]


def _boot_from_bringup(ctx: Context, host: str) -> CheckOutcome:
    started = time.time()
    stages = ctx.lab.bringup_stages[host]
    thresholds = ctx.suite.boot.thresholds
    figures = [judge(name, stages.get(stage), "s", thresholds, BOOT_MEANING[name])
               for stage, name in BOOT_STAGES.items()]
    return outcome_of(f"boot/{host}", "boot", host, figures, started, details={"source": "the lab's own bring-up"})


def unmeasured(host: Any, stage: str) -> str:
    """Why a boot stage has no figure on this host."""
    if stage == "ssh" and not getattr(host, "has_shell", True):
        return f"{host.name} is reached through xapi only (no `ssh:` in the lab file)"
    return f"{host.name}'s serial console is not the lab's to read"


def _power_cycle(ctx: Context, host: Any, why: str) -> CheckOutcome:
    """Power the host off and on through the lab's own power control, time its stages."""
    started = time.time()
    check_id = f"boot/{host.name}"
    if not hasattr(host, "wait_ready") or not hasattr(host, "power"):
        return not_run(check_id, "boot", host.name, f"{why}, and {host.name} has no power control here")
    if getattr(host, "bmc", False) is None:  # a static host without `ipmi:`
        return not_run(check_id, "boot", host.name, f"{why}, and {host.name} has no BMC in the lab file (`ipmi:`)")
    ctx.progress(host.name, f"boot: power cycle ({why})")
    host.power("off")
    wait_for(lambda: not host.process_alive(), f"{host.name} powered off", 120, 1.0)
    serial = getattr(host, "serial_log", None)  # a QEMU host's console; a real host's is not ours to read
    offset = serial.stat().st_size if serial is not None and serial.exists() else None
    timeout = ctx.suite.boot.timeout_s
    host.power("on")
    powered_on = time.monotonic()
    stages: dict[str, float] = {}
    if offset is not None:
        marker = BOOT_MARKERS.get(getattr(host, "role", "xen"), BOOT_MARKERS["xen"]).encode()

        def banner() -> bool:
            with open(serial, "rb") as console:
                console.seek(offset)
                return marker in console.read()

        wait_for(banner, f"{host.name}: Xen's banner on the serial console after power-on", timeout, 0.25,
                 lambda: host.serial_tail(15))
        stages["boot"] = round(time.monotonic() - powered_on, 2)
    called = time.monotonic() - powered_on
    rest = host.wait_ready(timeout, lambda name, stage: ctx.progress(name, f"boot: {stage}"))
    stages.update({stage: round(called + rest[stage], 2) for stage in ("ssh", "toolstack") if stage in rest})
    thresholds = ctx.suite.boot.thresholds
    figures = [judge(name, stages[stage], "s", thresholds, BOOT_MEANING[name] + " (power cycle)")
               if stage in stages else
               Measured(name=name, value=None, unit="s", meaning=f"not measurable here: {unmeasured(host, stage)}")
               for stage, name in BOOT_STAGES.items()]
    return outcome_of(check_id, "boot", host.name, figures, started,
                      details={"source": f"a power cycle of {host.name} ({why})"})


# -- network ---------------------------------------------------------------------------
def plan_network(ctx: Context) -> list[Planned]:
    shells = ctx.shells()
    if len(shells) < 2:
        reason = ctx.no_shell_reason() if not shells else "one host: no dom0-to-dom0 path to measure"
        return [Planned("network", "network", "lab", lambda: not_run("network", "network", "lab", reason))]
    planned: list[Planned] = []
    for i, client in enumerate(shells):
        server = shells[(i + 1) % len(shells)]
        for network in ctx.networks_of(client):
            if network not in ctx.networks_of(server):
                continue
            check_id = f"network/{client.name}-{server.name}/{network}"
            planned.append(Planned(check_id, "network", f"{client.name} -> {server.name} on {network}",
                                   lambda c=client, s=server, n=network, cid=check_id: _network(ctx, cid, c, s, n)))
    return planned


def _mtu_of(host: Any, address: str) -> float | None:
    result = host.run("ip -j -4 addr show", timeout=30)
    try:
        for link in json.loads(result.stdout or "[]"):
            if any(a.get("local") == address for a in link.get("addr_info", [])):
                return float(link.get("mtu"))
    except ValueError:
        return None
    return None


def _network(ctx: Context, check_id: str, client: Any, server: Any, network: str) -> CheckOutcome:
    started = time.time()
    section = ctx.suite.network
    subject = f"{client.name} -> {server.name} on {network}"
    for host in (client, server):
        missing = _missing_tool(host, "iperf3")
        if missing:
            return not_run(check_id, "network", subject, missing)
    address = server.address(network)
    thresholds = section.thresholds
    ctx.progress(client.name, f"network: iperf3 to {server.name} ({address}) for {section.seconds}s, ping")
    pidfile = f"/run/xenlab-iperf3-{IPERF_PORT}.pid"
    server.run(f"test -f {pidfile} && kill $(cat {pidfile}) 2>/dev/null; rm -f {pidfile}", timeout=30)
    server.succeed(f"iperf3 -s -D -1 -B {shlex.quote(address)} -p {IPERF_PORT} -I {pidfile}", timeout=30)
    try:
        wait_for(lambda: server.run(f"ss -ltn 'sport = :{IPERF_PORT}' | grep -q LISTEN", timeout=15).ok,
                 f"iperf3 listening on {server.name}", 30, 0.5)
        run = client.run(f"iperf3 -c {shlex.quote(address)} -p {IPERF_PORT} -t {section.seconds} -J",
                         timeout=section.seconds + COMMAND_TIMEOUT)
    finally:
        server.run(f"test -f {pidfile} && kill $(cat {pidfile}) 2>/dev/null; rm -f {pidfile}", timeout=30)
    figures: list[Measured] = []
    reason = ""
    try:
        iperf = parse_iperf3(run.stdout)
        figures.append(judge("throughput", round(iperf.mbit_s, 2), "Mbit/s", thresholds,
                             "TCP throughput dom0 to dom0 (iperf3, received by the server)"))
        figures.append(judge("retransmits", iperf.retransmits, "count", thresholds,
                             "TCP segments the sender had to send again"))
    except ParseError as exc:
        reason = str(exc)
    ping = client.run(f"ping -q -c {section.ping_count} -i 0.2 -W 2 {shlex.quote(address)}",
                      timeout=section.ping_count + COMMAND_TIMEOUT)
    try:
        parsed = parse_ping(ping.stdout)
        figures += [judge("latency_avg", parsed.avg_ms, "ms", thresholds, "ping round trip, mean"),
                    judge("latency_max", parsed.max_ms, "ms", thresholds, "ping round trip, worst"),
                    judge("loss", parsed.loss_pct, "%", thresholds, "ping replies lost")]
    except ParseError as exc:
        reason = "; ".join(r for r in (reason, str(exc)) if r)
    figures.append(judge("mtu", _mtu_of(client, client.address(network)), "", thresholds,
                         f"MTU of {client.name}'s interface on {network} as configured"))
    return outcome_of(check_id, "network", subject, figures, started, reason)


# -- storage ---------------------------------------------------------------------------
FIO_RUNS = (("seq_read", "read", "1M", "read"), ("seq_write", "write", "1M", "write"),
            ("rand_read", "randread", "4k", "read"), ("rand_write", "randwrite", "4k", "write"))


def plan_storage(ctx: Context) -> list[Planned]:
    shells = ctx.shells()
    if not shells:
        return [Planned("storage", "storage", "lab", lambda: not_run("storage", "storage", "lab",
                                                                        ctx.no_shell_reason()))]
    planned = []
    for host in shells:
        for target in ctx.suite.storage.targets:
            check_id = f"storage/{host.name}/{target}"
            planned.append(Planned(check_id, "storage", f"{host.name} {target}",
                                   lambda h=host, t=target, cid=check_id: _storage(ctx, cid, h, t)))
    return planned


def _shared_directory(ctx: Context, host: Any) -> tuple[str, str]:
    """(directory on the shared SR for this host's fio file, '' or why there is none)."""
    spec = ctx.lab.spec.services
    services = ctx.services()
    if spec is None or services is None:
        return "", f"lab {ctx.lab.name} has no services node: no shared SR to measure"
    sr = spec.nfs_export
    if not host.run(f"mountpoint -q {sr}", timeout=30).ok:
        network = ctx.networks_of(host)[0]
        server = services.address(network)
        host.succeed(f"mkdir -p {sr} && mount -t nfs -o vers=4.2,hard,timeo=100 {server}:{sr} {sr}", timeout=120)
    return f"{sr}/qualify-{host.name}", ""


def _storage(ctx: Context, check_id: str, host: Any, target: str) -> CheckOutcome:
    started = time.time()
    section = ctx.suite.storage
    subject = f"{host.name} {target}"
    missing = _missing_tool(host, "fio")
    if missing:
        return not_run(check_id, "storage", subject, missing)
    if target == "shared":
        directory, why = _shared_directory(ctx, host)
        if why:
            return not_run(check_id, "storage", subject, why)
        where = "the shared SR (NFS)"
    else:
        directory, where = "/var/tmp/xenlab-qualify", "a file on dom0's local disk"
    thresholds = section.thresholds
    figures: list[Measured] = []
    reasons: list[str] = []
    path = f"{directory}/fio.dat"
    host.succeed(f"mkdir -p {directory}", timeout=60)
    try:
        for name, rw, block, side in FIO_RUNS:
            ctx.progress(host.name, f"storage: fio {rw} {block} on {where} for {section.seconds}s")
            run = host.run(f"fio --name={name} --filename={path} --rw={rw} --bs={block} --size={section.size_mib}M "
                           f"--runtime={section.seconds} --time_based --direct=1 --ioengine=psync "
                           "--output-format=json", timeout=section.seconds * 4 + COMMAND_TIMEOUT)
            try:
                result = parse_fio(run.stdout)[side]
            except (ParseError, KeyError) as exc:
                reasons.append(f"fio {rw}: {exc} {run.stderr.strip()[-200:]}".strip())
                continue
            if name.startswith("seq"):
                figures.append(judge(name, round(result.mib_s, 2), "MiB/s", thresholds,
                                     f"sequential {side} in 1 MiB blocks, direct I/O, on {where}"))
            else:
                figures.append(judge(f"{name}_iops", round(result.iops, 1), "IOPS", thresholds,
                                     f"random {side}s of 4 KiB per second, one at a time, on {where}"))
                figures.append(judge(f"{name}_latency", round(result.latency_ms, 3), "ms", thresholds,
                                     f"mean completion time of one random 4 KiB {side} on {where}"))
    finally:
        host.run(f"rm -rf {directory}", timeout=120)
    return outcome_of(check_id, "storage", subject, figures, started, "; ".join(reasons))


# -- stability -------------------------------------------------------------------------
def plan_stability(ctx: Context) -> list[Planned]:
    shells = ctx.shells()
    if not shells:
        return [Planned("stability", "stability", "lab", lambda: not_run("stability", "stability", "lab",
                                                                            ctx.no_shell_reason()))]
    return [Planned(f"stability/{h.name}", "stability", h.name, lambda h=h: _stability(ctx, h)) for h in shells]


def _stability(ctx: Context, host: Any) -> CheckOutcome:
    started = time.time()
    allow = [a.pattern for a in ctx.suite.stability.allow]
    xen = host.run("xl dmesg", timeout=COMMAND_TIMEOUT)
    dom0 = host.run("dmesg --level=warn,err,crit,alert,emerg", timeout=COMMAND_TIMEOUT)
    if not xen.ok and not dom0.ok:
        raise XenlabError(f"{host.name}: neither `xl dmesg` nor `dmesg` answered: {xen.stderr.strip()[-200:]}")
    xen_verdict = filter_log(xen.stdout.splitlines(), allow, serious=XEN_SERIOUS)
    dom0_verdict = filter_log(dom0.stdout.splitlines(), allow)
    unexpected = [f"xen: {line}" for line in xen_verdict.unexpected] + [f"dom0: {line}" for line in
                                                                         dom0_verdict.unexpected]
    domains = parse_xl_list(host.run("xl list", timeout=COMMAND_TIMEOUT).stdout)
    leaked = [name for name, *_ in domains]
    thresholds = {"unexpected_messages": "== 0", "leaked_domains": "== 0", **ctx.suite.stability.thresholds}
    figures = [judge("unexpected_messages", len(unexpected), "count", thresholds,
                     "log lines at warning or worse (xl dmesg, dom0 dmesg) no allow-pattern explains"),
               judge("leaked_domains", len(leaked), "count", thresholds,
                     "domains other than Domain-0 left after the operations checks cleaned up")]
    allowed = {**xen_verdict.allowed}
    for key, count in dom0_verdict.allowed.items():
        allowed[key] = allowed.get(key, 0) + count
    return outcome_of(f"stability/{host.name}", "stability", host.name, figures, started,
                      details={"unexpected": unexpected[:50], "leaked": leaked, "allowed": allowed})


def known_figures(check: str) -> dict[str, str]:
    return SUITE_FIGURES.get(check, {})
