"""`xenlab qualify`: the CLI face of xenlab.qualify (parsing and printing only)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from rich.markup import escape

QUALIFY_FAILED_EXIT = 3  # like `xenlab report --profile`: a check failed
COLOURS = {"passed": "green", "failed": "red", "not_run": "yellow", "not_measured": "magenta"}


@click.command("qualify")
@click.argument("profile", type=click.Path(dir_okay=False))
@click.option("--lab", "lab_ref", help="lab name or lab file (default: the only lab that is up)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="directory for the report and the resume state (default: qualify/<lab>-<timestamp>)")
@click.option("--resume", is_flag=True, help="skip the checks the state file in --out already holds")
@click.option("--timeout", default=900.0, show_default=True, help="seconds for bringing the lab up, if it is not")
@click.option("--matrix", "matrix_file", type=click.Path(dir_okay=False),
              help="a hardware matrix file: qualify every combination (each its own lab, brought up and down)")
@click.option("--shard", "shard", metavar="K/N",
              help="with --matrix: only shard K of N (whole combinations, balanced by earlier runs; docs/ci.md)")
@click.option("--run-id", help="with --shard: the id the shards of one run share (default: $XENLAB_RUN_ID)")
@click.option("--machine", help="with --shard: this machine's name (default: $XENLAB_MACHINE, else the host name)")
@click.option("--history", "history_db", type=click.Path(dir_okay=False),
              help="with --shard: history database whose durations balance the shards (default: xenlab history's)")
def qualify(profile: str, lab_ref: str | None, out_dir: str | None, resume: bool, timeout: float,
            matrix_file: str | None, shard: str | None, run_id: str | None, machine: str | None,
            history_db: str | None) -> None:
    """Run a qualification profile's checks on a lab and write qualification.json/.html and JUnit XML.

    The lab is found or brought up like `xenlab run` does. With --matrix, every combination
    of the matrix file is a lab of its own, qualified wave by wave (the labs that fit in
    memory together), and DIR/matrix.html puts them side by side. Exit 3 if a check failed."""
    from .cli_output import _timed_progress, console, out
    from .errors import InvalidInput, XenlabError
    from .qualify import plan_qualify, run_qualify

    if resume and not out_dir:
        raise XenlabError("--resume needs --out: the directory whose state file to resume")
    if shard is not None and matrix_file is None:
        raise InvalidInput("--shard cuts a matrix into shards: give --matrix FILE (a lab is one shard already)")
    if matrix_file is not None:
        _qualify_matrix(profile, matrix_file, lab_ref, out_dir, resume, timeout,
                        (shard, run_id, machine, history_db) if shard is not None else None)
        return
    target = Path(out_dir) if out_dir else Path("qualify") / f"{lab_ref or 'lab'}-{time.strftime('%Y%m%d-%H%M%S')}"
    plan = plan_qualify(profile, lab_ref, target)
    console.print(f"qualification [bold]{escape(plan.profile.name)}[/bold] on lab [bold]{escape(plan.lab.name)}"
                  f"[/bold] ({plan.lab.spec.backend}); report in {escape(str(target))}")
    progress = _timed_progress()

    def on_check(check) -> None:
        colour = COLOURS[check.verdict]
        figures = ", ".join(f"{f.name} {f.text}" for f in check.figures[:4])
        why = f" - {check.reason}" if check.reason else ""
        console.print(f"  [{colour}]{check.verdict.replace('_', ' ')}[/{colour}] {escape(check.id)}"
                      f"{escape(': ' + figures) if figures else ''}{escape(why)}")

    report = run_qualify(plan, progress, resume=resume, on_check=on_check, timeout=timeout)
    out.print(f"wrote {target / 'qualification.html'}", markup=False)
    out.print(report.verdict, markup=False)
    if not report.passed:
        sys.exit(QUALIFY_FAILED_EXIT)


def _qualify_matrix(profile: str, matrix_file: str, lab_ref: str | None, out_dir: str | None, resume: bool,
                    timeout: float, sharding: tuple[str, str | None, str | None, str | None] | None = None) -> None:
    from .cli_output import _timed_progress, console, out
    from .errors import InvalidInput
    from .lab.resources import available_cores, available_mib
    from .matrix import load_matrix
    from .qualify.matrix_run import run_matrix
    from .report.qualification import load_profile

    if lab_ref is not None:
        raise InvalidInput("--matrix and --lab: the matrix file names its base lab (`lab:`); give one or the other")
    load_profile(profile)  # refused now, with its line, before any lab starts
    plan = load_matrix(matrix_file, available_mib(), available_cores())
    target = Path(out_dir) if out_dir else Path("qualify") / f"matrix-{plan.matrix}-{time.strftime('%Y%m%d-%H%M%S')}"
    manifest = None
    if sharding is not None:
        plan, manifest = _matrix_shard(plan, sharding, target)
        if not plan.combinations:
            from .report.shard_files import finish_manifest

            finish_manifest(manifest, target, 0, {})
            console.print("this shard holds no combination: nothing to run")
            return
    console.print(f"qualification over matrix [bold]{escape(plan.matrix)}[/bold]: {len(plan.combinations)} labs "
                  f"in {len(plan.waves)} waves; report in {escape(str(target))}")

    def on_row(row) -> None:
        colour = COLOURS[row.verdict]
        figures = ", ".join(f"{k} {v}" for k, v in row.key_figures.items())
        console.print(f"  [{colour}]{row.verdict.replace('_', ' ')}[/{colour}] {escape(row.name)} "
                      f"({row.seconds / 60:.1f} min){escape(': ' + figures) if figures else ''}"
                      f"{escape(' - ' + row.reason) if row.reason else ''}")

    report = run_matrix(profile, plan, matrix_file, target, _timed_progress(), resume=resume,
                        timeout=max(timeout, 1800), on_row=on_row)
    out.print(f"wrote {target / 'matrix.html'}", markup=False)
    out.print(report.verdict, markup=False)
    if manifest is not None:
        from .report.shard_files import finish_manifest

        finish_manifest(manifest, target, 0 if report.passed else QUALIFY_FAILED_EXIT,
                        {row.name: row.verdict for row in report.rows})
    if not report.passed:
        sys.exit(QUALIFY_FAILED_EXIT)


def _matrix_shard(plan, sharding: tuple[str, str | None, str | None, str | None], target: Path):
    """This machine's shard of the matrix (whole combinations), printed, with its manifest written."""
    from .cli_output import out
    from .matrix import plan_items, restrict
    from .report.history import History, default_db
    from .report.shard_files import identity, new_manifest, write_manifest
    from .shards import parse_shard, plan_digest, plan_shards

    shard, run_id, machine, history_db = sharding
    ref = parse_shard(shard, "--shard")
    db = Path(history_db) if history_db else default_db()
    durations = None
    if db.exists():
        with History(db) as history:
            durations = history.durations()
    items = plan_items(plan, durations.span_of if durations else (lambda name: None))
    mine = plan_shards(items, ref.count)[ref.index - 1]
    run, host = identity(run_id, machine, plan_digest(items, ref.count))
    manifest = new_manifest("matrix", mine, run, host, [i.name for i in items])
    write_manifest(manifest, target)
    for line in [f"xenlab run {run} on {host}:", *mine.describe()]:
        out.print(line, markup=False)
    return restrict(plan, [i.name for i in mine.items]), manifest
