"""`xenlab qualify`: a profile's suite of checks run on a lab, one road for the CLI, bench/ and Python.

    plan_qualify (validate the profile, resolve the lab like `xenlab run`; nothing starts)
      -> run_qualify (bring the lab up if it is not, run each check in order, record each
         finished check in DIR's state file, write the report)

A check that breaks fails with its error and the suite goes on; a check this lab cannot
run is `not_run` with the reason. `resume` skips the checks DIR's state file holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..lab.contract import LabBackend
from ..lab.labs import only_running_lab, open_lab, resolve_lab
from ..report.qualification import QualificationProfile, host_checks, load_profile
from ..report.suite_profile import SuiteSpec
from ..scenario.session import bring_up
from ..waiting import Progress, quiet
from .checks_host import Planned, plan_boot, plan_network, plan_stability, plan_storage
from .checks_ops import plan_guest_traffic, plan_lifecycle, plan_scenario
from .context import Context
from .model import CheckOutcome, Measured, QualifyReport, not_run, outcome_of
from .report import write_report
from .state import QualifyState, load_state, profile_digest, save_state

PHASES = ("inventory", "boot", "network", "storage", "lifecycle", "migration", "failover", "stability")


@dataclass
class QualifyPlan:
    profile: QualificationProfile
    profile_path: str
    suite: SuiteSpec
    lab: LabBackend
    running: bool  # the lab was up already (attached)
    out_dir: Path


def plan_qualify(profile_path: str, lab_ref: str | None, out_dir: str | Path,
                 base_dirs: Sequence[Path] | None = None) -> QualifyPlan:
    """Validate the profile and choose the lab (SpecError / XenlabError); starts nothing."""
    profile = load_profile(profile_path)
    found = resolve_lab(lab_ref or only_running_lab(), base_dirs, attach="first")
    lab = open_lab(found)
    return QualifyPlan(profile, str(profile_path), profile.suite or SuiteSpec(), lab, found.running, Path(out_dir))


def _inventory(ctx: Context, profile: QualificationProfile, report_inventory: list) -> list[Planned]:
    def run() -> CheckOutcome:
        started = time.time()
        ctx.progress("lab", "inventory: asking every host what it is made of")
        hosts = ctx.lab.inventory()
        report_inventory[:] = hosts
        return _judge_inventory(hosts, profile, started)

    return [Planned("inventory", "inventory", "every host", run)]


def _judge_inventory(hosts: list, profile: QualificationProfile, started: float) -> CheckOutcome:
    """The profile's `hosts:` checks (the same ones `xenlab report --profile` judges) on every host."""
    rows = [c.model_dump() for inv in hosts for c in host_checks(inv, profile.hosts)]
    figures = [Measured(name="hosts", value=len(hosts), unit="count", meaning="hosts that reported an inventory")]
    failed = [f"{r['subject']} {r['check']}: {r['measured']} (wanted {r['expected']})" for r in rows if not r["passed"]]
    reason = "; ".join(failed[:5]) if failed else ("" if hosts else "no host reported an inventory")
    return outcome_of("inventory", "inventory", "every host", figures, started, reason, {"host_checks": rows})


def run_qualify(plan: QualifyPlan, progress: Progress = quiet, resume: bool = False,
                on_check: Callable[[CheckOutcome], None] | None = None, timeout: float = 900) -> QualifyReport:
    """Run the plan's suite; the report is written to its out_dir and returned."""
    lab, suite = plan.lab, plan.suite
    digest = profile_digest(plan.profile_path)
    state = load_state(plan.out_dir, digest, lab.name) if resume else None
    if state is None:
        state = QualifyState(profile_digest=digest, lab=lab.name, started_at=time.time())
    elif state.checks:
        progress("qualify", f"resuming: {len(state.checks)} checks already done in {plan.out_dir}")
    started_here = False
    if not plan.running:
        progress("lab", f"lab {lab.name} is not up: bringing it up")
        bring_up(lab, progress, timeout=timeout)
        started_here = True
    profile_dir = Path(plan.profile_path).resolve().parent
    ctx = Context(lab, suite, progress, started_here=started_here,  # cwd, then the profile's repository
                  base_dirs=(str(Path.cwd()), str(profile_dir.parent), str(profile_dir)))
    inventory = list(state.inventory)
    planners: dict[str, Callable[[], list[Planned]]] = {
        "inventory": lambda: _inventory(ctx, plan.profile, inventory),
        "boot": lambda: plan_boot(ctx), "network": lambda: plan_network(ctx) + plan_guest_traffic(ctx),
        "storage": lambda: plan_storage(ctx), "lifecycle": lambda: plan_lifecycle(ctx),
        "migration": lambda: plan_scenario(ctx, "migration", suite.migration),
        "failover": lambda: plan_scenario(ctx, "failover", suite.failover),
        "stability": lambda: plan_stability(ctx),
    }
    try:
        for phase in PHASES:
            section = getattr(suite, phase)
            if section is not None and not section.enabled:
                outcome = not_run(phase, phase, "lab", f"the profile turns {phase} off (suite.{phase}.enabled)")
                _record(state, outcome, plan.out_dir, on_check)
                continue
            phase_started = time.monotonic()
            done = state.done()
            for planned in planners[phase]():
                if planned.id in done:
                    continue
                progress("qualify", f"{planned.id}: running")
                outcome = _run_one(planned)
                if planned.id == "inventory":
                    state.inventory = inventory
                _record(state, outcome, plan.out_dir, on_check)
            spent = state.phase_seconds.get(phase, 0.0) + time.monotonic() - phase_started
            state.phase_seconds[phase] = round(spent, 2)
            save_state(state, plan.out_dir)
    finally:
        if started_here and not lab.capabilities.outlives_process:
            lab.down()
    report = QualifyReport(profile=plan.profile.name, profile_file=plan.profile_path, lab=lab.name,
                           backend=lab.spec.backend, accel=lab.accel, started_at=state.started_at,
                           ended_at=time.time(), inventory=state.inventory,
                           checks=sorted(state.checks, key=lambda c: (PHASES.index(c.check)
                                                                      if c.check in PHASES else 99)),
                           phase_seconds=dict(state.phase_seconds))
    write_report(report, plan.out_dir)
    return report


def _run_one(planned: Planned) -> CheckOutcome:
    started = time.time()
    try:
        return planned.run()
    except Exception as exc:  # noqa: BLE001 - a broken check fails with its error; the suite goes on
        return outcome_of(planned.id, planned.check, planned.subject, [], started,
                          f"{type(exc).__name__}: {str(exc).strip()[:1500]}")


def _record(state: QualifyState, outcome: CheckOutcome, out_dir: Path,
            on_check: Callable[[CheckOutcome], None] | None) -> None:
    state.record(outcome)
    save_state(state, out_dir)
    if on_check is not None:
        on_check(outcome)
