"""The host verbs (succeed, fail, wait_until_*, wait_for_open_port, consoles, copies) on a
real shell: this machine's own `sh`, in place of a host's SSH session, and real sockets.
Each verb a test calls is recorded as a step; xenlab's own calls are not."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from xenlab.errors import CommandFailed, WaitTimeout, XenlabError
from xenlab.fixtures.recorders import PhaseRecord, RecordedTest, junit_line
from xenlab.lab.contract import LabHost, Unsupported
from xenlab.lab.ssh import CommandResult
from xenlab.lab.verbs import HostStep, HostVerbs, listening


class LocalHost(HostVerbs, LabHost):
    """A host whose shell is this machine's `sh` and whose console is a file."""

    capabilities = frozenset({"shell", "console"})

    def __init__(self, console):
        self.name, self.console = "local", console

    def run(self, command, timeout=60, input=None):
        started = time.monotonic()
        done = subprocess.run(["sh", "-c", command], input=input, capture_output=True, timeout=timeout, check=False)
        return CommandResult(self.name, command, done.returncode, done.stdout.decode(), done.stderr.decode(),
                             time.monotonic() - started)

    def serial_tail(self, lines=20):
        return "\n".join(self.console.read_text().splitlines()[-lines:])


@pytest.fixture
def host(tmp_path):
    console = tmp_path / "serial.log"
    console.write_text("Xen 4.17 booting\n(XEN) Dom0 has maximum 1 VCPUs\n")
    return LocalHost(console)


def test_succeed_and_fail_are_recorded_as_steps_with_their_output(host):
    steps: list[HostStep] = []
    with listening(steps.append):
        assert host.succeed("echo hello") == "hello\n"
        assert "nope" in host.fail("echo nope >&2; exit 3")
        with pytest.raises(CommandFailed):
            host.succeed("exit 7")
    assert [(s.verb, s.detail, s.ok) for s in steps] == [("succeed", "echo hello", True),
                                                         ("fail", "echo nope >&2; exit 3", True),
                                                         ("succeed", "exit 7", False)]
    assert steps[0].output == "hello\n" and steps[0].ended_at >= steps[0].started_at


def test_wait_until_succeeds_retries_until_the_command_does(host, tmp_path):
    marker = tmp_path / "tries"
    # fails the first two times (the file counts tries), then succeeds: no sleep, only retries
    command = f"echo x >> {marker}; [ $(wc -l < {marker}) -ge 3 ] && echo ready"
    assert host.wait_until_succeeds(command, timeout=60, interval=0.01) == "ready\n"
    assert marker.read_text().count("x") == 3
    host.wait_until_fails(f"test ! -f {marker}", timeout=10, interval=0.01)


def test_a_wait_that_never_holds_fails_with_the_last_output_and_the_console(host):
    with pytest.raises(WaitTimeout) as caught:
        host.wait_until_succeeds("echo still-broken; exit 1", timeout=0.3, interval=0.05)
    text = str(caught.value)
    assert "still-broken" in text and "exit 1" in text and "Dom0 has maximum 1 VCPUs" in text


def test_wait_for_open_port_sees_a_real_listening_socket(host):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        host.wait_for_open_port(listener.getsockname()[1], timeout=30)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]  # bound but not listening
    with pytest.raises(WaitTimeout):
        host.wait_for_open_port(port, timeout=0.3)
    closed.close()
    with pytest.raises(XenlabError, match="not a TCP port"):
        host.wait_for_open_port(70000)


def test_wait_for_console_text_returns_the_match(host):
    assert host.wait_for_console_text(r"Dom0 has maximum \d+ VCPUs", timeout=5) == "Dom0 has maximum 1 VCPUs"
    with pytest.raises(XenlabError, match="not a regular expression"):
        host.wait_for_console_text("(")


def test_a_host_without_a_shell_names_the_capability():
    class NoShell(LabHost):
        name = "h9"

    with pytest.raises(Unsupported, match="h9 of lab \\? has no shell"):
        NoShell().succeed("true")


def test_xenlabs_own_calls_are_not_test_steps(host):
    from xenlab.lab import verbs

    steps: list[HostStep] = []
    with listening(steps.append):
        assert verbs._asked_by_a_test(frames_up=1)  # this test is outside xenlab
        exec(compile("host.succeed('true')", "<xenlab>", "exec"), {"__name__": "xenlab.toolstack.xl", "host": host})  # noqa: S102 - code that calls the verb as xenlab's own modules do
    assert steps == []


def test_a_tests_host_steps_nest_under_its_call_in_the_results():
    record = RecordedTest("t.py::test_x", "t.py", lab="xen-pool2")
    record.phases["call"] = PhaseRecord(10.0, 12.0, "passed")
    record.host_steps.append(HostStep("h1", "wait_for_unit", "ssh", 10.5, 11.0, True, ""))
    (call,) = record.to_scenario().steps
    (nested,) = call.substeps
    assert (nested.name, nested.kind, nested.outcome) == ("h1: wait_for_unit ssh", "host-wait_for_unit", "passed")
    assert nested.figures["duration"].value == 0.5
    assert junit_line(record.host_steps[0]) == "h1: wait_for_unit ssh (0.50 s) ok"
