"""Firmware benchmark: power-on to Xen's banner, to dom0's SSH and to `xl info`, for a
host QEMU boots directly (multiboot) and for one GRUB boots from its disk under SeaBIOS
(`bios`) and under OVMF (`uefi`).

Run (root, after ./setup.sh; images and their hardware variants are built first if
missing, and not timed):

    python3 bench/firmware.py [--firmware direct bios uefi] [--rounds 1] [--disk virtio-blk] [--nic virtio]

Each round boots a one-host lab (no services node) per firmware under TCG, cold (no warm
state), one lab at a time, and prints the seconds from QEMU's start to each stage:
`boot` (Xen's "Xen version" banner on the serial console: firmware and GRUB included),
`ssh` (dom0's sshd lets xenlab log in), `toolstack` (`xl info` answers); then the
medians and each firmware's extra seconds over `direct`. The machine's load average is
printed with each round: other labs on the same cores slow every stage.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xenlab.lab import Lab
from xenlab.spec import load_lab

STAGES = ("boot", "ssh", "toolstack")


def lab_text(firmware: str, disk: str, nic: str) -> str:
    return (f"name: bench-fw-{firmware}\nservices: null\n"
            f"hardware: {{firmware: {firmware}, disk: {disk}, nic: {nic}}}\nhosts:\n  h1:\n")


def one_boot(firmware: str, disk: str, nic: str, work: Path, timeout: float) -> dict[str, float]:
    path = work / f"{firmware}.yaml"
    path.write_text(lab_text(firmware, disk, nic))
    lab = Lab(load_lab(path), str(path))
    # Variants and images are built (untimed) before the clock starts: up() builds them first,
    # and the stages count from each QEMU's start.
    try:
        lab.up(accel="tcg", tied=True, timeout=timeout, warm=False)
        return dict(lab.bringup_stages["h1"])
    finally:
        lab.down()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--firmware", nargs="+", default=["direct", "bios", "uefi"], choices=["direct", "bios", "uefi"])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--disk", default="virtio-blk")
    parser.add_argument("--nic", default="virtio")
    parser.add_argument("--timeout", type=float, default=1500)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {f: [] for f in args.firmware}
    with tempfile.TemporaryDirectory(prefix="xenlab-bench-fw-") as work:
        for round_no in range(1, args.rounds + 1):
            for firmware in args.firmware:
                load = os.getloadavg()[0]
                started = time.monotonic()
                stages = one_boot(firmware, args.disk, args.nic, Path(work), args.timeout)
                results[firmware].append(stages)
                shown = "  ".join(f"{s} {stages[s]:6.1f}s" for s in STAGES)
                print(f"round {round_no} {firmware:6}  {shown}  (load {load:.1f}, whole up {time.monotonic() - started:.0f}s)",
                      flush=True)
    print("\nmedians (seconds from QEMU start):")
    medians = {f: {s: statistics.median(r[s] for r in runs) for s in STAGES} for f, runs in results.items() if runs}
    for firmware, stage in medians.items():
        extra = ""
        if firmware != "direct" and "direct" in medians:
            extra = "  extra over direct: " + "  ".join(
                f"{s} {stage[s] - medians['direct'][s]:+.1f}s" for s in STAGES)
        print(f"  {firmware:6}  " + "  ".join(f"{s} {stage[s]:6.1f}s" for s in STAGES) + extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
