"""TCG speed targets: each target's figure measured in one run, beside its baseline.

Run (root, after ./setup.sh, with no lab up; on a shared machine hold its lab lock, e.g.
`flock /work/lab.lock python3 bench/targets.py`):

    python3 bench/targets.py [--parts bringup,readme,hvm] [--hvm-moves 3] [--suite]

Expect about 30 minutes on a 2-core TCG machine (one lab at a time), 80 with --suite.

The targets are those of the "fast enough to iterate on" issue, for a quiet 2-core TCG
machine; the baselines are the figures it was filed with (2026-12-07). Parts:
- bringup: labs/xen-pool2.yaml brought up cold (images cached, no warm state) in a run
  base of the benchmark's own, until every host is ready; then taken down.
- readme: the README's first command without `./setup.sh` (images and the lab's warm state
  as a previous run left them): `xenlab up labs/xen-pool2.yaml`, `xenlab run
  scenarios/live-migration.yaml`, `xenlab run scenarios/host-failover.yaml`, run as a user
  runs them and timed end to end; the live-migration run's results give the PV figures
  (its five moves of a 128 MiB PV guest: migration and downtime medians). The lab is taken
  down after it.
- hvm: on labs/xen-pool2-guests.yaml (the lab whose hosts run HVM guests), one 256 MiB HVM
  guest created and migrated --hvm-moves times through xenlab (bench/guests.py's scenario):
  create to first heartbeat, migration median. The lab is taken down after it.
- --suite: `python3 -m pytest` in this checkout, timed (base images cached; not a fresh clone,
  so the figure leaves out the clone and the setup).
A target whose part did not run, or whose figure the run did not produce, is printed "not
measured", never met.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from guests import MEMORY_MIB, scenario_text  # bench/guests.py: the same HVM scenario

from xenlab.errors import XenlabError
from xenlab.lab import Lab
from xenlab.lab.lab import running_labs
from xenlab.results import ScenarioResult, load_results
from xenlab.scenario.session import execute, plan_run, start
from xenlab.spec import load_lab

REPO = Path(__file__).resolve().parents[1]
PARTS = ("bringup", "readme", "hvm")


@dataclass(frozen=True)
class Target:
    key: str
    what: str
    baseline: str  # as the issue measured it, 2026-12-07
    limit_s: float

    def verdict(self, value: float | None) -> str:
        if value is None:
            return "not measured"
        return "met" if value <= self.limit_s else "not met"


TARGETS = (
    Target("pv_migration", "PV 128 MiB live migration, xen-pool2 (p50)", "43.7-55.0 s", 15),
    Target("pv_downtime", "  its downtime (p50)", "9.15 s", 2),
    Target("hvm_first_heartbeat", "HVM guest, create to first heartbeat", "90.7 s", 30),
    Target("hvm_migration", "HVM guest migration (p50)", "167.8 s", 45),
    Target("cold_bringup", "cold bring-up of xen-pool2", "60-90 s", 45),
    Target("readme", "README's first command, images warm", "7.6 min (13.2 fresh)", 6 * 60),
    Target("suite", "the test command, base images cached", "27.3 min", 15 * 60),
)


def shown(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 60:.1f} min" if seconds >= 300 else f"{seconds:.1f} s"


def table(measured: dict[str, float | None]) -> list[str]:
    """One line per target: what, baseline, today's figure, the target, the verdict."""
    lines = [f"  {'target':<44} {'baseline':<22} {'today':>10} {'target':>10}  verdict"]
    for t in TARGETS:
        value = measured.get(t.key)
        lines.append(f"  {t.what:<44} {t.baseline:<22} {shown(value):>10} {'<= ' + shown(t.limit_s):>10}  "
                     f"{t.verdict(value)}")
    return lines


def median_of(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def scenario_figures(scenario: ScenarioResult) -> dict[str, list[float]]:
    """First heartbeat of the created guests, and each passed move's duration and downtime."""
    out: dict[str, list[float]] = {"first_heartbeat": [], "migration": [], "downtime": []}
    for step in scenario.steps:
        for one in (step, *step.substeps):
            figure = one.figures.get("first_heartbeat") if one.kind == "create_vm" else None
            if figure is not None and figure.value is not None:
                out["first_heartbeat"].append(figure.value)
            if one.kind == "migrate" and one.outcome == "passed":
                out["migration"].append(one.figures["duration"].value)
                downtime = one.figures.get("downtime")
                if downtime is not None and downtime.value is not None:
                    out["downtime"].append(downtime.value)
    return out


def cold_bringup() -> float:
    """labs/xen-pool2.yaml up cold in a run base and lab cache of the benchmark's own."""
    own = tempfile.mkdtemp(prefix="xenlab-bench-targets-")
    saved = {k: os.environ.get(k) for k in ("XENLAB_RUN_DIR", "XENLAB_LAB_CACHE")}
    os.environ["XENLAB_RUN_DIR"], os.environ["XENLAB_LAB_CACHE"] = own, os.path.join(own, "warm-cache")
    try:
        path = REPO / "labs/xen-pool2.yaml"
        lab = Lab(load_lab(path), str(path))
        started = time.monotonic()
        try:
            lab.up(tied=True, timeout=900, warm=False)
            return time.monotonic() - started
        finally:
            lab.down()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(own, ignore_errors=True)


def xenlab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xenlab.cli", *args], cwd=REPO, text=True,
                          capture_output=True, check=False)


def readme_first_command(work: Path) -> tuple[float | None, dict[str, list[float]], list[str]]:
    """The README's first command after setup, timed; the PV figures from its live-migration run."""
    results = work / "live-migration.json"
    commands = [("up", "labs/xen-pool2.yaml"),
                ("run", "scenarios/live-migration.yaml", "--results", str(results)),
                ("run", "scenarios/host-failover.yaml", "--results", str(work / "host-failover.json"))]
    notes: list[str] = []
    finished = True
    started = time.monotonic()
    try:
        for command in commands:
            t0 = time.monotonic()
            proc = xenlab(*command)
            notes.append(f"xenlab {' '.join(command[:2])}: exit {proc.returncode} in {shown(time.monotonic() - t0)}")
            if proc.returncode != 0:  # the README chains them with &&: it stops here
                last = (proc.stderr or proc.stdout).strip().splitlines()
                notes.append(f"  {last[-1][:200] if last else '(no output)'}")
                finished = False
                break
        total = time.monotonic() - started if finished else None
        figures = scenario_figures(load_results(results).scenarios[0]) if results.exists() else {}
        return total, figures, notes
    finally:
        xenlab("down", "xen-pool2")


def hvm_guest(moves: int, work: Path) -> tuple[dict[str, list[float]], str]:
    path = work / "bench-hvm.yaml"
    path.write_text(scenario_text("hvm", moves))
    plan = plan_run(str(path), str(REPO / "labs/xen-pool2-guests.yaml"), base_dirs=[REPO])
    try:
        start(plan)
        scenario = execute(plan, inventory=False, keep_going=True).scenarios[0]
        return scenario_figures(scenario), scenario.outcome
    finally:
        plan.lab.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--hvm-moves", type=int, default=3)
    parser.add_argument("--suite", action="store_true", help="also time `python3 -m pytest` (about 50 minutes)")
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown part(s) {', '.join(unknown)}: the parts are {', '.join(PARTS)}")
    if running_labs():
        raise SystemExit(f"lab(s) up: {', '.join(running_labs())}; take them down first (`xenlab down NAME`): "
                         "this benchmark times bring-ups and needs the machine to itself")
    measured: dict[str, float | None] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="xenlab-targets-") as tmp:
        work = Path(tmp)
        if "bringup" in parts:
            print("cold bring-up of xen-pool2 ...", flush=True)
            measured["cold_bringup"] = cold_bringup()
        if "readme" in parts:
            print("README's first command (after setup) ...", flush=True)
            total, pv, lines = readme_first_command(work)
            notes += lines
            measured["readme"] = total  # None: a command failed
            measured["pv_migration"] = median_of(pv.get("migration", []))
            measured["pv_downtime"] = median_of(pv.get("downtime", []))
            notes.append(f"PV moves: {len(pv.get('migration', []))}, downtimes measured: {len(pv.get('downtime', []))}")
        if "hvm" in parts:
            print(f"HVM guest on xen-pool2-guests, {args.hvm_moves} moves ...", flush=True)
            try:
                hvm, outcome = hvm_guest(args.hvm_moves, work)
            except XenlabError as exc:
                hvm, outcome = {}, f"stopped: {exc}"
            measured["hvm_first_heartbeat"] = median_of(hvm.get("first_heartbeat", []))
            measured["hvm_migration"] = median_of(hvm.get("migration", []))
            notes.append(f"HVM ({MEMORY_MIB['hvm']} MiB) scenario {outcome}; moves passed: {len(hvm.get('migration', []))}")
        if args.suite:
            print("the test command (python3 -m pytest) ...", flush=True)
            started = time.monotonic()
            proc = subprocess.run([sys.executable, "-m", "pytest", "-q"], cwd=REPO, check=False,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            measured["suite"] = time.monotonic() - started if proc.returncode == 0 else None
            notes.append(f"pytest exit {proc.returncode}" + ("" if proc.returncode == 0 else ": not counted"))
    print(f"\nTCG speed targets, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores "
          f"(parts run: {', '.join(parts) + (', suite' if args.suite else '')})")
    print("\n".join(table(measured)))
    for note in notes:
        print(f"  {note}")


if __name__ == "__main__":
    main()
