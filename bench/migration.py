"""Migration benchmark: the live-migration scenario against raw `xl migrate` on the same lab.

Run (root, after ./setup.sh), on a lab that is up or is brought up for the run:

    python3 bench/migration.py [--lab xen-pool2] [--raw 5]

1. The lab is restored to its `ready` checkpoint and scenarios/live-migration.yaml runs
   through xenlab (5 ping-pong migrations of a 128 MiB PV guest with heartbeats and a disk
   writer); each migration's duration and heartbeat downtime are taken from its results.
2. On the same guest, --raw migrations are then run by hand: the system `ssh` client runs
   `xl migrate GUEST ADDRESS` on the source host, timed from outside.
Prints both distributions and the ratio of medians (scenario / raw; target <= 1.1), and
the downtime distribution of the scenario's migrations. The scenario runs with
`keep_going`: a missed expectation does not stop it, and the misses are listed beside the
figures (a benchmark reports what it measured whatever the bounds say).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xenlab.drivers import toolstack_for
from xenlab.metrics import summarize
from xenlab.scenario.session import execute, plan_run, start
from xenlab.toolstack.xl import migrate_command

REPO = Path(__file__).resolve().parents[1]


def raw_migrate(lab, source: str, vm: str, destination_address: str) -> float:
    argv = lab.host(source).ssh_argv(migrate_command(vm, destination_address))  # the pool's own SSH transport
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"raw xl migrate failed: {proc.stderr.strip()[-500:]}")
    return seconds


def line(name: str, values: list[float]) -> str:
    s = summarize(values)
    return (f"  {name:<28} n={s['count']:<3} min {s['min']:6.2f}  p50 {s['p50']:6.2f}  p90 {s['p90']:6.2f}  "
            f"max {s['max']:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="xen-pool2")
    parser.add_argument("--raw", type=int, default=5, help="raw xl migrate runs")
    args = parser.parse_args()
    plan = plan_run(str(REPO / "scenarios/live-migration.yaml"), args.lab, base_dirs=[Path.cwd(), REPO])
    if plan.lab.capabilities.toolstack != "xl":
        raise SystemExit(f"lab {plan.lab_name} is not an xl lab: raw `xl migrate` needs nested Xen hosts")
    if not plan.running:
        print(f"bringing lab {args.lab} up for the benchmark (it stays up)")
    start(plan)  # the same road as `xenlab run`: up and `ready` saved, or back to `ready`
    results = execute(plan, inventory=False, keep_going=True)
    scenario = results.scenarios[0]
    missed = [f"{step.name}: {e.message}" for step in scenario.steps for one in (step, *step.substeps)
              for e in one.expectations if not e.passed]
    stopped = next((step for step in scenario.steps if step.outcome == "error"), None) or next(
        (scenario.steps[i - 1] for i, step in enumerate(scenario.steps) if step.outcome == "skipped"), None)
    if stopped is not None:  # keep_going stops only at a step that went wrong: nothing complete to compare
        raise SystemExit(f"the scenario stopped at {stopped.name!r}: {stopped.message}")
    migrations = [s for step in scenario.steps for s in step.substeps if s.kind == "migrate"]
    durations = [s.figures["duration"].value for s in migrations]
    downtimes = [s.figures["downtime"].value for s in migrations if s.figures.get("downtime")
                 and s.figures["downtime"].value is not None]
    lab = plan.lab
    xl = toolstack_for(lab)
    vm = "vm1"
    raw = []
    for _ in range(args.raw):
        source = xl.vm(vm).host
        destination = next(m for m in xl.pool().members if m != source)
        raw.append(raw_migrate(lab, source, vm, lab.host(destination).address()))
    print()
    print(f"lab {lab.name}, accel {lab.state.accel}: migrations of a 128 MiB PV guest")
    print(line("scenario migration time", durations))
    print(line("raw xl migrate (by hand)", raw))
    print(line("scenario downtime", downtimes))
    ratio = statistics.median(durations) / statistics.median(raw)
    print(f"  ratio scenario / raw (medians) {ratio:.2f}   target <= 1.1")
    print(f"  scenario {scenario.outcome}; expectations missed: {len(missed) or 'none'}")
    for message in missed:
        print(f"    {message}")


if __name__ == "__main__":
    main()
