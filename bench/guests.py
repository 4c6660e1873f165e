"""Guest-type benchmark: PV, PVH and HVM guests through xenlab against raw `xl` on the same lab.

Run (root, after ./setup.sh), on a lab that is up or is brought up for the run:

    python3 bench/guests.py [--lab xen-pool2-guests] [--types pv,pvh,hvm] [--moves 3]

Expect about 50 minutes for the three types on a 2-core TCG machine (2026-12-04: pv 13 min,
pvh 13 min, hvm 24 min, each with 3 moves by xenlab and 3 raw).

For each guest type the lab runs (its host image's `guest_types`, narrowed by what Xen
reports), the lab is restored to its `ready` checkpoint and a scenario made for the
benchmark runs through xenlab's one road (`xenlab.scenario.session`, as `xenlab run`):
form the pool, create one guest of that type (heartbeats and disk writer on), migrate it
--moves times between the two hosts. Then, by hand on the same guest and lab, the system
`ssh` client times raw `xl migrate` --moves times and one raw `xl destroy` + `xl create`.
Prints per type: create-to-first-heartbeat, xenlab's create call, migration time and
downtime (p50 and max over the moves), raw `xl create` and `xl migrate`, and the ratios
xenlab / raw (medians). Missed expectations are listed beside the figures; the scenarios
run with `keep_going`, so a bound does not hide a figure.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xenlab.drivers import toolstack_for
from xenlab.metrics import summarize
from xenlab.scenario.session import execute, plan_run, start

REPO = Path(__file__).resolve().parents[1]
MEMORY_MIB = {"pv": 128, "pvh": 128, "hvm": 256}  # an HVM guest's firmware and device model want more


def scenario_text(guest_type: str, moves: int) -> str:
    return f"""name: bench-{guest_type}
description: one {guest_type} guest created and migrated {moves} times (bench/guests.py)
steps:
  - form_pool: {{members: [h1, h2]}}
  - create_vm: {{name: bench-{guest_type}, host: h1, type: {guest_type}, memory_mib: {MEMORY_MIB[guest_type]},
                 ready_timeout_s: 900}}
  - name: moves
    repeat:
      times: {moves}
      steps:
        - migrate: {{vm: bench-{guest_type}, to: other, settle_s: 120}}
"""


def raw(lab, host: str, command: str) -> float:
    """Seconds `command` takes on `host` over the system ssh client (no xenlab in the way)."""
    argv = lab.host(host).ssh_argv(command)
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"raw `{command}` on {host} failed: {proc.stderr.strip()[-500:]}")
    return seconds


def stats(values: list[float]) -> str:
    if not values:
        return "n=0"
    s = summarize(values)
    return f"n={s['count']:<2} p50 {s['p50']:7.2f}  max {s['max']:7.2f} s"


def bench_type(lab_ref: str, guest_type: str, moves: int, workdir: Path) -> list[str]:
    path = workdir / f"bench-{guest_type}.yaml"
    path.write_text(scenario_text(guest_type, moves))
    plan = plan_run(str(path), lab_ref, base_dirs=[Path.cwd(), REPO])
    if plan.lab.capabilities.toolstack != "xl":
        raise SystemExit(f"lab {plan.lab_name} is not an xl lab: raw `xl` needs nested Xen hosts")
    start(plan)  # up with `ready` saved, or back to `ready`
    scenario = execute(plan, inventory=False, keep_going=True).scenarios[0]
    missed = [f"{one.name}: {e.message}" for step in scenario.steps for one in (step, *step.substeps)
              for e in one.expectations if not e.passed]
    broken = [f"{s.name}: {s.message}" for s in scenario.steps if s.outcome == "error"]
    created = next(s for s in scenario.steps if s.kind == "create_vm")
    migrations = [s for step in scenario.steps for s in step.substeps if s.kind == "migrate"]
    durations = [s.figures["duration"].value for s in migrations if s.outcome == "passed"]
    downtimes = [s.figures["downtime"].value for s in migrations
                 if s.figures.get("downtime") is not None and s.figures["downtime"].value is not None]
    lines = [f"{guest_type} guest ({MEMORY_MIB[guest_type]} MiB), scenario {scenario.outcome}"]
    first = created.figures.get("first_heartbeat")
    lines.append(f"  create to first heartbeat    {first.value if first and first.value is not None else '-'} s")
    if broken:
        return lines + [f"  stopped: {b}" for b in broken]
    lab = plan.lab
    xl = toolstack_for(lab)
    vm = f"bench-{guest_type}"
    raw_moves = []
    for _ in range(moves):
        source = xl.vm(vm).host
        destination = next(m for m in xl.pool().members if m != source)
        raw_moves.append(raw(lab, source, f"xl migrate {vm} {lab.host(destination).address()}"))
    host = xl.vm(vm).host
    raw(lab, host, f"xl destroy {vm}")
    raw_create = raw(lab, host, f"xl create /srv/xenlab/guests/{vm}/{vm}.cfg")
    xenlab_create = created.figures["duration"].value
    lines += [
        (f"  xenlab create_vm call        {xenlab_create:.2f} s   raw xl create {raw_create:.2f} s   "
        f"ratio {xenlab_create / raw_create:.2f}"),
        f"  xenlab migration time        {stats(durations)}",
        f"  raw xl migrate               {stats(raw_moves)}",
        f"  downtime (heartbeats)        {stats(downtimes)}",
    ]
    if durations and raw_moves:
        lines.append(f"  ratio migration xenlab / raw (medians) {statistics.median(durations) / statistics.median(raw_moves):.2f}")
    lines.append(f"  expectations missed: {len(missed) or 'none'}")
    lines += [f"    {m}" for m in missed]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="xen-pool2-guests")
    parser.add_argument("--types", default="pv,pvh,hvm", help="comma-separated guest types")
    parser.add_argument("--moves", type=int, default=3, help="migrations per type (at least 3 for p50/max)")
    args = parser.parse_args()
    report: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for guest_type in args.types.split(","):
            print(f"benchmarking a {guest_type} guest ...", flush=True)
            report += bench_type(args.lab, guest_type.strip(), args.moves, Path(tmp))
    print()
    print("\n".join(report))


if __name__ == "__main__":
    main()
