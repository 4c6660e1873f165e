"""Edit-build-boot loop benchmark: how long from a changed Xen build to a lab that is ready.

Run (root, after ./setup.sh and `xenlab images build debian-xen`; boots QEMU: on a shared
machine hold its lab lock, e.g. `flock /work/lab.lock python3 bench/own_xen_loop.py`):

    python3 bench/own_xen_loop.py [--rounds 2] [--work DIR]

A one-host lab (no services node) is brought up with
- a changed hypervisor (`xen.hypervisor`): the image's own Xen with one byte of its
  Debian revision string changed, new every round: no disk work, a boot;
- a changed tools tree (`xen.tools`): a DESTDIR tree whose file changes every round: a
  thin disk layer (debugfs) over the cached image, then a boot.
Each round times the user layer (made, never found: its digest is new) and the boot
(`Lab.up`, no warm state since the digests are new) and prints them, the lab then taken down.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xenlab.images import ImageCache
from xenlab.lab import Lab
from xenlab.spec import load_lab


def changed_hypervisor(image_xen: Path, target: Path, round_: int) -> None:
    """The image's Xen with its Debian revision string changed (same length), gzip'd as a build leaves it."""
    elf = image_xen.read_bytes()
    target.write_bytes(gzip.compress(elf.replace(b"deb12u1", f"bench{round_:02d}".encode()[:7]), compresslevel=1))


def changed_tools(tree: Path, round_: int) -> None:
    (tree / "usr/lib/xen-bench").mkdir(parents=True, exist_ok=True)
    (tree / "usr/lib/xen-bench/build-id").write_text(f"round {round_} at {time.time()}\n")


def one_round(work: Path, kind: str, round_: int) -> dict[str, float]:
    lab_file = work / f"bench-{kind}.yaml"
    key = "hypervisor: xen.gz" if kind == "hypervisor" else "tools: tools"
    lab_file.write_text(f"name: own-xen-bench\nservices: null\nxen:\n  {key}\nhosts:\n  h1:\n")
    lab = Lab(load_lab(lab_file), str(lab_file))
    marks: dict[str, float] = {}
    started = time.monotonic()

    def progress(subject: str, message: str) -> None:
        if "user layer made" in message:
            marks["layer_s"] = round(time.monotonic() - started, 1)

    try:
        lab.up(progress=progress, accel="tcg", tied=True, timeout=900, warm=False)
        marks["ready_s"] = round(time.monotonic() - started, 1)
        (inventory,) = lab.inventory()
        marks["xen_origin"] = inventory.xen_origin  # type: ignore[assignment]
    finally:
        lab.down()
    return marks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="xenlab-bench-own-xen-"))
    image = ImageCache().ensure("debian-xen")
    for round_ in range(args.rounds):
        changed_hypervisor(image.file("xen.elf"), work / "xen.gz", round_)
        print(f"hypervisor round {round_}: {one_round(work, 'hypervisor', round_)}", flush=True)
        changed_tools(work / "tools", round_)
        print(f"tools round {round_}: {one_round(work, 'tools', round_)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
