"""dom0 mode benchmark: the same pool with a PV dom0 and with a PVH dom0, side by side.

Run (root, after ./setup.sh; boots one lab per mode, one after the other; on a shared
machine hold its lab lock, e.g. `flock /work/lab.lock python3 bench/dom0_modes.py`):

    python3 bench/dom0_modes.py [--lab labs/xen-pool2.yaml] [--modes pv,pvh] [--moves 3]

For each mode a lab file is derived from --lab (its name suffixed with the mode, every
host's `xen.dom0.mode` set; a PVH dom0 gets `accel: kvm` when this machine has KVM) and
brought up cold (no warm state: the boot is a figure), then one PV guest is created and
migrated --moves times through xenlab's one road (as `xenlab run`). Prints per mode: cold
bring-up to a ready lab, the guest's create-to-first-heartbeat, migration time and downtime
(p50 and max), and the ratios pvh / pv of the medians.

A mode the lab cannot run is printed as refused, with xenlab's own reason, never as a
figure: under TCG a Linux PVH dom0 does not boot (docs/your-own-xen.md), so on a machine
without KVM only the PV column is measured.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xenlab.errors import SpecError, XenlabError
from xenlab.lab import Lab
from xenlab.lab.accel import detect_accel
from xenlab.scenario.session import execute, plan_run
from xenlab.spec import load_lab

REPO = Path(__file__).resolve().parents[1]


def derived_lab_text(source_text: str, mode: str, kvm: bool) -> str:
    """The lab file `source_text` with every host's dom0 in `mode`: the lab-wide `xen.dom0.mode`
    set, and a host's own `xen.dom0.mode` too where it has one (it would override the lab's)."""
    data = yaml.safe_load(source_text)
    if not isinstance(data, dict) or "name" not in data:
        raise SystemExit("the lab file has no name: not a lab file")
    data["name"] = f"{data['name']}-dom0{mode}"
    xen = data.get("xen") or {}
    xen["dom0"] = {**(xen.get("dom0") or {}), "mode": mode}
    data["xen"] = xen
    for host in (data.get("hosts") or {}).values():
        if isinstance(host, dict) and isinstance(host.get("xen"), dict) and isinstance(host["xen"].get("dom0"), dict):
            host["xen"]["dom0"]["mode"] = mode
    if mode == "pvh" and kvm:
        data["accel"] = "kvm"
    return yaml.safe_dump(data, sort_keys=False)


def scenario_text(moves: int) -> str:
    return f"""name: bench-dom0
description: one PV guest created and migrated {moves} times (bench/dom0_modes.py)
steps:
  - form_pool: {{members: [h1, h2]}}
  - create_vm: {{name: bench-dom0, host: h1, memory_mib: 128, ready_timeout_s: 900}}
  - name: moves
    repeat:
      times: {moves}
      steps:
        - migrate: {{vm: bench-dom0, to: other, settle_s: 120}}
"""


def measure(lab_file: Path, scenario_file: Path) -> dict[str, float | list[float] | str]:
    """Bring the lab up cold, run the scenario, take the lab down; figures or a refusal."""
    try:
        spec = load_lab(lab_file)
        lab = Lab(spec, str(lab_file))
    except (SpecError, XenlabError) as exc:
        return {"refused": str(exc)}
    figures: dict[str, float | list[float] | str] = {}
    started = time.monotonic()
    try:
        try:
            lab.up(tied=True, timeout=900, warm=False)
        except XenlabError as exc:  # no KVM for a lab that asks for it, or a boot that failed
            return {"refused": f"the lab did not come up: {exc}"}
        figures["bring-up"] = time.monotonic() - started
        plan = plan_run(str(scenario_file), spec.name, base_dirs=[REPO])  # the lab just brought up
        scenario = execute(plan, inventory=False, keep_going=True).scenarios[0]
        figures["outcome"] = scenario.outcome
        created = next(s for s in scenario.steps if s.kind == "create_vm")
        first = created.figures.get("first_heartbeat")
        if first is not None and first.value is not None:
            figures["first heartbeat"] = first.value
        moves = [s for step in scenario.steps for s in step.substeps if s.kind == "migrate" and s.outcome == "passed"]
        figures["migration"] = [s.figures["duration"].value for s in moves]
        figures["downtime"] = [s.figures["downtime"].value for s in moves
                               if s.figures.get("downtime") is not None and s.figures["downtime"].value is not None]
    finally:
        lab.down()
    return figures


def median(value) -> float | None:
    if isinstance(value, list):
        return statistics.median(value) if value else None
    return value if isinstance(value, float | int) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", type=Path, default=REPO / "labs/xen-pool2.yaml")
    parser.add_argument("--modes", default="pv,pvh")
    parser.add_argument("--moves", type=int, default=3)
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    kvm = detect_accel("auto").accel == "kvm"
    work = Path(tempfile.mkdtemp(prefix="xenlab-bench-dom0-"))
    scenario_file = work / "bench-dom0.yaml"
    scenario_file.write_text(scenario_text(args.moves))
    source = args.lab.read_text()
    print(f"lab {args.lab}, {'KVM' if kvm else 'TCG (no KVM here)'}; one 128 MiB PV guest, {args.moves} moves per mode")
    results = {}
    for mode in modes:
        lab_file = work / f"lab-dom0{mode}.yaml"
        lab_file.write_text(derived_lab_text(source, mode, kvm))
        results[mode] = measure(lab_file, scenario_file)
        figures = results[mode]
        if "refused" in figures:
            print(f"\ndom0 {mode}: refused, not measured: {figures['refused']}", flush=True)
            continue
        print(f"\ndom0 {mode}: scenario {figures.get('outcome')}", flush=True)
        for key in ("bring-up", "first heartbeat", "migration", "downtime"):
            value = figures.get(key)
            if isinstance(value, list):
                shown = f"p50 {statistics.median(value):6.1f} s  max {max(value):6.1f} s  (n={len(value)})" if value else "none"
            else:
                shown = f"{value:6.1f} s" if value is not None else "not measured"
            print(f"  {key:<16} {shown}", flush=True)
    if "pv" in results and "pvh" in results:
        print("\npvh / pv (medians):")
        for key in ("bring-up", "first heartbeat", "migration", "downtime"):
            pv, pvh = median(results["pv"].get(key)), median(results["pvh"].get(key))
            print(f"  {key:<16} " + (f"{pvh / pv:.2f}x" if pv and pvh else "- (one side not measured)"))


if __name__ == "__main__":
    main()
