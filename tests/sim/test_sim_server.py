"""Control API over HTTP, the CLI entry point, real-time mode, misc objects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import XenAPI
from sim_helpers import PW, ROOT, GiB, connect, failure, host_ref, make_nfs_sr, make_vm

from xenlab.sim.server import TOKEN_HEADER, SimServer


def _request(url, payload=None, token=None, method="POST"):
    """(HTTP status, JSON answer) of a control request, with the control token when given."""
    headers = {"Content-Type": "application/json", **({TOKEN_HEADER: token} if token is not None else {})}
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _post(sim, url, payload):
    status, answer = _request(url, payload, sim.control_token)
    assert status == 200, answer
    return answer


def test_control_api_over_http(sim):
    base = sim.control_url
    t0 = _post(sim, base + "now", {})["result"]
    assert _post(sim, base + "advance", {"seconds": 90})["result"] == t0 + 90
    status = _post(sim, base + "status", {})["result"]
    assert [h["master"] for h in status["hosts"]] == [True, True, True]
    _post(sim, base + "kill_host", {"host": "h3"})
    assert _post(sim, base + "status", {})["result"]["hosts"][2]["alive"] is False
    _post(sim, base + "heal", {"host": "h3"})
    connect(sim, 2)  # answers again
    # the same API is reachable on host ports and by path on the control port
    assert _post(sim, sim.url_for(0) + "_sim/now", {})["result"] == t0 + 90
    x = XenAPI.Session(base.replace("/_sim/", "/host/h2"))
    x.xenapi.login_with_password("root", PW)
    assert x.xenapi.host.get_name_label(x.xenapi.session.get_this_host(x._session)) == "h2"
    assert _request(base + "frobnicate", {}, sim.control_token)[0] == 400


def test_control_api_refuses_requests_without_the_control_token(sim):
    """Issue 26: the control API kills hosts and moves the clock, so no listener serves it
    to a request without the simulator's token (GET or POST, missing or wrong)."""
    for url in (sim.control_url, sim.url_for(0) + "_sim/", sim.url_for(2) + "_sim/",
                sim.control_url.replace("/_sim/", "/host/h2/_sim/")):
        for token in (None, "", "not-the-token", sim.control_token[:-1]):
            status, answer = _request(url + "kill_host", {"host": "h2"}, token)
            assert (status, answer["ok"]) == (401, False) and TOKEN_HEADER in answer["error"]
            assert _request(url + "status", token=token, method="GET")[0] == 401
    assert all(h["alive"] for h in sim.control.status()["hosts"])  # nothing was done
    assert _request(sim.control_url + "status", token=sim.control_token, method="GET")[0] == 200
    with SimServer(1, password=PW) as other:  # each simulator has its own token
        assert other.control_token != sim.control_token
        assert _request(other.control_url + "status", {}, sim.control_token)[0] == 401


def _serve(args, tmp_path):
    """`xenlab sim serve ARGS` in a subprocess; (process, its output up to the control line)."""
    proc = subprocess.Popen([sys.executable, "-m", "xenlab.cli", "sim", "serve", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = []
    deadline = time.time() + 30
    while time.time() < deadline and not any("control:" in line for line in lines):
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
    return proc, lines


def _host_urls(lines):
    return [w for line in lines if line.strip().startswith("h") for w in line.split()
            if w.startswith("http") and not w.endswith("jsonrpc")]


def test_sim_serve_cli_pool_over_wall_clock(tmp_path):
    pwfile = tmp_path / "pw"
    pwfile.write_text("cli-secret-pw\n")
    proc, lines = _serve(["--hosts", "3", "--pool", "--virtual-clock", "--password-file", str(pwfile)], tmp_path)
    try:
        out = "".join(lines)
        assert "cli-secret" not in out  # the password is never printed, only where it is read from
        assert f"password read from {pwfile}" in out and "one pool of 3 (master h1)" in out
        assert "h2 (10.0.0.2, member)" in out
        urls = _host_urls(lines)
        assert len(urls) == 3
        member = XenAPI.Session(urls[1])
        assert failure(member.xenapi.login_with_password, "root", "cli-secret-pw") == ["HOST_IS_SLAVE", "10.0.0.1"]
        s = XenAPI.Session(urls[0])
        assert failure(s.xenapi.login_with_password, "root", "wrong")[0] == "SESSION_AUTHENTICATION_FAILED"
        s.xenapi.login_with_password("root", "cli-secret-pw")
        assert len(s.xenapi.host.get_all()) == 3
        # a virtual clock, yet an idle event.from returns (empty) after its timeout in real time
        token = s.xenapi.event_from(["pool"], "", 0.0)["token"]
        assert s.xenapi.event_from(["pool"], token, 1.0)["events"] == []
    finally:
        proc.terminate()
        proc.wait(10)


def test_sim_serve_cli_refuses_an_empty_password_file(tmp_path):
    pwfile = tmp_path / "pw"
    pwfile.write_text("\n")
    proc = subprocess.run([sys.executable, "-m", "xenlab.cli", "sim", "serve", "--password-file", str(pwfile)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and "the password file is empty" in proc.stderr and "Traceback" not in proc.stderr


def _token_file(lines) -> Path:
    (line,) = [line for line in lines if "control token:" in line]
    return Path(line.split("read from ")[1].strip())


def test_sim_serve_generates_a_private_password_file_and_removes_it_when_stopped(tmp_path):
    """Issue 26: the generated password and the control token are 0600 files that go with the server."""
    proc, lines = _serve(["--hosts", "1"], tmp_path)
    try:
        (line,) = [line for line in lines if "password read from" in line]
        path = Path(line.split("password read from ")[1].strip())
        assert path.stat().st_mode & 0o777 == 0o600
        token_file = _token_file(lines)
        assert token_file.parent == path.parent and token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        assert token not in "".join(lines)  # the token is never printed, only where it is
        s = XenAPI.Session(_host_urls(lines)[0])
        s.xenapi.login_with_password("root", path.read_text().strip())
        control = next(w for line in lines if "control:" in line for w in line.split() if w.startswith("http"))
        assert _request(control + "status", {}, token)[0] == 200
        assert _request(control + "status", {})[0] == 401
    finally:
        proc.terminate()  # SIGTERM: stops as Ctrl-C does
        proc.wait(10)
    assert proc.returncode == 0 and "simulator stopped" in proc.stderr.read()
    assert not path.exists() and not token_file.exists()


def test_sim_serve_puts_its_token_next_to_a_given_password_file_and_keeps_that_file(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    pwfile = secrets / "pw"
    pwfile.write_text("given-pw\n")
    pwfile.chmod(0o600)
    proc, lines = _serve(["--hosts", "1", "--password-file", str(pwfile)], tmp_path)
    try:
        token_file = _token_file(lines)
        assert token_file.parent == secrets and token_file.stat().st_mode & 0o777 == 0o600
    finally:
        proc.terminate()
        proc.wait(10)
    assert pwfile.read_text() == "given-pw\n" and not token_file.exists()


def test_realtime_clock_event_timeout():
    with SimServer(1, password=PW, realtime=True) as rt:
        x = connect(rt).xenapi
        tok = getattr(x.event, "from")(["vm"], "", 0.0)["token"]
        t = time.time()
        r = getattr(x.event, "from")(["vm"], tok, 0.4)
        took = time.time() - t
        assert r["events"] == [] and 0.3 < took < 3
        assert abs(rt.control.now() - time.time()) < 2


def test_event_register_next_and_alternative_name(sim):
    x = connect(sim).xenapi
    vm = make_vm(x, "nx")
    x.event.register(["vm"])
    x.VM.set_name_label(vm, "nx2")
    evs = x.event.next()
    assert any(e["ref"] == vm and e["operation"] == "mod" for e in evs)
    import xmlrpc.client

    p = xmlrpc.client.ServerProxy(sim.url_for(0))
    sess = connect(sim)._session
    r = p.event_from(sess, ["vm"], "", 0.0)  # xapi also accepts Class_method spelling
    assert r["Status"] == "Success" and r["Value"]["events"]


def test_vifs_vbds_and_backrefs(pool):
    _sim, x = pool
    net = x.PIF.get_network(x.host.get_PIFs(host_ref(x, "h1"))[0])
    vm = make_vm(x, "nics", sr=make_nfs_sr(x))
    vif = x.VIF.create(
        {
            "device": "0",
            "network": net,
            "VM": vm,
            "MAC": "",
            "MTU": "1500",
            "other_config": {},
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        }
    )
    assert x.VM.get_VIFs(vm) == [vif] and vif in x.network.get_VIFs(net)
    assert len(x.VIF.get_MAC(vif)) == 17
    assert failure(
        x.VIF.create,
        {
            "device": "0",
            "network": net,
            "VM": vm,
            "MAC": "",
            "MTU": "1500",
            "other_config": {},
            "qos_algorithm_type": "",
            "qos_algorithm_params": {},
        },
    ) == ["DEVICE_ALREADY_EXISTS", "0"]
    (vbd,) = x.VM.get_VBDs(vm)
    vdi = x.VBD.get_VDI(vbd)
    assert x.VDI.get_VBDs(vdi) == [vbd] and vdi in x.SR.get_VDIs(x.VDI.get_SR(vdi))
    x.VIF.destroy(vif)
    assert vif not in x.network.get_VIFs(net)
    copy = x.VM.copy(vm, "nics-copy", "OpaqueRef:NULL")
    (cvbd,) = x.VM.get_VBDs(copy)
    assert x.VBD.get_VDI(cvbd) != vdi and x.VDI.get_SR(x.VBD.get_VDI(cvbd)) == x.VDI.get_SR(vdi)


def test_suspend_resume(sim):
    x = connect(sim).xenapi
    vm = make_vm(x, "sleepy", 2 * GiB)
    x.VM.start(vm, False, False)
    x.VM.suspend(vm)
    assert x.VM.get_power_state(vm) == "Suspended" and x.VM.get_resident_on(vm) == "OpaqueRef:NULL"
    assert failure(x.VM.start, vm, False, False) == ["VM_BAD_POWER_STATE", vm, "halted", "suspended"]
    x.VM.resume(vm, False, False)
    assert x.VM.get_power_state(vm) == "Running"


def test_a_client_that_hangs_up_mid_request_prints_no_traceback(sim, capfd):
    """A host cut or a killed client resets its connection; the simulator stays
    quiet about that (xenlab's output must hold no traceback) but still shows one
    for a fault of its own."""
    import socket
    import struct
    from urllib.parse import urlsplit

    port = urlsplit(sim.url_for(0)).port
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.sendall(b"POST / HTTP/1.1\r\nContent-Le")
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()  # RST, not FIN
    connect(sim, 0)  # the host still answers
    srv = sim._control_server
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError:
        srv.handle_error(None, ("127.0.0.1", 1))
    assert "Traceback" not in capfd.readouterr().err
    try:
        raise KeyError("a simulator bug")
    except KeyError:
        srv.handle_error(None, ("127.0.0.1", 1))
    assert "KeyError" in capfd.readouterr().err
