"""Benchmark the XAPI simulator through the real XenAPI client over HTTP.

Run from the repository root:

    python bench/sim.py [--hosts 64 --vms 1000]

It starts an in-process simulator (virtual clock), forms a pool of all hosts
with ``pool.join``, creates an NFS SR, creates and starts the VMs, then
evacuates every host in turn (disable, evacuate, enable).  It prints the
pool formation time, the evacuate-all time, and the latency (p50/p99) of
every XenAPI call the client made.

Then, on a served simulator (real-time clock, wall-clock event timeouts, as
``xenlab sim serve`` runs it), it measures how long event.from takes to deliver a
change to a watching Xen Orchestra client (npm ``xen-api``, installed by
setup.sh): XenAPI renames the pool, and the time runs from that call's return to
the moment XO's object cache holds the new name (``--xo-samples``, 0 to skip;
changes are 0.3 s apart so XO's 200 ms debounce between event.from calls has
passed).

Last, an XCP-ng admin's Ansible create-to-IP cycle (community.general's
xenserver_guest from pip's ``ansible``, installed by setup.sh) against a served pool
of 2: the wall time from ``ansible-playbook`` creating a VM from the Debian template
(disks, a network) to it powered on with an IP address (``wait_for_ip_address``; the
simulated guest agent reports ``--agent-delay`` simulated seconds after boot, and the
module polls every 2 s), then its clean shutdown and removal (``--ansible-rounds``, 0 to
skip).  Each phase is one ``ansible-playbook`` run, so its start-up (~2-3 s) counts.
Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "sim"))

import XenAPI
from ansible_client import Ansible, ansible_missing
from clients import XOClient, write_password_file, xo_missing

from xenlab.sim.server import SimServer
from xenlab.toolstack.base import GuestSpec
from xenlab.toolstack.xapi import vbd_record, vdi_record, vm_record

GiB = 1024**3
MiB = 1024**2


class Timed:
    """Wraps a XenAPI session so each RPC's wall time is recorded."""

    def __init__(self, session: XenAPI.Session, samples: list[float]) -> None:
        self._s = session
        self._samples = samples

    def __getattr__(self, cls: str):
        return _TimedClass(getattr(self._s.xenapi, cls), self._samples)


class _TimedClass:
    def __init__(self, proxy, samples):
        self._p, self._samples = proxy, samples

    def __getattr__(self, name):
        fn = getattr(self._p, name)

        def call(*args):
            t = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self._samples.append(time.perf_counter() - t)

        return call


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100.0 * (len(xs) - 1)))]


def xo_event_latency(samples: int) -> tuple[list[float], list[float]]:
    """(event.from delivery to a watching Xen Orchestra client, the XenAPI call that changed it)."""
    import tempfile

    pw = os.urandom(8).hex()
    delivered: list[float] = []
    calls: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, SimServer(1, password=pw, realtime=True,
                                                         event_timeouts="wall") as sim:
        pwfile = write_password_file(Path(tmp) / "pw", pw)
        x = XenAPI.Session(sim.url_for(0))
        x.xenapi.login_with_password("root", pw, "2.21", "xenlab-bench")
        (pool,) = x.xenapi.pool.get_all()
        with XOClient(sim.url_for(0), pwfile) as xo:
            for i in range(samples):
                value = f"bench-{i}"
                xo.send("wait_pool_name", value=value)
                time.sleep(0.3)  # XO's debounce has passed: its next event.from is waiting
                t0 = time.perf_counter()
                x.xenapi.pool.set_name_label(pool, value)
                t1 = time.perf_counter()
                answer = xo.receive(10.0, f"see pool name {value}")
                t2 = time.perf_counter()
                if answer.get("seen") != value:
                    raise RuntimeError(f"Xen Orchestra's client did not see {value}: {answer}")
                calls.append(t1 - t0)
                delivered.append(t2 - t1)
    return delivered, calls


def ansible_cycle(rounds: int, agent_s: float) -> list[tuple[float, float, float]]:
    """(create, power on + wait for the IP, clean shutdown + remove) wall seconds of each round."""
    import tempfile

    pw = os.urandom(8).hex()
    out = []
    with tempfile.TemporaryDirectory() as tmp, SimServer(2, password=pw, realtime=True, event_timeouts="wall",
                                                         agent_s=agent_s) as sim:
        tmp_path = Path(tmp)
        x = XenAPI.Session(sim.url_for(1))
        x.xenapi.login_with_password("root", pw, "2.21", "xenlab-bench")
        x.xenapi.pool.join("10.0.0.1", "root", pw)
        ansible = Ansible(sim.url_for(0), write_password_file(tmp_path / "pw", pw), sys.executable, tmp_path / "home")
        for _ in range(rounds):
            times = []
            for phase in ("create", "power_on", "shutdown", "remove"):
                t0 = time.perf_counter()
                result = ansible.run(phase)
                times.append(time.perf_counter() - t0)
                if result.failed:
                    raise RuntimeError(f"Ansible phase {phase} failed: {result.msg}")
            out.append((times[0], times[1], times[2] + times[3]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=64)
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--vm-memory-mib", type=int, default=1024)
    ap.add_argument("--xo-samples", type=int, default=50, help="event.from deliveries to Xen Orchestra to time")
    ap.add_argument("--ansible-rounds", type=int, default=3, help="Ansible create-to-IP cycles to time")
    ap.add_argument("--agent-delay", type=float, default=3.0, help="guest agent's report, s after boot")
    args = ap.parse_args()

    pw = os.urandom(8).hex()
    samples: list[float] = []
    t_all = time.perf_counter()
    with SimServer(args.hosts, password=pw) as sim:

        def login(i: int) -> Timed:
            s = XenAPI.Session(sim.url_for(i))
            t = time.perf_counter()
            s.xenapi.login_with_password("root", pw, "2.21", "xenlab-bench")
            samples.append(time.perf_counter() - t)
            return Timed(s, samples)

        # -- pool formation: every other host joins h1
        t0 = time.perf_counter()
        for i in range(1, args.hosts):
            login(i).pool.join("10.0.0.1", "root", pw)
        x = login(0)
        hosts = x.host.get_all()
        t_pool = time.perf_counter() - t0
        assert len(hosts) == args.hosts

        master = x.pool.get_master(x.pool.get_all()[0])
        sr = x.SR.create(
            master, {"server": "nfs.bench", "serverpath": "/vms"}, "0", "bench-nfs", "", "nfs", "user", True, {}
        )

        # -- create and start VMs (each with a disk on the shared SR)
        t0 = time.perf_counter()
        vms = []
        for n in range(args.vms):
            vm = x.VM.create(vm_record(GuestSpec(f"bench-{n:04d}", memory_mib=args.vm_memory_mib)))
            vdi = x.VDI.create(vdi_record(f"d{n}", sr, GiB))
            x.VBD.create(vbd_record(vm, vdi))
            vms.append(vm)
        t_create = time.perf_counter() - t0
        t0 = time.perf_counter()
        for vm in vms:
            x.VM.start(vm, False, False)
        t_start = time.perf_counter() - t0

        # -- evacuate every host in turn
        t0 = time.perf_counter()
        moved = 0
        for h in hosts:
            moved += sum(1 for v in x.host.get_resident_VMs(h) if not x.VM.get_is_control_domain(v))
            x.host.disable(h)
            x.host.evacuate(h)
            x.host.enable(h)
        t_evac = time.perf_counter() - t0

        # -- a clean latency sample of a cheap read
        read_samples: list[float] = []
        xr = Timed(x._s, read_samples)
        for vm in vms[:2000]:
            xr.VM.get_power_state(vm)
        running = len(x.VM.get_all_records_where('field "power_state"="Running" and field "is_control_domain"="false"'))

    print(f"simulator: {args.hosts} hosts, {args.vms} VMs ({args.vm_memory_mib} MiB each), virtual clock")
    print(f"pool formation ({args.hosts - 1} x pool.join):   {t_pool:8.3f} s")
    print(f"create {args.vms} VMs (+VDI+VBD):          {t_create:8.3f} s")
    print(f"start {args.vms} VMs:                      {t_start:8.3f} s")
    print(f"evacuate all {args.hosts} hosts ({moved} VM moves): {t_evac:8.3f} s")
    print(f"VMs running at the end:                {running}")
    print(
        f"XenAPI call latency, all {len(samples)} calls:  p50 {pct(samples, 50) * 1e3:6.3f} ms  "
        f"p99 {pct(samples, 99) * 1e3:6.3f} ms  mean {statistics.fmean(samples) * 1e3:6.3f} ms"
    )
    print(
        f"XenAPI call latency, VM.get_power_state:  p50 {pct(read_samples, 50) * 1e3:6.3f} ms  "
        f"p99 {pct(read_samples, 99) * 1e3:6.3f} ms"
    )
    if args.xo_samples > 0:
        why = xo_missing()
        if why:
            print(f"event.from to Xen Orchestra: not measured: {why}")
        else:
            delivered, calls = xo_event_latency(args.xo_samples)
            print(
                f"XenAPI pool.set_name_label (served sim):  p50 {pct(calls, 50) * 1e3:6.3f} ms  "
                f"p99 {pct(calls, 99) * 1e3:6.3f} ms"
            )
            print(
                f"event.from -> Xen Orchestra cache, {len(delivered)} changes:  p50 {pct(delivered, 50) * 1e3:6.3f} ms  "
                f"p99 {pct(delivered, 99) * 1e3:6.3f} ms"
            )
    if args.ansible_rounds > 0:
        why = ansible_missing()
        if why:
            print(f"Ansible create-to-IP cycle: not measured: {why}")
        else:
            rounds = ansible_cycle(args.ansible_rounds, args.agent_delay)
            to_ip = [c + p for c, p, _ in rounds]
            print(f"Ansible create-to-IP cycle (agent {args.agent_delay:g} s), {len(rounds)} rounds:  "
                  f"median {statistics.median(to_ip):6.2f} s  (create {statistics.median(c for c, _, _ in rounds):5.2f} s"
                  f" + power on to IP {statistics.median(p for _, p, _ in rounds):5.2f} s); "
                  f"shut down + remove {statistics.median(r for _, _, r in rounds):5.2f} s")
    print(f"total wall time:                       {time.perf_counter() - t_all:8.3f} s")


if __name__ == "__main__":
    main()
