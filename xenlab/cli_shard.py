"""Sharded runs on the CLI: `xenlab report merge` (and `xenlab report RESULTS --out DIR` as before).

A face: parsing and printing; the merge is `xenlab.report.merge`, a matrix's table
`xenlab.qualify.matrix_run.merge_matrix_reports`, the planning `xenlab.shards`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from .cli_output import console, out
from .cli_report import report_command

INCOMPLETE_EXIT = 1  # a shard is missing or broke off: the merged report says which


class ReportGroup(click.Group):
    """`xenlab report RESULTS.json --out DIR` stays what it was; `xenlab report merge ...` merges shards."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["results", *args]
        return super().parse_args(ctx, args)


@click.group("report", cls=ReportGroup)
def report_group() -> None:
    """Reports: `xenlab report RESULTS.json --out DIR [--profile P]` (HTML and qualification of a
    run), `xenlab report merge DIR... --out DIR` (the shards of one run as one report)."""


report_group.add_command(report_command, "results")


@report_group.command("merge")
@click.argument("shard_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="directory for the merged results.json, junit.xml and report.html")
def report_merge(shard_dirs: tuple[str, ...], out_dir: str) -> None:
    """Merge the directories the shards of one run wrote (pytest --xenlab-shard K/N --xenlab-report
    DIR, or xenlab qualify --matrix F --shard K/N --out DIR) into one report; a shard given
    twice is refused (exit 2), missing or broken-off shards are named (exit 1)."""
    from .errors import InvalidInput
    from .report.merge import merge_shards, write_merged

    target = Path(out_dir).resolve()
    for directory in shard_dirs:
        if Path(directory).resolve() == target:
            raise InvalidInput(f"--out {out_dir} is one of the shards' directories: merge into a new directory")
    merged = merge_shards([Path(d) for d in shard_dirs])
    written = write_merged(merged, target)
    if merged.shards and merged.shards[0].manifest.kind == "matrix":
        from .qualify.matrix_run import merge_matrix_reports

        merge_matrix_reports([(s.directory, s.manifest.label, s.manifest.machine) for s in merged.shards],
                             merged.shards[0].manifest.plan_order, target)
        written.append(target / "matrix.html")
    table = Table("shard", "machine", "status", "items", "why", box=None)
    for record in merged.results.shards:
        colour = "green" if record.status == "reported" else "red"
        table.add_row(record.shard, record.machine or "-", f"[{colour}]{record.status}[/{colour}]",
                      str(record.items), record.reason)
    out.print(table)
    counts: dict[str, int] = {}
    for scenario in merged.results.scenarios:
        counts[scenario.outcome] = counts.get(scenario.outcome, 0) + 1
    out.print(f"run {merged.results.run_id}: {len(merged.results.scenarios)} scenarios ("
              + (", ".join(f"{n} {o}" for o, n in sorted(counts.items())) or "none") + ")", markup=False)
    for path in written:
        out.print(f"wrote {path}", markup=False)
    if merged.incomplete:
        console.print("incomplete: " + ", ".join(f"shard {r.shard} {r.status}" for r in merged.incomplete),
                      markup=False)
        sys.exit(INCOMPLETE_EXIT)
