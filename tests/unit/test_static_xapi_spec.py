"""Static labs with `toolstack: xapi` (XCP-ng hosts): their lab files (good and bad), how
xenlab reaches each host's xapi (URLs, TLS trust), and what the lab offers."""

from __future__ import annotations

import datetime
import os
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from xenlab.drivers import drivers_for
from xenlab.errors import SpecError, XenlabError
from xenlab.lab.static import StaticLab, UnobservedGuests
from xenlab.lab.xapi_login import virt_caps_of
from xenlab.spec import load_lab
from xenlab.toolstack.xapi import XapiToolstack

SECRET = "xapi-Secret-0815"
GOOD = """name: rack
backend: static
toolstack: xapi
xapi: {{user: root, password_file: xapi-password{extra}}}
networks:
  pool: {{subnet: 192.168.60.0/24}}
hosts:
  h1:
    address: 192.168.60.11
    ipmi: {{address: 192.168.61.11, user: ADMIN, password_env: XENLAB_T_BMC}}
  h2:
    address: 192.168.60.12
    api: {{host: 127.0.0.1, port: 8443}}
    ipmi: {{address: 192.168.61.12, user: ADMIN, password_env: XENLAB_T_BMC}}
services: {{address: 192.168.60.2, nfs_export: /srv/sr}}
"""


@pytest.fixture
def rack(tmp_path, monkeypatch):
    (tmp_path / "xapi-password").write_text(SECRET + "\n")
    os.chmod(tmp_path / "xapi-password", 0o600)
    monkeypatch.setenv("XENLAB_T_BMC", "bmc-Secret-1")

    def write(extra: str = "") -> str:
        path = tmp_path / "rack.yaml"
        path.write_text(GOOD.format(extra=extra))
        return str(path)
    return write


def test_an_xcp_ng_rack_needs_no_ssh_and_no_known_hosts(rack):
    spec = load_lab(rack())
    assert spec.static_toolstack == "xapi" and spec.xapi.scheme == "https" and spec.known_hosts is None
    assert spec.hosts["h1"].ssh is None and spec.hosts["h2"].api.port == 8443
    assert SECRET not in spec.model_dump_json()


def test_xapi_urls_follow_the_pool_address_unless_an_endpoint_is_given(rack):
    lab = StaticLab(load_lab(rack()), rack())
    assert lab.xapi.url_for("192.168.60.11") == "https://192.168.60.11:443/"
    assert lab.xapi.url_for("192.168.60.12") == "https://127.0.0.1:8443/"  # h2's tunnel
    assert lab.xapi.url_for("fd00::5") == "https://[fd00::5]:443/"
    access = lab.xapi_access()
    assert access.addresses == {"h1": "192.168.60.11", "h2": "192.168.60.12"}
    assert (access.nfs_server, access.nfs_path) == ("192.168.60.2", "/srv/sr")
    assert access.password == SECRET and SECRET not in repr(access)


def test_an_xapi_rack_offers_power_faults_but_no_firewall_faults_and_no_integrity(rack):
    lab = StaticLab(load_lab(rack()), rack())
    caps = lab.capabilities
    assert caps.toolstack == "xapi" and caps.fault_kinds == ("power_cut", "reset")
    assert not caps.integrity_measurable and not caps.checkpoints
    drivers = drivers_for(lab)
    assert isinstance(drivers.toolstack, XapiToolstack) and isinstance(drivers.observer, UnobservedGuests)
    with pytest.raises(XenlabError, match="heartbeats are not collected"):
        drivers.observer.heartbeats("vm1")
    with pytest.raises(XenlabError, match="no `ssh:`"):
        lab.host("h1").run("true")


def test_a_host_ca_file_is_trusted_without_matching_the_dialled_name(rack, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "xcp-h1.example")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "hosts.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    lab = StaticLab(load_lab(rack(", ca_file: hosts.pem")), rack(", ca_file: hosts.pem"))
    context = lab.xapi.ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname is False
    assert any(c["subject"] == ((("commonName", "xcp-h1.example"),),) for c in context.get_ca_certs())
    assert lab.xapi.ssl_context() is context  # built once per lab, shared by its sessions
    (tmp_path / "hosts.pem").write_text("not a certificate\n")
    with pytest.raises(XenlabError, match="cannot use .*hosts.pem as xapi's CA file"):
        StaticLab(load_lab(rack(", ca_file: hosts.pem")), rack(", ca_file: hosts.pem")).xapi.ssl_context()


def test_without_a_ca_file_the_systems_trust_and_names_are_checked(rack):
    context = StaticLab(load_lab(rack()), rack()).xapi.ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname is True


def test_xapi_capabilities_become_virt_caps():
    assert virt_caps_of(["xen-3.0-x86_64", "hvm-3.0-x86_32", "hvm-3.0-x86_64"]) == ["pv", "hvm"]
    assert virt_caps_of(["xen-3.0-x86_64"]) == ["pv"]
    assert virt_caps_of([]) == []


HEAD = "name: r\nbackend: static\n"
NET = "networks: {pool: {subnet: 10.9.0.0/24}}\n"
SERVICES = "services: {address: 10.9.0.2}\n"
BAD = [
    # (lab file text, line, fragment of the message)
    (HEAD + "toolstack: xapi\n" + NET + "hosts:\n  h1: {address: 10.9.0.11}\n" + SERVICES, 3,
     "toolstack: xapi needs `xapi:`"),
    (HEAD + "toolstack: xapi\nxapi: {password_file: p, scheme: http}\n" + NET + "hosts:\n  h1: {address: 10.9.0.11}\n"
     + SERVICES, 4, "http would send xapi's password to h1 (10.9.0.11) in clear"),
    (HEAD + f"toolstack: xapi\nxapi: {{user: root, password: {SECRET}}}\n" + NET + "hosts:\n  h1: {address: 10.9.0.11}\n"
     + SERVICES, 4, "xapi's password is never written in a lab file"),
    (HEAD + "toolstack: xapi\nxapi: {password_file: p, password_env: X}\n" + NET
     + "hosts:\n  h1: {address: 10.9.0.11}\n" + SERVICES, 4, "password_file or password_env, not both"),
    (HEAD + "known_hosts: kh\nxapi: {password_file: p}\n" + NET
     + "hosts:\n  h1: {address: 10.9.0.11, ssh: {host: 10.9.0.11, key_file: k}}\n" + SERVICES, 4,
     "xapi: only a lab with `toolstack: xapi` logs in to xapi"),
    (HEAD + "known_hosts: kh\n" + NET + "hosts:\n  h1:\n    address: 10.9.0.11\n    ssh: {host: 10.9.0.11, key_file: k}\n"
     "    api: {host: 127.0.0.1}\n" + SERVICES, 9, "hosts.h1.api: only hosts of a lab with `toolstack: xapi`"),
    (HEAD + "toolstack: xapi\nxapi: {password_file: p}\n" + NET + "hosts:\n  h1: {address: 10.9.0.11}\n", 1,
     "services node needs `address:` (its NFS server's address"),
    (HEAD + "toolstack: xapi\nxapi: {password_file: p}\n" + NET
     + "hosts:\n  h1: {address: 10.9.0.11, ssh: {host: 10.9.0.11, key_file: k}}\n" + SERVICES, 1,
     "needs `known_hosts:`"),
    ("name: r\nxapi: {password_file: p}\nhosts:\n  h1:\n", 2, "xapi: only the hosts of a `backend: static` lab"),
    (HEAD + "toolstack: xapi\nxapi: {password_file: p, scheme: ftp}\n" + NET + "hosts:\n  h1: {address: 10.9.0.11}\n"
     + SERVICES, 4, "scheme"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), BAD, ids=[b[2][:40] for b in BAD])
def test_bad_xapi_lab_files_are_refused_with_their_line(tmp_path, text, line, fragment):
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_lab(path)
    assert (line, fragment) in [(ln, fragment) for ln, msg in info.value.problems if fragment in msg], \
        info.value.problems
    assert SECRET not in str(info.value)


def test_xapi_password_file_and_ca_file_must_exist(rack, tmp_path):
    (tmp_path / "xapi-password").unlink()
    with pytest.raises(SpecError) as info:
        load_lab(rack(", ca_file: missing.pem"))
    messages = [m for _, m in info.value.problems]
    assert any("xapi.password_file: password file xapi-password does not exist" in m for m in messages), messages
    assert any("xapi.ca_file: CA file missing.pem does not exist" in m for m in messages), messages


def test_the_xcp_ng_rack_example_in_the_docs_is_a_valid_lab_file(tmp_path, monkeypatch):
    text = (Path(__file__).resolve().parents[2] / "docs" / "real-hosts.md").read_text()
    example = next(block for block in text.split("```yaml\n")[1:] if "toolstack: xapi" in block).split("```")[0]
    (tmp_path / "secrets").mkdir()
    for name in ("rack-b-xapi", "rack-b-h1-bmc"):
        (tmp_path / "secrets" / name).write_text("pw\n")
    (tmp_path / "rack-b-xapi.pem").write_text("")
    monkeypatch.setenv("RACK_B_H2_BMC_PASSWORD", "pw")
    path = tmp_path / "rack-b.yaml"
    path.write_text(example)
    spec = load_lab(path)
    assert spec.static_toolstack == "xapi" and spec.xapi.ca_file == "rack-b-xapi.pem"
    assert StaticLab(spec, str(path)).capabilities.fault_kinds == ("power_cut", "reset")
