"""Bounds benchmark: the distributions behind the shipped scenarios' expectations.

Run (root, after ./setup.sh), on a lab that is up or is brought up for the run:

    python3 bench/bounds.py [--lab xen-pool2] [--rounds 3] [--load 1] [SCENARIO ...]

Each named scenario (default: live-migration, host-failover, network-partition,
rolling-evacuate) runs --rounds times from the lab's `ready` checkpoint, with
`keep_going` so that a missed bound does not stop it; --load N starts N CPU-bound
processes beside the lab for the whole run (a busy machine, as a CI runner or a laptop
doing other work is). For every figure that a shipped expectation judges, it prints the
distribution over all rounds (n, min, p50, p90, max), the bound that judges it under this
lab's accelerator, and the headroom: bound / max (below 1 means the bound was missed).
Bounds in scenarios/*.yaml are set from these figures: above the worst seen on a busy
machine, and no looser than a regression should be allowed to hide in.
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xenlab.metrics import summarize
from xenlab.scenario.session import execute, finish, plan_run, start

REPO = Path(__file__).resolve().parents[1]
DEFAULT = ("live-migration", "host-failover", "network-partition", "rolling-evacuate")


def burn(stop_at: float) -> None:
    """A CPU-bound process: the other work of a busy machine."""
    x = 0
    while time.time() < stop_at:
        x = (x * 1103515245 + 12345) % 2**31


def collect(scenario, into: dict) -> list[str]:
    """Figures judged by expectations, as (step name without round, figure) -> values; and the misses."""
    missed = []
    for step in scenario.steps:
        for one in (step, *step.substeps):
            base = re.sub(r" \(\d+/\d+\)$", "", one.name)
            for e in one.expectations:
                into[(base, e.figure)]["values"].append(e.measured.value)
                into[(base, e.figure)]["expected"] = e.expected
                if not e.passed:
                    missed.append(f"{one.name}: {e.message}")
    return missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", default=list(DEFAULT))
    parser.add_argument("--lab", default="xen-pool2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load", type=int, default=1, help="CPU-bound processes running alongside")
    args = parser.parse_args()
    burners = [multiprocessing.Process(target=burn, args=(time.time() + 6 * 3600,), daemon=True)
               for _ in range(args.load)]
    for p in burners:
        p.start()
    try:
        accel = ""
        for name in args.scenarios:
            figures: dict = defaultdict(lambda: {"values": [], "expected": ""})
            outcomes, misses, elapsed = [], [], []
            for _ in range(args.rounds):
                plan = plan_run(str(REPO / "scenarios" / f"{name}.yaml"), args.lab, base_dirs=[Path.cwd(), REPO])
                if not plan.running:
                    print(f"bringing lab {args.lab} up (it stays up)", flush=True)
                start(plan)  # the road `xenlab run` takes: up and `ready` saved, or back to `ready`
                started = time.monotonic()
                try:
                    results = execute(plan, inventory=False, keep_going=True)
                finally:
                    finish(plan)
                elapsed.append(time.monotonic() - started)
                accel = results.accel
                [scenario] = results.scenarios
                outcomes.append(scenario.outcome)
                misses += collect(scenario, figures)
            print(f"\n{name} on {args.lab} ({accel}, {args.load} CPU-bound process(es) alongside): "
                  f"{args.rounds} rounds, outcomes {', '.join(outcomes)}, {summarize(elapsed)['p50']:.0f} s each")
            for (step, figure), seen in figures.items():
                s = summarize(seen["values"])
                if not s["count"]:
                    print(f"  {step[:44]:<44} {figure:<14} not measured   bound {seen['expected']}")
                    continue
                print(f"  {step[:44]:<44} {figure:<14} n={s['count']:<3} min {s['min']:7.2f} p50 {s['p50']:7.2f} "
                      f"p90 {s['p90']:7.2f} max {s['max']:7.2f}   bound {seen['expected']}"
                      + headroom(seen["expected"], s["max"]))
            for message in misses:
                print(f"  missed: {message}")
    finally:
        for p in burners:
            p.terminate()


def headroom(expected: str, worst: float) -> str:
    match = re.match(r"\s*<=?\s*([\d.]+)\s*(ms|s|min|m)?", expected)
    if not match or worst <= 0:
        return ""
    scale = {"ms": 0.001, "min": 60, "m": 60}.get(match.group(2) or "s", 1)
    return f"   headroom {float(match.group(1)) * scale / worst:.2f}x"


if __name__ == "__main__":
    main()
