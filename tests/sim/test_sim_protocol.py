"""Wire-level behaviour: sessions, method names, arity, marshalling, JSON-RPC."""

from __future__ import annotations

import json
import urllib.request
import xmlrpc.client

import XenAPI
from sim_helpers import PW, GiB, connect, failure, make_vm


def raw(sim, host=0):
    return xmlrpc.client.ServerProxy(sim.url_for(host), allow_none=True)


def raw_login(sim, host=0) -> str:
    r = raw(sim, host).session.login_with_password("root", PW, "2.21", "raw")
    assert r["Status"] == "Success"
    return r["Value"]


def test_login_good_and_bad_credentials(sim):
    s = connect(sim)
    assert s._session.startswith("OpaqueRef:") and s._session != "OpaqueRef:NULL"
    bad = XenAPI.Session(sim.url_for(0))
    assert failure(bad.xenapi.login_with_password, "root", "wrong", "2.21", "t") == [
        "SESSION_AUTHENTICATION_FAILED",
        "root",
        "Authentication failure",
    ]
    assert failure(bad.xenapi.login_with_password, "admin", PW)[:2] == ["SESSION_AUTHENTICATION_FAILED", "admin"]


def test_login_with_two_arguments_uses_defaults(sim):
    s = XenAPI.Session(sim.url_for(0))
    s.xenapi.login_with_password("root", PW)  # version/originator have defaults in xapi
    assert s.xenapi.session.get_this_host(s._session) == s.xenapi.host.get_all()[0]
    # ...but uname and pwd do not: expected count excludes defaulted params
    r = raw(sim).session.login_with_password("root")
    assert r["ErrorDescription"] == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "session.login_with_password", "2", "1"]
    r = raw(sim).session.login_with_password("root", PW, "1.0", "o", "extra")
    assert r["ErrorDescription"] == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "session.login_with_password", "2", "5"]


def test_session_invalid_reported_with_ref(sim):
    r = raw(sim).VM.get_all("OpaqueRef:not-a-session")
    assert r == {"Status": "Failure", "ErrorDescription": ["SESSION_INVALID", "OpaqueRef:not-a-session"]}


def test_client_relogs_in_after_session_invalid(sim):
    s = connect(sim)
    old = s._session
    # kill the session behind the client's back (bypasses the client's logout)
    assert raw(sim).session.logout(old)["Status"] == "Success"
    assert raw(sim).VM.get_all(old)["ErrorDescription"] == ["SESSION_INVALID", old]
    vms = s.xenapi.VM.get_all()  # client sees SESSION_INVALID, logs in again, retries
    assert vms and s._session != old


def test_unknown_method_and_parameter_count(sim):
    sess = raw_login(sim)
    p = raw(sim)
    assert getattr(p, "VM.frobnicate")(sess)["ErrorDescription"] == ["MESSAGE_METHOD_UNKNOWN", "VM.frobnicate"]
    assert getattr(p, "Nope.thing")()["ErrorDescription"] == ["MESSAGE_METHOD_UNKNOWN", "Nope.thing"]
    # unknown method with a bad session: session is checked first, as in xapi
    assert getattr(p, "VM.frobnicate")("OpaqueRef:x")["ErrorDescription"][0] == "SESSION_INVALID"
    vm = p.VM.get_all(sess)["Value"][0]
    assert p.VM.start(sess, vm)["ErrorDescription"] == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.start", "3", "1"]
    assert p.VM.get_record(sess)["ErrorDescription"] == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record", "1", "0"]


def test_unimplemented_removed_and_async_fault(sim):
    sess = raw_login(sim)
    p = raw(sim)
    h = p.host.get_all(sess)["Value"][0]
    assert p.host.dmesg(sess, h)["ErrorDescription"] == ["NOT_IMPLEMENTED", "host.dmesg"]
    assert p.host.license_apply(sess, h, "x")["ErrorDescription"] == ["MESSAGE_REMOVED"]
    r = getattr(p, "Async.VM.get_all")(sess)
    assert r["ErrorDescription"] == ["Fault", "No async mode for this operation (rpc: VM.get_all)"]


def test_alternative_underscore_wire_name(sim):
    sess = raw_login(sim)
    p = raw(sim)
    assert p.VM_get_all(sess)["Value"] == p.VM.get_all(sess)["Value"]
    assert p.host_metrics_get_all(sess)["Status"] == "Success"


def test_xmlrpc_marshalling_of_types(sim):
    x = connect(sim).xenapi
    vm = make_vm(x, "typed", 2 * GiB)
    rec = x.VM.get_record(vm)
    assert rec["memory_static_max"] == str(2 * GiB)  # ints travel as strings
    assert rec["power_state"] == "Halted"  # enum spelled as in the datamodel
    assert rec["resident_on"] == "OpaqueRef:NULL"
    assert rec["domid"] == "-1"
    assert isinstance(rec["is_a_template"], bool)
    assert isinstance(rec["HVM_shadow_multiplier"], float)
    m = x.VM_metrics.get_record(rec["metrics"])
    assert isinstance(m["install_time"], xmlrpc.client.DateTime)
    assert m["install_time"].value.endswith("Z")
    assert isinstance(rec["VCPUs_params"], dict) and isinstance(rec["VBDs"], list)


def test_handle_and_uuid_invalid(sim):
    x = connect(sim).xenapi
    assert failure(x.VM.get_record, "OpaqueRef:nope") == ["HANDLE_INVALID", "VM", "OpaqueRef:nope"]
    assert failure(x.VM.get_by_uuid, "no-such-uuid") == ["UUID_INVALID", "VM", "no-such-uuid"]


def test_setters_and_map_accessors(sim):
    x = connect(sim).xenapi
    vm = make_vm(x, "maps")
    x.VM.set_name_label(vm, "renamed")
    x.VM.add_to_other_config(vm, "k", "v")
    assert failure(x.VM.add_to_other_config, vm, "k", "w") == ["MAP_DUPLICATE_KEY", "VM", "other_config", vm, "k"]
    x.VM.add_tags(vm, "blue")
    rec = x.VM.get_record(vm)
    assert rec["name_label"] == "renamed" and rec["other_config"]["k"] == "v" and rec["tags"] == ["blue"]
    x.VM.remove_from_other_config(vm, "k")
    assert "k" not in x.VM.get_other_config(vm)
    # RO field: no setter exists in the datamodel, so none on the wire
    sess = connect(sim)._session
    r = getattr(raw(sim), "VM.set_power_state")(sess, vm, "Running")
    assert r["ErrorDescription"] == ["MESSAGE_METHOD_UNKNOWN", "VM.set_power_state"]


def test_get_all_records_where(sim):
    x = connect(sim).xenapi
    a = make_vm(x, "alpha")
    b = make_vm(x, "beta")
    x.VM.start(a, False, False)
    running = x.VM.get_all_records_where('field "power_state" = "Running" and field "is_control_domain" = "false"')
    assert set(running) == {a}
    either = x.VM.get_all_records_where('field "name__label"="alpha" or field "name_label"="beta"')
    assert set(either) == {a, b}
    not_templates = x.VM.get_all_records_where(
        'not (field "is_a_template"="true") and not field "is_control_domain"="true"'
    )
    assert set(not_templates) == {a, b}
    assert x.VM.get_all_records_where("true").keys() == x.VM.get_all_records().keys()
    assert x.VM.get_all_records_where("false") == {}
    assert failure(x.VM.get_all_records_where, 'field "power_state" =')[0] == "INVALID_VALUE"


def _post_json(url, payload):
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_jsonrpc_v2_and_v1(sim):
    url = sim.jsonrpc_url_for(0)
    r = _post_json(
        url, {"jsonrpc": "2.0", "method": "session.login_with_password", "params": ["root", PW, "2.21", "j"], "id": 7}
    )
    assert r["jsonrpc"] == "2.0" and r["id"] == 7 and r["result"].startswith("OpaqueRef:")
    sess = r["result"]
    host = _post_json(url, {"jsonrpc": "2.0", "method": "host.get_all", "params": [sess], "id": 8})["result"][0]
    rec = _post_json(url, {"jsonrpc": "2.0", "method": "host.get_record", "params": [sess, host], "id": 9})["result"]
    assert isinstance(rec["API_version_major"], int)  # JSON-RPC carries ints as numbers
    assert isinstance(rec["enabled"], bool)
    err = _post_json(
        url, {"jsonrpc": "2.0", "method": "session.login_with_password", "params": ["root", "bad", "", ""], "id": 10}
    )
    assert err["error"] == {
        "code": 1,
        "message": "SESSION_AUTHENTICATION_FAILED",
        "data": ["root", "Authentication failure"],
    }
    assert "result" not in err
    v1 = _post_json(url, {"method": "VM.get_all", "params": ["OpaqueRef:bad"], "id": "a"})
    assert v1 == {"result": None, "error": ["SESSION_INVALID", "OpaqueRef:bad"], "id": "a"}
    ok1 = _post_json(url, {"method": "pool.get_all", "params": [sess], "id": 1})
    assert ok1["error"] is None and len(ok1["result"]) == 1


def test_host_list_methods_answers_as_xapi(sim):
    x = connect(sim).xenapi
    assert failure(x.host.list_methods) == ["NOT_IMPLEMENTED", "list_method"]
