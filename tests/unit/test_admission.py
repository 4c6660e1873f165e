"""Admission: a lab that would not fit in available memory is refused, saying how much it needs."""

from __future__ import annotations

import os

from xenlab.lab.resources import (
    HOST_RESERVE_MIB,
    QEMU_OVERHEAD_MIB,
    admission_problem,
    available_mib,
    needed_mib,
    process_rss_mib,
)
from xenlab.plan import plan_lab
from xenlab.spec import load_lab


def pool(tmp_path, text="name: adm\nhosts:\n  h1:\n  h2:\n    memory_mib: 4096\n"):
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return plan_lab(load_lab(path))


def test_a_lab_needs_its_machines_ram_and_qemu_overhead(tmp_path):
    plan = pool(tmp_path)
    # h1 2048, h2 4096, the services node 512 (defaults of the lab file)
    assert needed_mib(plan) == sum(m.memory_mib for m in plan.machines) + QEMU_OVERHEAD_MIB * len(plan.machines)
    assert {m.name: m.memory_mib for m in plan.machines}["h2"] == 4096


def test_a_lab_that_does_not_fit_is_refused_with_what_it_needs(tmp_path, monkeypatch):
    monkeypatch.delenv("XENLAB_ADMISSION", raising=False)
    plan = pool(tmp_path)
    need = needed_mib(plan)
    assert admission_problem(plan, "adm", need + HOST_RESERVE_MIB) is None
    problem = admission_problem(plan, "adm", need)
    assert problem and f"needs about {need} MiB" in problem and f"only {need} MiB is available" in problem
    assert admission_problem(plan, "adm", None) is None  # nothing known: not refused
    monkeypatch.setenv("XENLAB_ADMISSION", "0")
    assert admission_problem(plan, "adm", 1) is None


def test_available_memory_and_rss_are_read_from_the_kernel(tmp_path):
    assert available_mib() > 0
    fake = tmp_path / "meminfo"
    fake.write_text("MemTotal: 100 kB\nMemAvailable:    2097152 kB\n")
    assert available_mib(fake) == 2048
    fake.write_text("garbage")
    assert available_mib(fake) is None
    assert process_rss_mib(os.getpid()) > 1
    assert process_rss_mib(None) is None
