"""A synthetic run shaped like a real one (bring-up, migrations with their heartbeat
timelines, a failover, inventory), shared by the report tests; checked here to survive
the JSON round trip unchanged."""

from __future__ import annotations

import random

from xenlab.metrics import downtime_around, recovery_time
from xenlab.results import ExpectationResult, Figure, HostInventory, RunResults, ScenarioResult, StepResult
from xenlab.scenario.measure import heartbeat_timeline

T0 = 1_764_000_000.0


def inventory(name: str, memory_mib: int = 2047, flags: tuple[str, ...] = ("fpu", "lm", "sse2", "nx"),
              xen: str = "4.17.5-pre", kernel: str = "6.1.0-27-amd64") -> HostInventory:
    return HostInventory(name=name, cpu_model="QEMU Virtual CPU version 2.5+", cpu_flags=list(flags), cpus=1,
                         memory_mib=memory_mib, nics=["eth0 02:58:0a:b0:00:01 UP mtu 1500 in xenbr0"],
                         disks=["vda 8.0 GiB", "vdb 1.0 MiB"], firmware="QEMU Standard PC (Q35 + ICH9, 2009)",
                         xen_version=xen, dom0_kernel=kernel, accel="tcg", nested=True)


def heartbeat_series(start: float, end: float, silences: list[tuple[float, float, bool]], seed: int = 1,
                     jitter_s: float = 0.003, lose_every: int = 0) -> list[tuple[int, float]]:
    """10 ms heartbeats as a TCG guest sends them: jittered arrivals, none in a silence (a paused
    guest keeps its count, a rebooted one starts again from 0), every `lose_every`th dropped."""
    rng = random.Random(seed)
    series, seq, slot = [], 0, 0
    while (at := start + slot * 0.01) < end:
        slot += 1
        silence = next((s for s in silences if s[0] <= at < s[1]), None)
        if silence is not None:
            seq = 0 if silence[2] else seq
            continue
        if not (lose_every and seq % lose_every == lose_every - 1):
            series.append((seq, at + abs(rng.gauss(0, jitter_s))))
        seq += 1
    return series


def migration_timeline(vm: str, move: str, started: float, duration: float, downtime: float):
    """The timeline the runner records for a migration whose guest paused `downtime` s, 60% into the call."""
    paused = started + duration * 0.6
    series = heartbeat_series(started - 40, started + duration + 8, [(paused, paused + downtime, False)],
                              seed=round(started))
    stats = downtime_around(series, started, started + duration)
    return heartbeat_timeline(vm, f"migration of {vm} {move}", series, started + duration + 8, started,
                              started + duration, [(started, "migration start"), (started + duration, "migration end")],
                              (stats.gap_start, stats.gap_end), stats.restarted, stats.reason)


def migration_scenario(downtimes: list[float], outcome: str = "passed") -> ScenarioResult:
    steps, at = [], T0 + 100
    for i, downtime in enumerate(downtimes):
        passed = downtime < 5
        move = f"h{1 + i % 2} -> h{2 - i % 2}"
        steps.append(StepResult(
            index=i, name=f"migrate vm1 -> h{2 - i % 2}", kind="migrate", started_at=at, ended_at=at + 17.4,
            outcome="passed" if passed else "failed",
            figures={"duration": Figure(value=17.4, unit="s"), "downtime": Figure(value=downtime, unit="s"),
                     "heartbeats_lost": Figure(value=0, unit="count"),
                     "heartbeat_slots_empty": Figure(value=round(downtime * 100) + 40, unit="count")},
            expectations=[ExpectationResult(figure="downtime", expected="< 5s",
                                            measured=Figure(value=downtime, unit="s"), passed=passed,
                                            message="" if passed else f"downtime {downtime} s is not < 5 s")],
            timelines=[migration_timeline("vm1", move, at, 17.4, downtime)] if i < 3 else []))
        at += 18
    ordered = sorted(downtimes)
    return ScenarioResult(
        name="live-migration", file="scenarios/live-migration.yaml", lab="xen-pool2", toolstack="xl",
        started_at=T0 + 100, ended_at=at, outcome=outcome, steps=steps,
        summary={"downtime_p50": Figure(value=ordered[len(ordered) // 2], unit="s"),
                 "downtime_max": Figure(value=ordered[-1], unit="s"),
                 "migrations": Figure(value=len(downtimes), unit="count")},
        series={"downtime": downtimes})


def failover_scenario() -> ScenarioResult:
    fault = StepResult(index=0, name="power cut h2", kind="fault", started_at=T0 + 500, ended_at=T0 + 500.2,
                       outcome="passed", details={"kind": "power_cut", "target": "h2"})
    cut, back = T0 + 500, T0 + 551.8
    series = heartbeat_series(cut - 30, back + 3, [(cut - 0.004, back, True)], seed=5)
    recovery = recovery_time(series, cut, until=back + 3)
    timeline = heartbeat_timeline(
        "vm2", "cut: power_cut on h2", series, back + 3, cut, cut,
        [(cut, "power_cut struck"), (cut + 31.0, "h2 detected"), (cut + 33.5, "h2 fenced"), (back, "recovered")],
        (recovery.stopped_at, recovery.resumed_at), recovery.restarted, recovery.reason)
    wait = StepResult(index=1, name="wait vm2 running elsewhere", kind="wait", started_at=T0 + 500.2,
                      ended_at=T0 + 552, outcome="passed", timelines=[timeline],
                      figures={"recovery": Figure(value=51.8, unit="s")},
                      details={"failover": {"failed_host": "h2", "fault_at": T0 + 500, "detected_after_s": 31.0,
                                            "fenced_after_s": 33.5, "restarted": {"vm2": "h1"},
                                            "heartbeat_back_after_s": {"vm2": 51.8}, "ok": True, "error": ""}})
    return ScenarioResult(name="host-failover", file="scenarios/host-failover.yaml", lab="xen-pool2",
                          toolstack="xl", started_at=T0 + 500, ended_at=T0 + 552, outcome="passed",
                          steps=[fault, wait], summary={"recovery_p50": Figure(value=51.8, unit="s")})


def synthetic_run(downtimes: list[float] | None = None, created_at: float = T0, seed: int = 7) -> RunResults:
    rng = random.Random(seed)
    downtimes = downtimes if downtimes is not None else [round(rng.uniform(1.5, 4.0), 3) for _ in range(12)]
    return RunResults(
        created_at=created_at, lab="xen-pool2", accel="tcg",
        bringup={"h1": {"boot": 9.2, "ssh": 48.7, "toolstack": 51.0},
                 "h2": {"boot": 9.8, "ssh": 50.1, "toolstack": 52.3},
                 "services": {"boot": 3.1, "ssh": 20.4, "toolstack": 21.0}},
        scenarios=[migration_scenario(downtimes), failover_scenario()],
        inventory=[inventory("h1"), inventory("h2")])


def test_synthetic_run_survives_the_json_round_trip(tmp_path):
    run = synthetic_run()
    again = RunResults.read(run.write(tmp_path / "results.json"))
    assert again == run
    assert again.scenarios[0].series["downtime"] == run.scenarios[0].series["downtime"]
