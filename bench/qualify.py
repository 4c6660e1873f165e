"""Qualification benchmark: how long each phase of `xenlab qualify` takes, to plan a run.

Run (root, after ./setup.sh), on a lab that is up or is brought up for the run:

    python3 bench/qualify.py [--profile qualification/quick.yaml] [--lab labs/xen-pool2.yaml] [--out DIR]

Runs the profile's whole suite through `xenlab.qualify` (the same road as `xenlab
qualify`) and prints the seconds each phase (inventory, boot, network, storage,
lifecycle, migration, failover, stability) and each check took, and the verdicts. The
report lands in --out (default: a fresh directory under /tmp) as for the CLI. Phase times
scale with the profile's run lengths (network.seconds, storage.seconds, the scenarios'
migration count), so time the profile you mean to run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xenlab.qualify import plan_qualify, run_qualify

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=str(REPO / "qualification/quick.yaml"))
    parser.add_argument("--lab", default=str(REPO / "labs/xen-pool2.yaml"))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="xenlab-qualify-bench-"))
    started = time.monotonic()

    def progress(subject: str, message: str) -> None:
        print(f"{time.monotonic() - started:7.1f}s {subject}: {message}", flush=True)

    plan = plan_qualify(args.profile, args.lab, out)
    report = run_qualify(plan, progress)
    print(f"\nqualification {report.profile} on {report.lab} ({report.accel}), "
          f"{time.monotonic() - started:.1f}s in all; report in {out}")
    print(f"{'phase':<12}{'seconds':>10}")
    for phase, seconds in report.phase_seconds.items():
        print(f"{phase:<12}{seconds:>10.1f}")
    print(f"\n{'check':<36}{'verdict':<10}{'seconds':>9}")
    for check in report.checks:
        print(f"{check.id:<36}{check.verdict:<10}{check.seconds:>9.1f}")
    print(report.verdict)


if __name__ == "__main__":
    main()
