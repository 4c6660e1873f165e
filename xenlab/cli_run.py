"""`xenlab run`: a scenario on a lab, its live timeline, its verdict and exit status.

0 passed, 1 failed, 4 not measured (everything measured passed, but something the scenario
asked for could not be measured or judged on this lab; `--allow-unmeasured` exits 0 and
every report still says not measured). `--dry-run` prints the plan (scenario.dryrun)
without starting or changing anything.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from rich.markup import escape

from .cli_output import console, out

NOT_MEASURED_EXIT = 4  # everything measured passed, but something asked for could not be measured on this lab


@click.command()
@click.argument("scenario_file")
@click.option("--lab", "lab_ref", help="lab name or lab file (default: the scenario's lab)")
@click.option("--json", "as_json", is_flag=True, help="print the results as JSON (schema xenlab.results/2)")
@click.option("--results", "results_path", type=click.Path(dir_okay=False),
              help="where to write the results JSON (default: results/<scenario>-<timestamp>.json)")
@click.option("--as-is", "as_is", is_flag=True, help="run on the lab as it is, not from its `ready` checkpoint")
@click.option("--allow-unmeasured", is_flag=True,
              help="exit 0 when the only shortfall is something this lab cannot measure (still reported as "
                   "not measured, never as passed)")
@click.option("--dry-run", "dry", is_flag=True,
              help="show the plan on the lab (steps, hosts, guests, faults, bounds, what it cannot measure); "
                   "start and change nothing")
@click.option("--keep-going", is_flag=True, help="run past a missed expectation and report every miss")
@click.option("--accel", type=click.Choice(["auto", "kvm", "tcg"]),
              help="a lab that is not up: the accelerator to bring it up with (or, with --dry-run, to plan for)")
def run(scenario_file: str, lab_ref: str | None, as_json: bool, results_path: str | None, as_is: bool,
        allow_unmeasured: bool, dry: bool, keep_going: bool, accel: str | None) -> None:
    """Run a scenario on a lab (started if it is not up) and check its expectations.

    A running lab is first restored to its `ready` checkpoint (if it has one), so every
    scenario starts from the same fresh lab. Exits 0 passed, 1 failed, 4 not measured
    (everything measured passed, but something asked for could not be measured here)."""
    from .scenario.session import default_results_path, execute, finish, plan_run, start

    if dry:
        _print_dry_run(scenario_file, lab_ref, accel, as_json)
        return
    plan = plan_run(scenario_file, lab_ref)
    steps = len(plan.scenario.steps)
    console.print(f"scenario [bold]{plan.scenario.name}[/bold] ({steps} steps) on lab [bold]{plan.lab_name}[/bold]")
    started = time.monotonic()

    def stamp() -> str:
        return f"[dim]{time.monotonic() - started:7.1f}s[/dim]"

    def progress(subject: str, message: str) -> None:
        console.print(f"{stamp()} [bold]{escape(subject)}[/bold] {escape(message)}")

    if not plan.running and not plan.lab.capabilities.outlives_process:
        console.print(f"lab {plan.lab_name}: a {plan.lab.spec.backend} lab in this process (it ends with the run)")
    elif not plan.running:
        console.print(f"lab {plan.lab_name} is not up: bringing it up (it stays up; "
                      f"`xenlab down {plan.lab_name}` stops it)")
    elif not as_is:
        console.print(f"{stamp()} lab {plan.lab_name} is up: back to its `ready` checkpoint first (--as-is to skip)")
    colours = {"passed": "green", "failed": "red", "error": "red", "skipped": "yellow", "start": "cyan",
               "info": "dim", "not_measured": "magenta"}

    def on_event(index: int, name: str, phase: str, message: str) -> None:
        colour = colours.get(phase, "white")
        text = f" {escape(message)}" if message else ""
        where = f"{index + 1}/{steps}" if index < steps else "end"
        shown = phase.replace("_", " ")
        console.print(f"{stamp()} {escape(f'[{where}]')} {escape(name)} [{colour}]{shown}[/{colour}]{text}")

    try:
        start(plan, progress, as_is=as_is, accel=accel)
        results = execute(plan, on_event, progress, keep_going=keep_going)
    finally:
        finish(plan)
    outcome = results.scenarios[0]
    path = results.write(Path(results_path) if results_path else default_results_path(plan.scenario))
    if as_json:
        out.print_json(results.model_dump_json(by_alias=True))
    else:
        for name, figure in outcome.summary.items():
            if figure.value is not None:
                out.print(f"  {name}: {figure.value:g}{'' if figure.unit in ('count', 'bool') else ' ' + figure.unit}")
        out.print(meanings_text(outcome))
        if results.lab_choices:
            out.print("  on: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in results.lab_choices.items()),
                      markup=False)
        if keep_going:
            for step in walk_missed(outcome.steps):
                out.print(f"  missed: {step.name}: {step.message}", markup=False)
    colour = colours.get(outcome.outcome, "red")
    console.print(f"scenario {plan.scenario.name} [{colour}]{outcome.outcome.replace('_', ' ')}[/{colour}] in "
                  f"{outcome.ended_at - outcome.started_at:.1f}s; results in {escape(str(path))}")
    if outcome.outcome == "not_measured":
        for line in unmeasured_lines(outcome):
            console.print(f"  [magenta]not measured[/magenta] {escape(line)}")
        if not allow_unmeasured:
            console.print("[dim]exit 4: not measured is not passed (--allow-unmeasured exits 0)[/dim]")
            sys.exit(NOT_MEASURED_EXIT)
    elif outcome.outcome != "passed":
        sys.exit(1)


def unmeasured_lines(scenario) -> list[str]:
    """One line per step (or substep) that could not measure something: 'step name: why'."""
    from .results import StepResult

    lines: list[str] = []

    def walk(steps: list[StepResult]) -> None:
        for step in steps:
            if step.outcome == "not_measured" and not step.substeps:
                lines.append(f"{step.name}: {step.message}")
            walk(step.substeps)

    walk(scenario.steps)
    return lines


def walk_missed(steps):
    """Steps that did not pass (a repeat's rounds rather than the repeat), for --keep-going's list."""
    for step in steps:
        if step.outcome in ("passed", "skipped", "not_measured"):
            continue
        if step.substeps:
            yield from walk_missed(step.substeps)
        else:
            yield step


def _print_dry_run(scenario_file: str, lab_ref: str | None, accel: str | None, as_json: bool) -> None:
    """`xenlab run --dry-run`: the plan (scenario.dryrun) in words; exit 2 if the lab would refuse it."""
    from .errors import SpecError
    from .scenario.dryrun import dry_run

    plan = dry_run(scenario_file, lab_ref, accel)
    if as_json:
        out.print_json(json.dumps(plan.to_json()))
    else:
        state = "up" if plan.running else "not up"
        out.print(f"scenario {plan.scenario} on lab {plan.lab} ({plan.backend}, {state}): a dry run, nothing is "
                  "started or changed", markup=False)
        out.print(f"accelerator {plan.accel} ({plan.accel_reason}); toolstack {plan.toolstack}", markup=False)

        def show(steps, indent: str) -> None:
            for step in steps:
                where = f" (line {step.line})" if step.line else ""
                rounds = f", {step.times} rounds" if step.times else ""
                out.print(f"{indent}{step.number}. {step.title} [{step.kind}{rounds}]{where}", markup=False)
                for label, items in (("acts on", step.acts_on), ("measures", [", ".join(step.measures)]),
                                     ("expects", step.bounds), ("not measured here", step.not_measured)):
                    for item in items:
                        out.print(f"{indent}     {label}: {item}", markup=False)
                show(step.substeps, indent + "    ")

        show(plan.steps, "  ")
        if plan.cannot:
            out.print("what this lab cannot do:", markup=False)
            for item in plan.cannot:
                out.print(f"  - {item}", markup=False)
    if plan.refused:
        raise SpecError(plan.file, plan.refused)


def meanings_text(scenario) -> str:
    """'what the figures mean:' and a line per figure of the run that xenlab describes."""
    from .results import figure_meanings

    lines = [f"  {name}: {meaning}" for name, meaning in figure_meanings(scenario.figure_names())]
    return "\n".join(["what the figures mean:", *lines]) if lines else ""
