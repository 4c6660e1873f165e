"""Profile of live migration on a lab: where each migration's time goes, and dom0's cost.

Run (root, after ./setup.sh), on a lab that is up or is brought up for the run:

    python3 bench/migration_profile.py [--lab xen-pool2] [--rounds 3] [--memory 128] [--log FILE]
                                       [--hotplug debian,lean] [--streams]

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
--hotplug runs the rounds once per variant, A/B in one run on one lab whatever the lab file
chooses: `debian` and `lean` are the hotplug choices (xenlab/toolstack/hotplug.py: Debian's
scripts, xenlab's lean ones); `+tcp` after one sends the stream over plain TCP to the target's receiving socket (toolstack/transport.py; xl's target-side marks
then go to the target's journal, not to this table), e.g. --hotplug debian,lean,lean+tcp.
--streams first times 64 MiB through the pool's SSH transport from dom0 to dom0 with each
cipher the hosts offer a PV dom0 under TCG, beside plain TCP (the wire's own floor).
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
from xenlab.toolstack.hotplug import install_lean_scripts, scripts_for
from xenlab.toolstack.transport import install_receiver
from xenlab.toolstack.xl import POOL_KEY, POOL_KNOWN_HOSTS, migrate_command
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


def heartbeats_after(observer, vm: str, window_start: float, window_end: float) -> list:
    """The guest's heartbeats around a migration, once it has been heard after it (read as they are at the deadline)."""
    series: list = []

    def heard_after() -> bool:
        series[:] = observer.heartbeats(vm, since=window_start - 30)
        return any(at > window_end + 2 for _, at in series)

    wait_for(heard_after, f"{vm}'s heartbeats after the migration", 120, 1.0)
    return series


STREAM_MIB = 64
CIPHERS = ("chacha20-poly1305@openssh.com", "aes128-ctr", "aes128-gcm@openssh.com")


def stream_rates(lab, source: str, target: str, network: str) -> list[tuple[str, float | None]]:
    """MiB/s of 64 MiB from `source`'s dom0 to `target`'s: through the pool's SSH with each
    cipher (as `xl migrate` streams), and over plain TCP (nc; the wire and both dom0s' floor)."""
    address = lab.host(target).address(network)
    ssh = (f"ssh -i {POOL_KEY} -o IdentitiesOnly=yes -o UserKnownHostsFile={POOL_KNOWN_HOSTS} "
           "-o StrictHostKeyChecking=yes -o BatchMode=yes")
    feed = f"dd if=/dev/zero bs=1M count={STREAM_MIB} 2>/dev/null"
    rates: list[tuple[str, float | None]] = []
    for cipher in CIPHERS:
        out = lab.host(source).run(f"s=$(date +%s.%N); {feed} | {ssh} -c {cipher} {address} 'cat >/dev/null' "
                                   "&& e=$(date +%s.%N) && echo \"$s $e\"", timeout=600)
        rates.append((f"ssh {cipher}", _rate(out)))
    lab.host(target).run("(timeout 300 nc -l -p 5999 >/dev/null 2>&1 </dev/null &)", timeout=30)
    wait_for(lambda: lab.host(target).run("ss -ltn | grep -q ':5999 '").ok, "nc listening on the target", 60, 0.5)
    out = lab.host(source).run(f"s=$(date +%s.%N); {feed} | nc -q 1 {address} 5999 && e=$(date +%s.%N) "
                               "&& echo \"$s $e\"", timeout=600)
    rates.append(("plain TCP (nc)", _rate(out)))
    return rates


def _rate(out) -> float | None:
    if not out.ok or len(out.stdout.split()) != 2:
        return None
    start, end = (float(v) for v in out.stdout.split())
    return STREAM_MIB / (end - start) if end > start else None


def migration_rounds(lab, xl, observer, hosts: list[str], rounds: int, memory: int, variant: str, log: list[str]):
    """Create a guest under a variant (hotplug scripts, and `+tcp`), migrate it `rounds` times, destroy it."""
    kind, _, extra = variant.partition("+")
    xl.hotplug = scripts_for(kind)
    for host in hosts:
        if kind == "lean":
            install_lean_scripts(lab.host(host))
        if extra == "tcp":
            install_receiver(lab.host(host), lab.host(host).address(xl.network),
                             [lab.host(h).address(xl.network) for h in hosts])
    vm = f"vm-{kind}{'-' + extra if extra else ''}"
    created = time.time()
    xl.create_vm(GuestSpec(vm, memory_mib=memory), hosts[0])
    wait_for(lambda: observer.heartbeats(vm, since=created), f"{vm}'s first heartbeat", 300, 1.0)
    rows = []
    for round_ in range(1, rounds + 1):
        source = xl.vm(vm).host
        target = next(h for h in hosts if h != source)
        before = {h: parse_proc_stat(lab.host(h).run("cat /proc/stat").stdout) for h in hosts}
        window_start = time.time()
        lines, total, status = timed_migration(lab.host(source), "xl -vvv " + migrate_command(
            vm, lab.host(target).address(), transport="tcp" if extra == "tcp" else "ssh").removeprefix("xl "))
        window_end = time.time()
        after = {h: parse_proc_stat(lab.host(h).run("cat /proc/stat").stdout) for h in hosts}
        if status != 0:
            raise SystemExit(f"{variant} round {round_}: xl migrate exited {status}: "
                             + "\n".join(line.text for line in lines[-10:]))
        series = heartbeats_after(observer, vm, window_start, window_end)
        downtime = downtime_around(series, window_start, window_end).downtime_s
        result = profile(lines, total)
        rows.append((result, downtime, {h: (busy_share(before[h], after[h]), after[h].forks - before[h].forks)
                                        for h in hosts}, source, target))
        log.append(f"== {variant} round {round_}: {source} -> {target}, {total:.2f} s")
        log.extend(f"{line.at:8.3f} {line.text}" for line in lines)
    xl.destroy_vm(vm)
    return rows


def print_rounds(kind: str, rows, hosts: list[str]) -> dict[str, float]:
    """Each round's table, then the medians (returned for the A/B line)."""
    for index, (result, downtime, cpu, source, target) in enumerate(rows, 1):
        print(f"\n[{kind}] round {index}: {source} -> {target}: {result.total_s:.2f} s, downtime "
              + (f"{downtime:.2f} s" if downtime is not None else "not measured"))
        for phase, seconds in result.phases.items():
            print(f"  {phase:<55} " + (f"{seconds:7.2f} s" if seconds is not None else "    (no mark)"))
        print(f"  hotplug lines in the blackout: {result.hotplug_lines}")
        for host, (share, forks) in cpu.items():
            print(f"  {host} dom0: busy {share * 100 if share is not None else float('nan'):5.1f}%, "
                  f"{forks} processes forked")
        if result.missing:
            print(f"  marks xl did not print: {', '.join(result.missing)}")
    medians = {"migration": statistics.median(r.total_s for r, *_ in rows)}
    downtimes = [d for _, d, *_ in rows if d is not None]
    if downtimes:
        medians["downtime"] = statistics.median(downtimes)
    print(f"\n[{kind}] medians over {len(rows)} rounds:")
    print(f"  migration {medians['migration']:.2f} s, downtime "
          + (f"{medians['downtime']:.2f} s" if "downtime" in medians else "not measured"))
    for phase in rows[0][0].phases:
        values = [r.phases[phase] for r, *_ in rows if r.phases[phase] is not None]
        if values:
            medians[phase] = statistics.median(values)
            print(f"  {phase:<55} {medians[phase]:7.2f} s")
    forks = {h: statistics.median(c[h][1] for _, _, c, *_ in rows) for h in hosts}
    print("  forks per migration: " + ", ".join(f"{h} {n:g}" for h, n in forks.items()))
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="xen-pool2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory", type=int, default=128, help="guest memory in MiB")
    parser.add_argument("--log", type=Path, help="write every timed line of every round here")
    parser.add_argument("--hotplug", default="", help="comma-separated hotplug choices to compare "
                        "(debian, lean); default: the lab file's")
    parser.add_argument("--streams", action="store_true", help="first time the SSH ciphers and plain TCP")
    args = parser.parse_args()
    plan = plan_run(str(REPO / "scenarios/live-migration-once.yaml"), args.lab, base_dirs=[Path.cwd(), REPO])
    if plan.lab.capabilities.toolstack != "xl":
        raise SystemExit(f"lab {plan.lab_name} is not an xl lab: the profile reads `xl -vvv migrate`")
    kinds = [k.strip() for k in args.hotplug.split(",") if k.strip()] or [plan.lab.spec.hotplug]
    for kind in kinds:
        hotplug, _, extra = kind.partition("+")
        scripts_for(hotplug)  # refuses an unknown choice before the lab starts
        if extra not in ("", "tcp"):
            raise SystemExit(f"unknown variant {kind!r}: HOTPLUG or HOTPLUG+tcp")
    start(plan)  # up (and `ready` saved), or back to `ready`
    lab = plan.lab
    drivers = drivers_for(lab)
    xl, observer = drivers.toolstack, drivers.observer
    hosts = [h.name for h in lab.hosts][:2]
    xl.form_pool(hosts, PoolSettings(name="profile"))
    if args.streams:
        print(f"64 MiB from {hosts[0]}'s dom0 to {hosts[1]}'s:")
        for label, rate in stream_rates(lab, hosts[0], hosts[1], xl.network):
            print(f"  {label:<40} " + (f"{rate:6.1f} MiB/s" if rate else "failed"))
    print(f"lab {lab.name}, accel {lab.accel}: {args.rounds} migrations of a {args.memory} MiB PV guest "
          f"(heartbeats, disk writer) per hotplug choice: {', '.join(kinds)}")
    log: list[str] = []
    results = {}
    for kind in kinds:
        rows = migration_rounds(lab, xl, observer, hosts, args.rounds, args.memory, kind, log)
        results[kind] = print_rounds(kind, rows, hosts)
    if len(kinds) > 1:
        base = kinds[0]
        print(f"\nA/B (medians, {base} first):")
        for key in ("migration", "downtime", "blackout: stream end, domain built, devices attached"):
            values = [results[k].get(key) for k in kinds]
            if all(v is not None for v in values):
                print(f"  {key:<55} " + "  ".join(f"{k} {v:6.2f} s" for k, v in zip(kinds, values))
                      + "".join(f"  ({k}/{base} {v / values[0]:.2f}x)" for k, v in zip(kinds[1:], values[1:])))
    if args.log:
        args.log.write_text("\n".join(log) + "\n")
        print(f"every timed line: {args.log}")


if __name__ == "__main__":
    main()
