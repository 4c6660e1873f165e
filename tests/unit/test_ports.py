"""SSH ports for lab machines: two labs brought up at once are never handed the same port,
and QEMU's refusal of a port taken meanwhile is recognised (then another is reserved)."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import pytest

from xenlab.errors import XenlabError
from xenlab.lab.ports import PORTS_DIR, hostfwd_refused, release_ports, reserve_port

PER_LAB = 300

RESERVER = textwrap.dedent(f"""
    import sys
    from pathlib import Path
    from xenlab.lab.ports import reserve_port
    run_root = Path(sys.argv[1])
    run_root.mkdir()
    sys.stdin.readline()  # both processes start reserving together
    print(" ".join(str(reserve_port(run_root)) for _ in range({PER_LAB})), flush=True)
""")


def test_two_labs_reserving_at_once_never_get_the_same_port(tmp_path):
    """Two processes (two labs of `pytest -n 2`) reserve 300 ports each at the same time.
    (Choosing by bind-to-port-0 alone, as `free_port` did, repeats ports across 600 picks:
    the kernel keeps no memory of a port it handed out and that is not bound yet.)"""
    labs = [subprocess.Popen([sys.executable, "-c", RESERVER, str(tmp_path / f"lab{i}")], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True) for i in range(2)]
    for lab in labs:
        lab.stdin.write("go\n")
        lab.stdin.flush()
    got = [[int(p) for p in lab.communicate(timeout=120)[0].split()] for lab in labs]
    assert [len(ports) for ports in got] == [PER_LAB, PER_LAB]
    assert len(set(got[0]) | set(got[1])) == 2 * PER_LAB
    claims = {int(p.name): p.read_text().strip() for p in (tmp_path / PORTS_DIR).iterdir()}
    assert {port for port, owner in claims.items() if owner == str(tmp_path / "lab0")} == set(got[0])


def test_a_claim_holds_while_its_lab_exists_and_is_taken_over_after(tmp_path, monkeypatch):
    from xenlab.lab import ports

    lab1, lab2 = tmp_path / "lab1", tmp_path / "lab2"
    lab1.mkdir()
    lab2.mkdir()
    held = reserve_port(lab1)
    # the kernel says `held` is free (QEMU has not bound it yet): lab2 must not get it
    monkeypatch.setattr(ports, "_kernel_free_port", lambda: held)
    monkeypatch.setattr(ports, "ATTEMPTS", 3)
    with pytest.raises(XenlabError, match="no free port"):
        reserve_port(lab2)
    lab1.rmdir()  # lab1 is down: its claim is stale
    assert reserve_port(lab2) == held
    assert (tmp_path / PORTS_DIR / str(held)).read_text().strip() == str(lab2)
    release_ports(lab2)
    assert not (tmp_path / PORTS_DIR / str(held)).exists()


def test_qemus_refusal_of_a_taken_port_is_recognised():
    """QEMU 7.2's words when its forwarded port is taken (seen with `-machine none`)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
    said = (f"qemu-system-x86_64: -netdev user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22: "
            f"Could not set up host forwarding rule 'tcp:127.0.0.1:{port}-:22'\n")
    assert hostfwd_refused(said, port)
    assert not hostfwd_refused(said, port + 1)  # an earlier launch's refusal of another port
    assert not hostfwd_refused("qemu-system-x86_64: -drive ...: Could not open 'root.qcow2'", port)


def test_the_claims_directory_is_never_taken_for_a_stray_lab(tmp_path, monkeypatch):
    """`xenlab down --all` removed a run base's `ports` directory as a stray lab's (seen
    2026-12-07): claims of labs still running went with it, and a lab named `ports` would
    have shared it."""
    import re

    from xenlab.lab.lab import stray_lab_dirs
    from xenlab.spec import NAME_PATTERN

    monkeypatch.setenv("XENLAB_RUN_DIR", str(tmp_path))
    tmp_path.chmod(0o700)
    lab = tmp_path / "lab1"
    lab.mkdir(mode=0o700)
    reserve_port(lab)
    (tmp_path / "crashed").mkdir(mode=0o700)
    assert [p.name for p in stray_lab_dirs()] == ["crashed", "lab1"]
    assert not re.match(NAME_PATTERN, PORTS_DIR)  # no lab can be named like it
