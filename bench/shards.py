"""Shard balance for the shipped hardware matrix: expected vs measured time per shard.

Plans `qualification/matrix-firmware-nic.yaml` (or --matrix) into N shards exactly as
`xenlab qualify --matrix F --shard K/N` does (`xenlab.shards.plan_shards`: whole
combinations, longest first onto the least loaded shard) and prints each shard's
combinations and expected minutes, from the history's earlier runs where it has them
(--history, default xenlab history's database), else the matrix file's
`estimate_minutes`, else a default. It boots nothing.

Measured times come from shards that really ran. To measure for real (root, ./setup.sh;
each shard boots its labs, about 8 min per combination under TCG on 2 cores):

    for k in 1 2 3; do   # on three machines at once, or one after another on one
        xenlab qualify qualification/quick.yaml --matrix qualification/matrix-firmware-nic.yaml \\
            --shard $k/3 --run-id bench-1 --out shards/matrix-$k
    done
    python3 bench/shards.py --shards 3 --shard-dirs shards/matrix-*

Each shard's measured time is its wall time (its manifest's start to end); its
combinations' own minutes are printed beside it. `xenlab history add` the shards'
merged results (`xenlab report merge`) and the next plan uses what they measured.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xenlab.matrix import load_matrix, plan_items
from xenlab.report.history import History, default_db
from xenlab.report.shard_files import read_manifest
from xenlab.shards import plan_shards

REPO = Path(__file__).resolve().parents[1]


def measured(dirs: list[str]) -> dict[int, tuple[float | None, dict[str, float]]]:
    """Shard index -> (its wall seconds, or None if it did not finish; each combination's seconds)."""
    from xenlab.qualify.matrix_run import load_matrix_report

    found = {}
    for directory in map(Path, dirs):
        manifest = read_manifest(directory)
        wall = (manifest.ended_at - manifest.started_at) if manifest.finished and manifest.ended_at else None
        rows = {}
        if (directory / "matrix.json").is_file():
            rows = {r.name: r.seconds for r in load_matrix_report(directory / "matrix.json").rows}
        found[manifest.index] = (wall, rows)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", default=str(REPO / "qualification/matrix-firmware-nic.yaml"))
    parser.add_argument("--shards", type=int, nargs="+", default=[2, 3, 6], help="shard counts to plan")
    parser.add_argument("--history", default=None, help="history database (default: xenlab history's)")
    parser.add_argument("--shard-dirs", nargs="*", default=[], help="directories shards of one run wrote")
    args = parser.parse_args()
    plan = load_matrix(args.matrix)
    db = Path(args.history) if args.history else default_db()
    seen = lambda name: None
    if db.exists():
        with History(db) as history:
            durations = history.durations()
        seen = durations.span_of
    items = plan_items(plan, seen)
    sources = sorted({i.source for i in items})
    print(f"matrix {plan.matrix}: {len(items)} combinations, times from {', '.join(sources)} "
          f"({'history ' + str(db) if 'history' in sources else 'no history yet'})")
    runs = measured(args.shard_dirs)
    for count in args.shards:
        shards = plan_shards(items, count)
        mean = sum(s.seconds for s in shards) / count
        print(f"\n{count} shards: expected makespan {max(s.seconds for s in shards) / 60:.1f} min, "
              f"imbalance {max(s.seconds for s in shards) / mean:.2f} (longest / mean)")
        print(f"  {'shard':>5}  {'expected':>9}  {'measured':>9}  combinations")
        for shard in shards:
            wall, rows = runs.get(shard.ref.index, (None, {})) if count == len(args.shard_dirs) else (None, {})
            names = ", ".join(f"{i.name}" + (f" ({rows[i.name] / 60:.1f})" if i.name in rows else "")
                              for i in shard.items) or "-"
            got = f"{wall / 60:7.1f} m" if wall is not None else "        -"
            print(f"  {shard.ref!s:>5}  {shard.seconds / 60:7.1f} m  {got}  {names}")
    if not runs:
        print("\nmeasured: none here (no --shard-dirs); see this script's docstring to measure for real")


if __name__ == "__main__":
    main()
