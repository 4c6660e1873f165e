"""Operations checks: a guest's lifecycle through the toolstack driver (each verb timed),
and live migration and failover through the scenario session (the one road that
measures downtime and recovery), followed by a clean-up that leaves only Domain-0.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..drivers import drivers_for
from ..errors import SpecError, XenlabError
from ..report.suite_profile import ScenarioSection
from ..scenario.model import load_scenario
from ..scenario.session import begin, fit, run_on
from ..toolstack.base import GuestSpec, PoolSettings, Toolstack, VerbNotOffered
from ..waiting import wait_for
from .checks_host import Planned
from .context import Context
from .model import CheckOutcome, Measured, judge, not_run, outcome_of
from .parsers import ParseError, parse_traffic

GUEST_BOOT_S = 900  # a guest's boot under TCG with a busy dom0 (PV: 30-70 s measured; PVH more)

VERB_MEANING = {"start": "`create` until the guest runs", "pause": "pause (vCPUs stop)", "unpause": "unpause",
                "save": "save to a file on the shared SR (the domain goes)", "restore": "restore from that file",
                "reboot": "reboot until it runs again as a new domain", "shutdown": "clean shutdown until it is gone"}


def cleanup(toolstack: Toolstack) -> list[str]:
    """Destroy every guest the pool knows (what the stability check's leak count then judges)."""
    gone = []
    try:
        guests = toolstack.vms() if toolstack.pool() is not None else []
    except XenlabError:
        return gone
    for vm in guests:
        toolstack.destroy_vm(vm.name)
        gone.append(vm.name)
    return gone


def plan_lifecycle(ctx: Context) -> list[Planned]:
    caps = ctx.lab.capabilities
    section = ctx.suite.lifecycle
    wanted = section.guest_types or list(caps.guest_types)
    planned = []
    for guest_type in wanted:
        check_id = f"lifecycle/{guest_type}"
        if guest_type not in caps.guest_types:
            reason = (f"lab {ctx.lab.name} runs {', '.join(caps.guest_types)} guests only "
                      "(the hosts' images and Xen's virt_caps decide)")
            planned.append(Planned(check_id, "lifecycle", guest_type,
                                   lambda cid=check_id, t=guest_type, r=reason: not_run(cid, "lifecycle", t, r)))
            continue
        planned.append(Planned(check_id, "lifecycle", f"{guest_type} guest",
                               lambda cid=check_id, t=guest_type: _lifecycle(ctx, cid, t)))
    return planned


def _timed(figures: list[Measured], thresholds: dict[str, str], verb: str, action) -> object:
    started = time.monotonic()
    value = action()
    figures.append(judge(verb, round(time.monotonic() - started, 2), "s", thresholds, VERB_MEANING[verb]))
    return value


def _lifecycle(ctx: Context, check_id: str, guest_type: str) -> CheckOutcome:
    started = time.time()
    lab = ctx.lab
    begin(lab, ctx.progress)  # from `ready`: no pool, no guests
    toolstack = drivers_for(lab).toolstack
    hosts = [h.name for h in lab.hosts]
    toolstack.form_pool(hosts, PoolSettings(name="qualify"))
    name = f"q{guest_type}"
    host = hosts[0]
    thresholds = ctx.suite.lifecycle.thresholds
    figures: list[Measured] = []
    not_offered: list[str] = []
    ctx.progress(host, f"lifecycle: {guest_type} guest {name}")
    try:
        _timed(figures, thresholds, "start", lambda: toolstack.create_vm(
            GuestSpec(name, memory_mib=ctx.suite.lifecycle.memory_mib, type=guest_type), host))
        for verb, action, state in (("pause", lambda: toolstack.pause_vm(name), "paused"),
                                    ("unpause", lambda: toolstack.unpause_vm(name), "running"),
                                    ("save", lambda: toolstack.save_vm(name), None),
                                    ("restore", lambda: toolstack.restore_vm(name, host), "running"),
                                    ("reboot", lambda: toolstack.reboot_vm(name), "running"),
                                    ("shutdown", lambda: toolstack.shutdown_vm(name), None)):
            ctx.progress(host, f"lifecycle: {verb} {name}")
            try:
                _timed(figures, thresholds, verb, action)
            except VerbNotOffered as exc:
                not_offered.append(str(exc))
                figures.append(Measured(name=verb, value=None, unit="s", meaning=f"not measured: {exc}"))
                continue
            if state is not None and toolstack.vm(name).state != state:
                raise XenlabError(f"{name} is {toolstack.vm(name).state} after {verb}, not {state}")
    except XenlabError as exc:
        return outcome_of(check_id, "lifecycle", f"{guest_type} guest", figures, started, str(exc))
    finally:
        cleanup(toolstack)
    return outcome_of(check_id, "lifecycle", f"{guest_type} guest", figures, started,
                      details={"not_offered": not_offered} if not_offered else None, unmeasured=not_offered)


def plan_guest_traffic(ctx: Context) -> list[Planned]:
    """Guest-to-guest throughput across two hosts, measured by the guests' own agent."""
    check_id, subject = "network/guest-to-guest", "guests across hosts"
    hosts = [h.name for h in ctx.lab.hosts]
    reason = ""
    if not ctx.suite.network.guest_to_guest:
        reason = "the profile turns it off (suite.network.guest_to_guest: false)"
    elif len(hosts) < 2:
        reason = "one host: no path between guests on two hosts"
    if reason:
        return [Planned(check_id, "network", subject, lambda: not_run(check_id, "network", subject, reason))]
    return [Planned(check_id, "network", subject, lambda: _guest_traffic(ctx, check_id, subject, hosts[1], hosts[0]))]


def _guest_traffic(ctx: Context, check_id: str, subject: str, sink_host: str, sender_host: str) -> CheckOutcome:
    """A sink guest on one host, a sender on another that streams TCP to it for
    `guest_seconds`; the sink's count (first byte to close) is the figure, as iperf3's server."""
    started = time.time()
    section = ctx.suite.network
    caps = ctx.lab.capabilities
    guest_type = "pv" if "pv" in caps.guest_types else next(t for t in caps.guest_types if t != "hvm")
    begin(ctx.lab, ctx.progress)
    toolstack = drivers_for(ctx.lab).toolstack
    toolstack.form_pool([h.name for h in ctx.lab.hosts], PoolSettings(name="qualify"))
    sink, sender = "qsink", "qsend"
    figures: list[Measured] = []
    try:
        ctx.progress(sink_host, f"network: {guest_type} guest {sink} receives TCP from {sender} on {sender_host}")
        toolstack.create_vm(GuestSpec(sink, type=guest_type, writer=False, traffic_sink=True), sink_host)
        toolstack.create_vm(GuestSpec(sender, type=guest_type, writer=False, traffic_to=sink,
                                      traffic_seconds=section.guest_seconds), sender_host)

        def received() -> str:
            console = toolstack.console_log(sink)
            return console if "xenlab-traffic: received" in console else ""

        console = wait_for(received, f"{sink} on {sink_host} to receive {sender}'s stream",
                           GUEST_BOOT_S + section.guest_seconds, 2.0,
                           lambda: f"{sink}'s console:\n{toolstack.console_log(sink)[-1500:]}\n"
                                   f"{sender}'s console:\n{toolstack.console_log(sender)[-1500:]}")
        stream = parse_traffic(console)
        figures.append(judge("guest_throughput", round(stream.mbit_s, 2), "Mbit/s", section.thresholds,
                             f"TCP throughput guest to guest, {sender_host} to {sink_host} "
                             f"({guest_type} guests on the guest bridge, counted by the receiving guest)"))
    except VerbNotOffered as exc:
        return not_run(check_id, "network", subject, str(exc))
    except (XenlabError, ParseError) as exc:
        return outcome_of(check_id, "network", subject, figures, started, str(exc))
    finally:
        cleanup(toolstack)
    return outcome_of(check_id, "network", subject, figures, started,
                      details={"guest_type": guest_type, "bytes": stream.bytes, "seconds": stream.seconds})


def plan_scenario(ctx: Context, check: str, section: ScenarioSection | None) -> list[Planned]:
    check_id = check
    if section is None or not section.enabled:
        return [Planned(check_id, check, "pool", lambda: not_run(
            check_id, check, "pool", f"the profile has no suite.{check} (name a scenario file to run it)"))]
    return [Planned(check_id, check, "pool", lambda: _scenario(ctx, check, section))]


SCENARIO_MEANING = {"downtime_p50": "median guest downtime of the live migrations (longest heartbeat silence)",
                    "downtime_max": "worst guest downtime of the live migrations",
                    "migrations": "live migrations done",
                    "migration_duration_p50": "median `migrate` call, start to return",
                    "migration_duration_max": "slowest `migrate` call",
                    "heartbeats_lost": "guest heartbeats never received during the migrations",
                    "detection": "power cut until the pool declared the host dead",
                    "recovery": "power cut until the restarted guest's first heartbeat"}


def _scenario(ctx: Context, check: str, section: ScenarioSection) -> CheckOutcome:
    started = time.time()
    path = Path(section.scenario)
    if not path.is_absolute():
        candidates = [Path(base) / path for base in ctx.base_dirs]
        path = next((c for c in candidates if c.exists()), candidates[0])
    try:
        scenario = load_scenario(path)
    except SpecError as exc:
        return outcome_of(check, check, "pool", [], started, str(exc))
    problems = fit(scenario, ctx.lab)
    if problems:
        return not_run(check, check, "pool", f"{scenario.name} cannot run on lab {ctx.lab.name}: "
                       + "; ".join(p for _, p in problems))
    begin(ctx.lab, ctx.progress)

    def on_event(index: int, name: str, phase: str, message: str) -> None:
        if phase in ("start", "passed", "failed", "error", "not_measured"):
            ctx.progress(check, f"{scenario.name}: {name} {phase}" + (f" ({message})" if message else ""))

    result = run_on(scenario, ctx.lab, on_event, keep_going=True)
    thresholds = section.thresholds
    measured: dict[str, tuple[float | None, str]] = {k: (f.value, f.unit) for k, f in result.summary.items()}
    for step in _walk(result.steps):
        for name in ("detection", "recovery"):
            if name in step.figures and step.figures[name].value is not None:
                measured[name] = (step.figures[name].value, step.figures[name].unit)
    names = [n for n in SCENARIO_MEANING if n in measured or n in thresholds]
    figures = [judge(n, *measured.get(n, (None, "s")), thresholds, SCENARIO_MEANING[n]) for n in names]
    failed = [f"{s.name}: {s.message or s.outcome}" for s in _walk(result.steps) if s.outcome in ("failed", "error")]
    reason = (f"scenario {scenario.name} {result.outcome}: " + "; ".join(failed[:3])
              if result.outcome not in ("passed", "not_measured") else "")
    unmeasured = [f"{s.name}: {s.message}" for s in _walk(result.steps) if s.outcome == "not_measured" and not s.substeps]
    cleanup(drivers_for(ctx.lab).toolstack)
    details = {"scenario": scenario.name, "file": str(path), "outcome": result.outcome,
               "series": {k: v for k, v in result.series.items()}}
    return outcome_of(check, check, "pool", figures, started, reason, details, unmeasured=unmeasured)


def _walk(steps):
    for step in steps:
        yield step
        yield from _walk(step.substeps)
