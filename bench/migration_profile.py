"""Profile of live migration on a lab: where each migration's time goes, and dom0's cost.

Run (root, after ./setup.sh), on a lab that is up or is brought up for the run:

    python3 bench/migration_profile.py [--lab xen-pool2] [--rounds 3] [--memory 128] [--log FILE]

The lab is restored to its `ready` checkpoint, a pool of its first two hosts formed and a
guest created (heartbeats and a disk writer, like the live-migration scenario's). Then
--rounds migrations back and forth run as `xl -vvv migrate` (the pool's own SSH transport,
as the xl driver runs it) with every line of its output stamped as it arrives, and for each:
  - the phases from xl's own marks (xenlab/migration_profile.py): reaching the target, the
    live memory rounds, the blackout up to the target's "transfer complete" (stream end,
    domain built, devices attached and their hotplug scripts), the hand-over handshake, the
    start on the target;
  - the guest's downtime from its heartbeats;
  - each host's dom0 CPU busy share and the processes forked during the call (/proc/stat):
    under TCG every fork in a PV dom0 costs a large fraction of a second.
Prints a table per round and the medians; --log keeps every timed line for reading.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xenlab.drivers import drivers_for
from xenlab.metrics import downtime_around
from xenlab.migration_profile import TimedLine, busy_share, parse_proc_stat, profile
from xenlab.scenario.session import plan_run, start
from xenlab.toolstack.base import GuestSpec, PoolSettings
from xenlab.toolstack.xl import migrate_command
from xenlab.waiting import wait_for

REPO = Path(__file__).resolve().parents[1]


def timed_migration(host, command: str) -> tuple[list[TimedLine], float, int]:
    """Run `command` through the system ssh client, each stderr/stdout line stamped on arrival."""
    argv = host.ssh_argv(command)
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    lines: list[TimedLine] = []
    lock = threading.Lock()

    def pump(stream) -> None:
        for raw in stream:
            with lock:
                lines.append(TimedLine(time.monotonic() - started, raw.rstrip("\n")))

    readers = [threading.Thread(target=pump, args=(s,), daemon=True) for s in (proc.stdout, proc.stderr)]
    for reader in readers:
        reader.start()
    status = proc.wait(timeout=900)
    total = time.monotonic() - started
    for reader in readers:
        reader.join(timeout=10)
    return sorted(lines, key=lambda line: line.at), total, status


def heartbeats_after(observer, window_start: float, window_end: float) -> list:
    """The guest's heartbeats around a migration, once it has been heard after it (read as they are at the deadline)."""
    series: list = []

    def heard_after() -> bool:
        series[:] = observer.heartbeats("vm1", since=window_start - 30)
        return any(at > window_end + 2 for _, at in series)

    wait_for(heard_after, "vm1's heartbeats after the migration", 120, 1.0)
    return series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="xen-pool2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory", type=int, default=128, help="guest memory in MiB")
    parser.add_argument("--log", type=Path, help="write every timed line of every round here")
    args = parser.parse_args()
    plan = plan_run(str(REPO / "scenarios/live-migration-once.yaml"), args.lab, base_dirs=[Path.cwd(), REPO])
    if plan.lab.capabilities.toolstack != "xl":
        raise SystemExit(f"lab {plan.lab_name} is not an xl lab: the profile reads `xl -vvv migrate`")
    start(plan)  # up (and `ready` saved), or back to `ready`
    lab = plan.lab
    drivers = drivers_for(lab)
    xl, observer = drivers.toolstack, drivers.observer
    hosts = [h.name for h in lab.hosts][:2]
    xl.form_pool(hosts, PoolSettings(name="profile"))
    created = time.time()
    xl.create_vm(GuestSpec("vm1", memory_mib=args.memory), hosts[0])
    wait_for(lambda: observer.heartbeats("vm1", since=created), "vm1's first heartbeat", 300, 1.0)
    print(f"lab {lab.name}, accel {lab.accel}: {args.rounds} migrations of a {args.memory} MiB PV guest "
          f"(heartbeats, disk writer)")
    rows = []
    log = []
    for round_ in range(1, args.rounds + 1):
        source = xl.vm("vm1").host
        target = next(h for h in hosts if h != source)
        before = {h: parse_proc_stat(lab.host(h).run("cat /proc/stat").stdout) for h in hosts}
        window_start = time.time()
        lines, total, status = timed_migration(lab.host(source), "xl -vvv " + migrate_command(
            "vm1", lab.host(target).address()).removeprefix("xl "))
        window_end = time.time()
        after = {h: parse_proc_stat(lab.host(h).run("cat /proc/stat").stdout) for h in hosts}
        if status != 0:
            raise SystemExit(f"round {round_}: xl migrate exited {status}: " + "\n".join(l.text for l in lines[-10:]))
        series = heartbeats_after(observer, window_start, window_end)
        downtime = downtime_around(series, window_start, window_end).seconds
        result = profile(lines, total)
        rows.append((result, downtime, {h: (busy_share(before[h], after[h]), after[h].forks - before[h].forks)
                                        for h in hosts}, source, target))
        log.append(f"== round {round_}: {source} -> {target}, {total:.2f} s")
        log.extend(f"{line.at:8.3f} {line.text}" for line in lines)
    for index, (result, downtime, cpu, source, target) in enumerate(rows, 1):
        print(f"\nround {index}: {source} -> {target}: {result.total_s:.2f} s, downtime "
              + (f"{downtime:.2f} s" if downtime is not None else "not measured"))
        for phase, seconds in result.phases.items():
            print(f"  {phase:<55} " + (f"{seconds:7.2f} s" if seconds is not None else "    (no mark)"))
        print(f"  hotplug lines in the blackout: {result.hotplug_lines}")
        for host, (share, forks) in cpu.items():
            print(f"  {host} dom0: busy {share * 100 if share is not None else float('nan'):5.1f}%, "
                  f"{forks} processes forked")
        if result.missing:
            print(f"  marks xl did not print: {', '.join(result.missing)}")
    print("\nmedians over the rounds:")
    print(f"  migration {statistics.median(r.total_s for r, *_ in rows):.2f} s, downtime "
          f"{statistics.median(d for _, d, *_ in rows if d is not None) if any(d is not None for _, d, *_ in rows) else float('nan'):.2f} s")
    for phase in rows[0][0].phases:
        values = [r.phases[phase] for r, *_ in rows if r.phases[phase] is not None]
        if values:
            print(f"  {phase:<55} {statistics.median(values):7.2f} s")
    forks = {h: statistics.median(c[h][1] for _, _, c, *_ in rows) for h in hosts}
    print("  forks per migration: " + ", ".join(f"{h} {n:g}" for h, n in forks.items()))
    if args.log:
        args.log.write_text("\n".join(log) + "\n")
        print(f"every timed line: {args.log}")
    xl.destroy_vm("vm1")


if __name__ == "__main__":
    main()
