"""Bring-up benchmark: xenlab against the same images started by hand with plain QEMU.

Run (root, after ./setup.sh; images are built first if missing and not timed):

    python3 bench/bringup.py [--lab labs/xen-pool2.yaml] [--rounds 1]

Prints, per round and as medians:
- raw: the lab's machines started by hand (plain qemu-system-x86_64 command lines, one
  vde_switch, overlays and seed disks prepared beforehand), timed from the first QEMU
  start until every machine's sshd sends its banner on the forwarded port;
- cold bring-up: `Lab.up --cold` with cached images, until every host passed SSH login and
  its toolstack check (`xl info`, or nfs-server on the services node), `ready` saved and
  kept as the lab's warm state (in a private cache under the bench's run directory);
- warm bring-up: `Lab.up` of the same lab, restored from that state, until every host
  passed SSH login, its clock was set and its toolstack check passed;
- checkpoint save and restore on the warm lab (restore until every machine answers SSH);
- the ratios cold/raw and cold/warm.
Targets on a 2-core TCG machine: warm <= 5 s, cold/warm >= 10, cold/raw <= 1.1.
It runs its labs in a run base of its own (a temporary directory, removed at the end),
whatever XENLAB_RUN_DIR says: a user's labs are neither seen nor removed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xenlab.images import ImageCache
from xenlab.images.identity import generate_keypair, write_seed_disk
from xenlab.lab import make_lab, resolve_lab
from xenlab.lab.ports import reserve_port
from xenlab.lab.qemu import dom0_cmdline, linux_cmdline, xen_cmdline
from xenlab.plan import plan_lab
from xenlab.spec import load_lab


def ssh_banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(3)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def raw_boot(spec, images: dict, work: Path) -> float:
    """Start every machine of the lab by hand; seconds until all sshd banners answer."""
    plan = plan_lab(spec)
    client = generate_keypair(work / "id", "bench")
    (work / "raw").mkdir(exist_ok=True)  # the raw lab's "run directory": its port claims hold while it exists
    switch_dir = work / "lab.vde"
    switch = subprocess.Popen(["vde_switch", "--hub", "--sock", str(switch_dir)], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs: list[subprocess.Popen] = []
    ports: dict[str, int] = {}
    try:
        while not (switch_dir / "ctl").exists():
            time.sleep(0.02)
        commands = []
        for m in plan.machines:
            image = images[m.image].directory
            overlay, seed = work / f"{m.name}.qcow2", work / f"{m.name}-seed.img"
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                            str(image / "disk.qcow2"), str(overlay)], check=True)
            write_seed_disk(seed, plan, m, generate_keypair(work / f"host-{m.name}", m.name), client,
                            spec.services.nfs_export if m.role == "services" else None)
            ports[m.name] = port = reserve_port(work / "raw")  # claims under work/ports
            argv = ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg,thread=multi", "-cpu", "qemu64",
                    "-smp", str(m.vcpus), "-m", str(m.memory_mib), "-nodefaults", "-display", "none",
                    "-serial", f"file:{work / m.name}.log"]
            if m.role == "xen":
                argv += ["-kernel", str(image / "xen.elf"), "-append", xen_cmdline(m),
                         "-initrd", f"{image / 'vmlinuz'} {dom0_cmdline(m)},{image / 'initrd.img'}"]
            else:
                argv += ["-kernel", str(image / "vmlinuz"), "-append", linux_cmdline(m),
                         "-initrd", str(image / "initrd.img")]
            argv += ["-drive", f"file={overlay},if=virtio,format=qcow2,cache=unsafe",
                     "-drive", f"file={seed},if=virtio,format=raw,readonly=on",
                     "-netdev", f"user,id=m,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
                     "-device", f"virtio-net-pci,netdev=m,mac={m.mgmt_mac}"]
            for nic in m.nics:
                argv += ["-netdev", f"vde,id=n{nic.network},sock={switch_dir}",
                         "-device", f"virtio-net-pci,netdev=n{nic.network},mac={nic.mac}"]
            commands.append(argv)
        started = time.monotonic()
        for argv in commands:
            procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        pending = set(ports)
        deadline = started + 600
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                if ssh_banner(ports[name]):
                    pending.discard(name)
            if pending:
                time.sleep(0.25)  # a benchmark poll, like a person watching for the banner
        if pending:
            raise SystemExit(f"raw boot: no SSH banner from {', '.join(sorted(pending))} within 600 s")
        return time.monotonic() - started
    finally:
        for p in procs:
            p.kill()
            p.wait()
        switch.stdin.close()
        switch.wait(timeout=10)


def framework_round(spec, spec_path: str, images: ImageCache) -> dict[str, float]:
    """Cold bring-up (its warm state kept in a private cache), down, warm bring-up from
    that state, then a checkpoint save and restore on the warm lab."""
    figures: dict[str, float] = {}
    for kind in ("cold", "warm"):
        lab = make_lab(spec, spec_path)
        try:
            started = time.monotonic()
            stages = lab.up(accel="tcg", tied=True, cold=kind == "cold")  # keeps, or restores, the warm state
            figures[kind] = time.monotonic() - started
            if lab.state.came_up != kind:
                raise SystemExit(f"the {kind} round came up {lab.state.came_up}")
            figures[f"{kind}_ssh"] = max(s["ssh"] for s in stages.values())
            figures[f"{kind}_ready"] = max(s["toolstack"] for s in stages.values())
            if kind == "warm":
                figures["save"] = lab.checkpoint_save("bench")
                figures["restore"] = lab.checkpoint_restore("bench")
                figures["state_mib"] = sum(c.state_bytes for c in lab.state.checkpoints if c.tag == "ready") / 2**20
        finally:
            lab.down()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="labs/xen-pool2.yaml")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    # Its own run base and warm cache, always (a XENLAB_RUN_DIR of the user's is neither used nor
    # removed): the rounds neither see nor touch the user's labs, and only this directory is deleted.
    own_runs = tempfile.mkdtemp(prefix="xenlab-bench-")
    os.environ["XENLAB_RUN_DIR"] = own_runs
    os.environ["XENLAB_LAB_CACHE"] = os.path.join(own_runs, "warm-cache")
    try:
        measure(args)
    finally:
        shutil.rmtree(own_runs, ignore_errors=True)


def measure(args: argparse.Namespace) -> None:
    found = resolve_lab(args.lab, attach="never")
    spec = load_lab(found.path)
    cache = ImageCache()
    images = {name: cache.ensure(name, progress=lambda subject, m: print(f"  image {subject}:", m)) for name in
              {m.image for m in plan_lab(spec).machines}}
    raws, rounds = [], []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="xenlab-raw-") as work:
            raws.append(raw_boot(spec, images, Path(work)))
        rounds.append(framework_round(spec, found.path, cache))
        r = rounds[-1]
        print(f"round {i + 1}: raw boot-to-SSH {raws[-1]:.1f}s | cold {r['cold']:.1f}s (ssh {r['cold_ssh']:.1f}s) | "
              f"warm {r['warm']:.2f}s (ssh {r['warm_ssh']:.2f}s) | save {r['save']:.2f}s restore {r['restore']:.2f}s",
              flush=True)
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    raw = statistics.median(raws)
    print()
    print(f"lab {spec.name}: {len(plan_lab(spec).machines)} machines, TCG, {os.cpu_count()} cores, {args.rounds} round(s), medians")
    print(f"  raw QEMU boot-to-SSH (by hand)          {raw:7.1f} s")
    print(f"  xenlab cold bring-up (images cached)    {med['cold']:7.1f} s   (incl. saving ready and keeping it warm)")
    print(f"    of which until SSH login              {med['cold_ssh']:7.1f} s")
    print(f"    of which until every host ready       {med['cold_ready']:7.1f} s   (the rest: saving ready, keeping it)")
    print(f"  xenlab warm bring-up (every host ready) {med['warm']:7.2f} s   target <= 5 s")
    print(f"    of which until SSH login              {med['warm_ssh']:7.2f} s")
    print(f"  saved state of every machine            {med['state_mib']:7.0f} MiB")
    print(f"  checkpoint save (all machines)          {med['save']:7.2f} s")
    print(f"  checkpoint restore (until SSH)          {med['restore']:7.2f} s")
    print(f"  ratio cold / raw                        {med['cold'] / raw:7.2f}     target <= 1.1")
    print(f"    cold SSH login / raw SSH banner       {med['cold_ssh'] / raw:7.2f}     (the same boot, a stricter signal)")
    print(f"  ratio cold / warm                       {med['cold'] / med['warm']:7.1f}     target >= 10")


if __name__ == "__main__":
    main()
