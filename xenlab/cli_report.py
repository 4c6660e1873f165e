"""`xenlab report` and `xenlab history`: the CLI faces of xenlab.report (parsing and printing only)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from .cli_output import console, out

# -- reports and history (xenlab.report) ----------------------------------------------
REGRESSION_EXIT = 3  # a qualification check failed, or a metric regressed


@click.command("report")
@click.argument("results_file", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="directory for the reports")
@click.option("--profile", type=click.Path(dir_okay=False),
              help="qualification profile (e.g. qualification/default.yaml): adds qualification.html/.json")
def report_command(results_file: str, out_dir: str, profile: str | None) -> None:
    """HTML report (and hardware qualification) of a results JSON; exit 3 if qualification fails."""
    from .report import load_profile, load_results, write_reports

    results = load_results(results_file)
    qualification_profile = load_profile(profile) if profile else None
    files = write_reports(results, Path(out_dir), qualification_profile)
    out.print(f"wrote {files.html}", markup=False)
    if files.qualification is not None:
        out.print(f"wrote {files.qualification_html}\nwrote {files.qualification_json}", markup=False)
        out.print(files.qualification.verdict, markup=False)
        if not files.qualification.passed:
            sys.exit(REGRESSION_EXIT)


@click.group()
def history() -> None:
    """Nightly history of runs: store results, show trends, flag regressions."""


history_db_option = click.option("--db", "db_path", type=click.Path(dir_okay=False),
                                 help="SQLite file (default: ~/.local/share/xenlab/history.sqlite)")


@history.command("add")
@click.argument("results_file", type=click.Path(dir_okay=False))
@history_db_option
def history_add(results_file: str, db_path: str | None) -> None:
    """Store a run's results in the history."""
    from .report import load_results
    from .report.history import History, figures_of

    results = load_results(results_file)
    with History(db_path) as db:
        run_id, added = db.add(results, source=str(Path(results_file).resolve()))
        where = db.path
    if added:
        out.print(f"stored run {run_id} ({len(figures_of(results))} figures, lab {results.lab or '?'}) in {where}",
                  markup=False)
    else:
        out.print(f"already stored as run {run_id} in {where}", markup=False)


@history.command("report")
@history_db_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="write history.html (and history.json) here")
@click.option("--window", default=7, show_default=True, type=click.IntRange(1, 1000),
              help="baseline: median of this many previous runs")
@click.option("--threshold", default=20.0, show_default=True, type=click.FloatRange(0),
              help="percent worse than the baseline that counts as a regression")
def history_report(db_path: str | None, out_dir: str | None, window: int, threshold: float) -> None:
    """Each metric's trend; exit 3 when the newest run regressed."""
    from .report.history import History, export_trends, render_history_html
    from .report.units import format_value

    with History(db_path) as db:
        trends = db.trends(window, threshold)
        runs = db.run_count()
    table = Table(title=f"{runs} runs, baseline = median of previous {window}, regression > {threshold:g}% worse")
    for column in ("metric", "better", "newest", "baseline", "change", "verdict"):
        table.add_column(column)
    for trend in sorted(trends, key=lambda t: (not t.regressed, t.key)):
        p = trend.latest
        table.add_row(Text(str(trend.key)), trend.direction, format_value(p.value, trend.key.unit),
                      format_value(p.baseline, trend.key.unit) if p.baseline is not None else "(too few runs)",
                      "" if p.change_pct is None else f"{p.change_pct:+.1f}%",
                      "[red]REGRESSION[/red]" if trend.regressed else "ok")
    out.print(table)
    if out_dir:
        target = Path(out_dir)
        target.mkdir(parents=True, exist_ok=True)
        (target / "history.html").write_text(render_history_html(trends, window, threshold, runs), encoding="utf-8")
        (target / "history.json").write_text(export_trends(trends), encoding="utf-8")
        out.print(f"wrote {target / 'history.html'}", markup=False)
    regressed = [t for t in trends if t.regressed]
    if regressed:
        console.print(f"{len(regressed)} metric(s) regressed: " + ", ".join(str(t.key) for t in regressed[:5]),
                      markup=False)
        sys.exit(REGRESSION_EXIT)
