"""Profile of forming a pool on an xl lab: every remote command the formation runs, timed.

Run (root, after ./setup.sh), on a lab that is up or is brought up for the run:

    python3 bench/pool_formation.py [--lab xen-pool2] [--rounds 2] [--top 15]

Each round restores the lab's `ready` checkpoint and forms a pool of its first two hosts as
`form pool` does (xl driver: host facts, shared SR, trust, hotplug scripts and, on a lab
whose hosts have BMCs, Pacemaker and corosync). Every command sent over SSH is stamped with
its host and duration; the round prints its total, the time spent in commands, the slowest
commands, and the time grouped by the program each command starts with (`crm`, `systemctl`,
`crm_mon`, ...). Under TCG a PV dom0 pays for every process it forks, and a Python tool
(crmsh) pays for its interpreter's start on top: the grouping shows which of these a
formation spends its time on.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xenlab.drivers import drivers_for
from xenlab.lab import ssh as ssh_module
from xenlab.lab.contract import restore_ready
from xenlab.scenario.session import plan_run, start
from xenlab.toolstack.base import PoolSettings
from xenlab.waiting import quiet

REPO = Path(__file__).resolve().parents[1]


@dataclass
class TimedCommand:
    host: str
    command: str
    seconds: float


def program_of(command: str) -> str:
    """The program a shell command line starts with, for grouping (`systemctl stop a; ...` -> systemctl)."""
    if "mktemp" in command and "mv -f" in command:
        return "write_file"  # RemoteShell.write_file's one command per file
    words = command.replace("&&", " ").replace(";", " ").split()
    for word in words:
        if "=" in word or word in ("umask", "077", "exec", "sudo", "(", "{"):
            continue
        return word.lstrip("({")
    return "?"


def record_commands(into: list[TimedCommand]):
    """Wrap SSHAccess.run so every command lands in `into`; returns the undo."""
    original = ssh_module.SSHAccess.run

    def run(self, command, timeout=60, check=False, input=None):
        started = time.monotonic()
        try:
            return original(self, command, timeout=timeout, check=check, input=input)
        finally:
            into.append(TimedCommand(self.host, command, time.monotonic() - started))

    ssh_module.SSHAccess.run = run
    return lambda: setattr(ssh_module.SSHAccess, "run", original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="xen-pool2")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    plan = plan_run(str(REPO / "scenarios/live-migration-once.yaml"), args.lab, base_dirs=[Path.cwd(), REPO])
    if plan.lab.capabilities.toolstack != "xl":
        raise SystemExit(f"lab {plan.lab_name} is not an xl lab")
    start(plan)
    lab = plan.lab
    totals = []
    for round_no in range(1, args.rounds + 1):
        if round_no > 1:
            restore_ready(lab, quiet)
        commands: list[TimedCommand] = []
        undo = record_commands(commands)
        try:
            xl = drivers_for(lab).toolstack
            hosts = [h.name for h in lab.hosts][:2]
            started = time.monotonic()
            xl.form_pool(hosts, PoolSettings(name="profile"))
            total = time.monotonic() - started
        finally:
            undo()
        totals.append(total)
        in_commands = sum(c.seconds for c in commands)
        print(f"\nround {round_no}: pool of {', '.join(hosts)} formed in {total:.1f} s; "
              f"{len(commands)} remote commands took {in_commands:.1f} s")
        by_program: dict[str, list[float]] = defaultdict(list)
        for c in commands:
            by_program[program_of(c.command)].append(c.seconds)
        print("  by program:")
        for program, secs in sorted(by_program.items(), key=lambda kv: -sum(kv[1]))[:12]:
            print(f"    {program:<28} {len(secs):4d} x  {sum(secs):7.1f} s  (median {statistics.median(secs):.2f} s)")
        print(f"  slowest {args.top}:")
        for c in sorted(commands, key=lambda c: -c.seconds)[:args.top]:
            print(f"    {c.seconds:7.2f} s  {c.host:<9} {c.command[:110]}")
    if len(totals) > 1:
        print(f"\nmedian formation: {statistics.median(totals):.1f} s over {len(totals)} rounds")


if __name__ == "__main__":
    main()
