"""KVM only where the CPU exposes vmx/svm and a probe works; otherwise TCG, and say why."""

import pytest

from xenlab.errors import XenlabError
from xenlab.lab.accel import choose_accel, cpu_virt_flags

CPUINFO_PLAIN = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr sse sse2 hypervisor\n"
CPUINFO_VMX = "processor\t: 0\nflags\t\t: fpu vme vmx sse2\nprocessor\t: 1\nflags\t\t: fpu vmx\n"


def test_flags_are_read_from_cpuinfo():
    assert cpu_virt_flags(CPUINFO_PLAIN) == set()
    assert cpu_virt_flags(CPUINFO_VMX) == {"vmx"}


def test_no_flag_means_tcg_with_qemu64_and_svm_for_nested_guests():
    choice = choose_accel("auto", set(), None)
    assert (choice.accel, choice.cpu) == ("tcg", "qemu64")
    nested = choose_accel("auto", set(), None, nested_hvm=True)
    assert (nested.accel, nested.cpu) == ("tcg", "qemu64,+svm")
    assert "vmx/svm" in choice.reason


def test_flag_but_failed_probe_means_tcg():
    assert choose_accel("auto", {"svm"}, False).accel == "tcg"


def test_flag_and_probe_mean_kvm_with_host_cpu():
    choice = choose_accel("auto", {"vmx"}, True)
    assert (choice.accel, choice.cpu) == ("kvm", "host")


def test_explicit_tcg_wins():
    assert choose_accel("tcg", {"vmx"}, True).accel == "tcg"


@pytest.mark.parametrize("flags,probe", [(set(), None), ({"vmx"}, False)])
def test_explicit_kvm_that_cannot_work_is_an_error(flags, probe):
    with pytest.raises(XenlabError):
        choose_accel("kvm", flags, probe)
