"""The lab file's `xen:`, `packages:` and `provision:` sections: refused with file:line when
wrong, merged host over lab, and carried onto the Xen and dom0 command lines."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest

from xenlab.errors import SpecError
from xenlab.lab.qemu import dom0_cmdline, xen_cmdline
from xenlab.plan import plan_lab
from xenlab.spec import load_lab
from xenlab.xen_spec import deb_problem, hypervisor_problem


def elf(bits: int) -> bytes:
    return b"\x7fELF" + bytes([1 if bits == 32 else 2]) + b"\0" * 59


def write_lab(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(body)
    return path


def problems(path: Path) -> list[tuple[int, str]]:
    with pytest.raises(SpecError) as caught:
        load_lab(path)
    return caught.value.problems


def test_owned_options_are_refused_with_their_line(tmp_path):
    lab = write_lab(tmp_path, "name: t\nxen:\n  cmdline: 'sched=credit2 dom0_mem=512M'\n"
                              "  dom0: {cmdline: 'quiet console=ttyS0'}\nhosts: {h1: }\n")
    found = problems(lab)
    assert (3, found[0][1]) == found[0] and "dom0_mem=" in found[0][1]
    assert found[1][0] == 4 and "console=" in found[1][1]


def test_quotes_in_a_command_line_are_refused(tmp_path):
    found = problems(write_lab(tmp_path, "name: t\nxen: {cmdline: \"a='b c'\"}\nhosts: {h1: }\n"))
    assert found[0][0] == 2 and "single spaces" in found[0][1]


def test_files_are_checked_for_what_they_must_be(tmp_path):
    (tmp_path / "xen-syms").write_bytes(elf(64))
    (tmp_path / "not.deb").write_bytes(b"!<arch>\nfoo.txt/        ")
    (tmp_path / "tools").mkdir()
    lab = write_lab(tmp_path, "name: t\nxen:\n  hypervisor: xen-syms\n  debs: [not.deb, missing.deb]\n"
                              "  tools: tools\nhosts:\n  h1: {xen: {hypervisor: tools}}\n")
    found = dict(problems(lab))
    assert "64-bit ELF" in found[3]
    assert "not a Debian package" in found[4] or "does not exist" in found[4]
    assert "holds no usr/" in found[5]
    assert "is a directory, a file is needed" in found[7]


def test_magic_checks():
    assert hypervisor_problem_of(gzip.compress(elf(32))) is None
    assert "64-bit" in hypervisor_problem_of(gzip.compress(elf(64)))
    assert "neither" in hypervisor_problem_of(b"hello world" * 10)


def hypervisor_problem_of(data: bytes, tmp=Path("/tmp")) -> str | None:
    path = tmp / f"xenlab-test-hv-{struct.unpack('<I', data[:4].ljust(4, b'0'))[0]}"
    path.write_bytes(data)
    try:
        return hypervisor_problem(path)
    finally:
        path.unlink()


def test_a_real_deb_passes(tmp_path):
    deb = tmp_path / "a.deb"
    deb.write_bytes(b"!<arch>\ndebian-binary   1700000000  0     0     100644  4         `\n2.0\n")
    assert deb_problem(deb) is None


def test_pvh_dom0_is_refused_under_tcg(tmp_path):
    found = problems(write_lab(tmp_path, "name: t\naccel: tcg\nxen: {dom0: {mode: pvh}}\nhosts: {h1: }\n"))
    assert found[0][0] == 3 and "accel: kvm" in found[0][1]


def test_static_labs_refuse_the_sections(tmp_path):
    key = tmp_path / "k"
    key.write_text("x")
    found = problems(write_lab(tmp_path, (
        "name: t\nbackend: static\nknown_hosts: k\npackages: [gdb]\nnetworks: {lab: {subnet: 192.168.50.0/24}}\n"
        "hosts:\n  h1: {address: 192.168.50.11, ssh: {host: h1, key_file: k}, xen: {cmdline: sched=credit2}}\n"
        "services: {address: 192.168.50.2, ssh: {host: s, key_file: k}}\n")))
    assert any("does not boot" in m for _, m in found)
    assert any(line == 4 and m.startswith("packages:") for line, m in found)


def test_host_overrides_lab_key_by_key_and_command_lines_carry_it(tmp_path):
    (tmp_path / "xen.gz").write_bytes(gzip.compress(elf(32)))
    spec = load_lab(write_lab(tmp_path, (
        "name: t\naccel: kvm\nxen:\n  hypervisor: xen.gz\n  cmdline: sched=credit2\n  dom0: {cmdline: quiet}\n"
        "hosts:\n  h1:\n  h2: {xen: {cmdline: 'spec-ctrl=no', dom0: {mode: pvh}}}\n")))
    h1, h2 = plan_lab(spec).hosts
    assert h1.own_layer and h1.image_key == "debian-xen+h1"
    assert xen_cmdline(h1).endswith("noreboot sched=credit2")
    assert xen_cmdline(h2).endswith("noreboot dom0=pvh dom0-iommu=none spec-ctrl=no")
    assert h2.xen.hypervisor == "xen.gz"  # the lab's, kept under the host's own keys
    assert dom0_cmdline(h2).endswith(" quiet")
    assert spec.nested_hvm  # a PVH dom0 needs the CPU's hardware virtualization


def test_a_lab_without_the_sections_boots_as_before(tmp_path):
    spec = load_lab(write_lab(tmp_path, "name: t\nhosts: {h1: }\n"))
    (h1,) = plan_lab(spec).hosts
    assert not h1.own_layer and h1.image_key == "debian-xen"
    assert xen_cmdline(h1).endswith("noreboot")


def test_up_refuses_a_pvh_dom0_when_tcg_is_chosen_anyway(tmp_path):
    from xenlab.errors import XenlabError
    from xenlab.lab.user_xen import refuse_pvh_dom0_under_tcg

    spec = load_lab(write_lab(tmp_path, "name: t\naccel: kvm\nxen: {dom0: {mode: pvh}}\nhosts: {h1: }\n"))
    refuse_pvh_dom0_under_tcg(plan_lab(spec), "kvm")
    with pytest.raises(XenlabError, match="h1: dom0 mode pvh under TCG"):
        refuse_pvh_dom0_under_tcg(plan_lab(spec), "tcg")
