"""The `xenlab` command: a thin face over Lab, ImageCache and the simulator.

Errors a user can fix are printed as one clear message, never as a traceback, with one
meaning per exit code (docs/exit-codes.md): 1 failed, 2 input refused (nothing started
or written), 3 qualification failed or a metric regressed, 4 not measured (nothing failed,
but something asked for could not be measured on this lab), 130 interrupted. Text from a
user's files is never read as Rich markup, and nothing is wrapped when the output is not
a terminal. `--json` output shapes are documented in docs/json-output.md.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.table import Table

from . import __version__
from .cli_output import _timed_progress, console, out, print_error
from .errors import InvalidInput, XenlabError

if TYPE_CHECKING:
    from .lab import Lab

FAILED_EXIT = 1  # a scenario or check failed, or xenlab could not do what was asked
INVALID_INPUT_EXIT = 2  # a file or an argument was refused; nothing was started or written (click's usage errors too)
INTERRUPTED_EXIT = 130


class XenlabGroup(click.Group):
    """Turns XenlabError into a short message and an exit code instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except InvalidInput as exc:
            print_error(exc)
            sys.exit(INVALID_INPUT_EXIT)
        except XenlabError as exc:
            print_error(exc)
            sys.exit(FAILED_EXIT)
        except KeyboardInterrupt:
            console.print("interrupted")
            sys.exit(INTERRUPTED_EXIT)


@click.group(cls=XenlabGroup)
@click.version_option(__version__, prog_name="xenlab")
def main() -> None:
    """Boot pools of real Xen hosts nested in QEMU, script them, measure them."""


def _pick_lab(ref: str | None) -> Lab:
    from .lab import running_lab

    return running_lab(ref)


def _acting_lab(ref: str | None):
    from .lab.labs import acting_lab

    return acting_lab(ref)


lab_option = click.option("--lab", "lab_name", help="lab name (default: the only lab that is up)")


# -- doctor ---------------------------------------------------------------------------
@main.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def doctor(as_json: bool) -> None:
    """What is installed, KVM or TCG, what is missing and how to get it."""
    from .images.rootless import build_checks, missing_advice
    from .lab.accel import detect_accel, guest_types_under
    from .lab.lab import REQUIRED_TOOLS

    checks = []
    image_tools = {"cpio": "cpio", "ssh": "openssh-client"}
    for tool, package in {**REQUIRED_TOOLS, **image_tools}.items():
        path = shutil.which(tool)
        checks.append({"check": tool, "ok": bool(path), "detail": path or f"apt-get install {package}"})
    busybox_static = Path("/bin/busybox").exists() and b"ld-linux" not in Path("/bin/busybox").read_bytes()[:4096]
    checks.append({"check": "static busybox", "ok": busybox_static,
                   "detail": "/bin/busybox" if busybox_static else "apt-get install busybox-static"})
    build = build_checks()  # image builds: without root (user namespaces) or as root
    checks += [c.as_dict() for c in build]
    not_by_setup = {c.check for c in build if not c.ok and not c.by_setup}
    try:
        choice = detect_accel("auto")
        checks.append({"check": "acceleration", "ok": True, "detail": f"{choice.accel} ({choice.reason})"})
        checks.append({"check": "guest types", "ok": True, "detail": guest_types_under(choice.accel, choice.cpu)})
    except XenlabError as exc:
        checks.append({"check": "acceleration", "ok": False, "detail": str(exc)})
    if as_json:
        out.print_json(json.dumps({"schema": "xenlab.doctor/1", "checks": checks,
                                   "ok": all(c["ok"] for c in checks)}))
    else:
        table = Table("check", "", "detail", box=None)
        for c in checks:
            table.add_row(c["check"], "[green]ok[/green]" if c["ok"] else "[red]missing[/red]", c["detail"])
        out.print(table)
        missing = [c["check"] for c in checks if not c["ok"]]
        if missing:
            out.print(missing_advice(missing, not_by_setup))
    if not all(c["ok"] for c in checks):
        sys.exit(1)


# -- up / down / status ---------------------------------------------------------------
@main.command()
@click.argument("lab_file")
@click.option("--accel", type=click.Choice(["auto", "kvm", "tcg"]), help="override the lab file's accel")
@click.option("--timeout", default=600.0, show_default=True, help="seconds until every host must be ready")
@click.option("--json", "as_json", is_flag=True, help="print the status as JSON when ready")
@click.option("--no-checkpoint", is_flag=True, help="do not save the `ready` checkpoint (nor keep a warm state)")
@click.option("--cold", is_flag=True, help="boot even if the cache holds a warm state of this lab (the new one is kept)")
def up(lab_file: str, accel: str | None, timeout: float, as_json: bool, no_checkpoint: bool, cold: bool) -> None:
    """Build images if needed, boot every host, return when all are ready.

    The lab's `ready` checkpoint is saved right away: `xenlab run` starts every scenario
    from it, and `xenlab checkpoint restore ready` goes back to it in seconds. It is kept
    in the cache too: the next `up` of the same lab restores it instead of booting
    (`xenlab cache list` shows it; XENLAB_WARM=0 turns this off)."""
    from .lab import resolve_lab, up_lab
    from .spec import load_lab

    ref = resolve_lab(lab_file, attach="never")
    progress = _timed_progress()
    assert ref.path is not None
    outcome = up_lab(load_lab(ref.path), ref.path, progress, accel=accel, timeout=timeout,
                     checkpoint=not no_checkpoint, cold=cold)
    lab = outcome.lab
    if outcome.already_up:
        console.print(f"lab {lab.name} is already up (`xenlab down {lab.name}` first to start it anew)")
    if as_json:
        out.print_json(json.dumps(lab.status()))
        return
    _print_status(lab.status())
    if not outcome.already_up:
        console.print(f"lab {lab.name} is up; `xenlab ssh {lab.hosts[0].name if lab.hosts else ''}` to get in, "
                      f"`xenlab down {lab.name}` to stop it")


@main.command()
@click.argument("lab_name", required=False)
@click.option("--all", "all_labs", is_flag=True, help="every lab of this user, and any stray process")
@click.option("--forget", is_flag=True, help="also remove the lab's warm state from the cache")
def down(lab_name: str | None, all_labs: bool, forget: bool) -> None:
    """Stop everything of a lab; nothing is left running. Its warm state stays in the
    cache (the next `up` restores it) unless --forget."""
    from .lab import down_all, down_lab
    from .lab.labs import forget_warm, only_running_lab

    if all_labs:
        done = down_all()
        for name, count in done.labs.items():
            console.print(f"lab {name} is down ({count} processes stopped)")
        for stray, count in done.strays.items():
            console.print(f"removed stray run directory {stray} ({count} processes)")
        if done.leftover:
            console.print(f"stopped {done.leftover} stray processes")
        for base, count in done.abandoned.items():
            console.print(f"stopped {count} processes left in {base} by an owner that died")
        if not done.labs:
            console.print("no lab was up")
        for name in done.labs if forget else ():
            console.print(f"forgot {forget_warm(name)} warm states of {name}")
        return
    if lab_name is None:
        try:
            lab_name = only_running_lab()
        except XenlabError as exc:
            raise XenlabError(f"name the lab to stop (or --all): {exc}") from None
    console.print(f"lab {lab_name} is down ({len(down_lab(lab_name))} processes stopped)")
    if forget:
        console.print(f"forgot {forget_warm(lab_name)} warm states of {lab_name}")


@main.command()
@lab_option
@click.option("--json", "as_json", is_flag=True, help="machine-readable output (schema xenlab.status/1)")
def status(lab_name: str | None, as_json: bool) -> None:
    """Hosts, state, accel, addresses, ports, uptime."""
    from .lab import running_labs

    if lab_name is None and not running_labs():
        if as_json:
            out.print_json(json.dumps({"schema": "xenlab.status/1", "labs": []}))
        else:
            out.print("no lab is up")
        return
    from .lab.labs import lab_status

    data = lab_status(lab_name)
    if data.get("toolstack", "xl") == "xl":
        from .drivers import pool_cluster_status

        cluster = pool_cluster_status(lab_name)
        if cluster is not None:
            data["cluster"] = cluster
    if as_json:
        out.print_json(json.dumps(data))
    elif data.get("backend") == "static":
        _print_static_status(data)
    else:
        _print_status(data)


def _print_status(data: dict) -> None:
    out.print(f"lab [bold]{data['lab']}[/bold]  accel {data['accel']} (cpu {data['cpu']})  run dir {data['run_dir']}")
    table = Table("host", "role", "state", "ssh", "addresses", "uptime", "guests (virt_caps)", "hardware", box=None)
    for m in data["machines"]:
        hw = m.get("hardware") or {}
        uptime = f"{m['uptime_seconds']:.0f}s" if m["uptime_seconds"] is not None else "-"
        guests = (f"{','.join(m['guest_types'])} ({' '.join(m['virt_caps']) or 'not read yet'})"
                  if "guest_types" in m else "-")
        table.add_row(m["name"], m["role"], m["state"], f"127.0.0.1:{m['ssh']['port']}",
                      " ".join(f"{k}={v}" for k, v in m["addresses"].items()), uptime, escape(guests),
                      escape(" ".join(f"{hw[k]}" for k in ("firmware", "nic", "disk", "cpu") if hw.get(k)) or "-"))
    out.print(table)
    if data["checkpoints"]:
        out.print("checkpoints: " + ", ".join(c["tag"] for c in data["checkpoints"]))
    if data.get("came_up") == "warm":
        out.print(f"came up warm from {data['warm_state']}", markup=False)
    _print_cluster(data.get("cluster"))


def _print_cluster(cluster: dict | None) -> None:
    """The pool's cluster as its stack says (corosync-quorumtool, crm_mon), if it has one."""
    if not cluster:
        return
    if "error" in cluster:
        out.print(f"cluster: not read ({cluster['error']})", markup=False)
        return
    out.print(f"cluster (asked {cluster['asked']}): online {', '.join(cluster['online']) or '-'}; "
              f"offline {', '.join(cluster['offline']) or '-'}; quorate {'yes' if cluster['quorate'] else 'NO'} "
              f"({cluster['votes']}/{cluster['expected_votes']} votes{', ' + ' '.join(cluster['flags']) if cluster['flags'] else ''}); "
              f"DC {cluster['dc'] or '-'}", markup=False)
    for resource, nodes in sorted(cluster["resources"].items()):
        out.print(f"  {resource}: {', '.join(nodes)}", markup=False)


def _print_static_status(data: dict) -> None:
    out.print(f"static lab [bold]{data['lab']}[/bold]: its hosts as they answer now")
    table = Table("host", "role", "state", "ssh", "addresses", "bmc (power)", "virt_caps", "xenlab rules left",
                  box=None)
    for m in data["machines"]:
        bmc = f"{m['bmc']['address']}:{m['bmc']['port']} ({m.get('power') or '?'})" if "bmc" in m else "-"
        table.add_row(m["name"], m["role"], m["state"], f"{m['ssh']['user']}@{m['ssh']['host']}:{m['ssh']['port']}",
                      " ".join(f"{k}={v}" for k, v in m["addresses"].items()), bmc,
                      " ".join(m["virt_caps"]) or "-", ", ".join(m["firewall_left"]) or "none",
                      style=None if m["state"] == "running" else "red")
    out.print(table)
    for m in data["machines"]:
        if m.get("ssh_error"):
            out.print(f"{m['name']}: {m['ssh_error']}", markup=False)
    if any(m["firewall_left"] for m in data["machines"]):
        out.print("`xenlab up` of this lab (or any `xenlab run` on it) removes the rules a dead run left")
    _print_cluster(data.get("cluster"))


# -- access ---------------------------------------------------------------------------
def remote_command(words: tuple[str, ...]) -> str:
    """The shell text `xenlab ssh HOST WORDS...` runs: one word as it is (a whole command
    line), several quoted as ssh(1) users expect; a leading `--` only ends xenlab's options."""
    if words and words[0] == "--":
        words = words[1:]
    import shlex

    return words[0] if len(words) == 1 else shlex.join(words)


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@lab_option
@click.option("--timeout", default=600.0, show_default=True, help="seconds before the command is abandoned")
@click.argument("host")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def ssh(lab_name: str | None, timeout: float, host: str, command: tuple[str, ...]) -> None:
    """Run COMMAND on HOST (an interactive shell without one); `xenlab ssh h1 -- CMD` works too.
    A static lab's hosts (--lab FILE) are reached as its `ssh:` says."""
    lab = _acting_lab(lab_name)
    machine = lab.host(host)
    if not command or command == ("--",):
        os.execvp("ssh", machine.ssh_argv())
    result = machine.run(remote_command(command), timeout=timeout)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.exit(result.status)


@main.command("console")
@lab_option
@click.argument("host")
@click.option("--follow", "-f", is_flag=True, help="keep printing new lines (Ctrl-C to stop)")
@click.option("--lines", "-n", default=50, show_default=True, help="how many last lines")
def console_(lab_name: str | None, host: str, follow: bool, lines: int) -> None:
    """The host's serial log: Xen and dom0 (or the services node's kernel and systemd)."""
    lab = _acting_lab(lab_name)
    machine = lab.host(host)
    if not machine.can("console"):
        raise machine.unsupported("console")
    sys.stdout.write(machine.serial_tail(lines) + "\n")
    if follow:
        import select

        with open(machine.serial_log, "rb") as f:
            f.seek(0, 2)
            while True:
                chunk = f.read()
                if chunk:
                    sys.stdout.write(chunk.decode(errors="replace").replace("\r", ""))
                    sys.stdout.flush()
                else:
                    select.select([], [], [], 0.3)  # a file is always "readable": wait a little



# -- control --------------------------------------------------------------------------
@main.command()
@lab_option
@click.argument("host")
@click.argument("action", type=click.Choice(["off", "on", "reset", "cycle", "freeze", "thaw"]))
def power(lab_name: str | None, host: str, action: str) -> None:
    """Power a host off (hard), on, reset it, freeze or thaw its vCPUs (a static lab's host:
    off, on, reset, cycle through its BMC)."""
    lab = _acting_lab(lab_name)
    lab.host(host).power(action)
    console.print(f"{host}: power {action} done")


@main.command()
@lab_option
@click.argument("host")
@click.argument("network")
@click.argument("state", type=click.Choice(["down", "up"]))
def link(lab_name: str | None, host: str, network: str, state: str) -> None:
    """Pull or plug the cable of HOST's NIC on NETWORK (carrier down/up); refused, with the
    reason, where xenlab controls no switch (a static lab)."""
    lab = _acting_lab(lab_name)
    lab.host(host).link(network, state == "up")
    console.print(f"{host}: link {network} {state}")


@main.group()
def checkpoint() -> None:
    """Whole-lab checkpoints: RAM and disks of every host, taken together."""


@checkpoint.command("save")
@lab_option
@click.argument("tag")
def checkpoint_save(lab_name: str | None, tag: str) -> None:
    lab = _pick_lab(lab_name)
    seconds = lab.checkpoint_save(tag)
    console.print(f"checkpoint {tag} saved in {seconds:.2f}s")


@checkpoint.command("restore")
@lab_option
@click.argument("tag")
def checkpoint_restore(lab_name: str | None, tag: str) -> None:
    lab = _pick_lab(lab_name)
    seconds = lab.checkpoint_restore(tag)
    console.print(f"lab {lab.name} restored to {tag} in {seconds:.2f}s (every host answers SSH)")


@checkpoint.command("list")
@lab_option
@click.option("--json", "as_json", is_flag=True)
def checkpoint_list(lab_name: str | None, as_json: bool) -> None:
    lab = _pick_lab(lab_name)
    rows = [{"tag": c.tag, "created_at": c.created_at, "save_seconds": c.save_seconds} for c in lab.state.checkpoints]
    if as_json:
        out.print_json(json.dumps({"schema": "xenlab.checkpoints/1", "lab": lab.name, "checkpoints": rows}))
        return
    if not rows:
        out.print("no checkpoints")
    for r in rows:
        out.print(f"{r['tag']}  saved {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r['created_at']))} "
                  f"in {r['save_seconds']:.2f}s")


@checkpoint.command("delete")
@lab_option
@click.argument("tag")
def checkpoint_delete(lab_name: str | None, tag: str) -> None:
    lab = _pick_lab(lab_name)
    lab.checkpoint_delete(tag)
    console.print(f"checkpoint {tag} deleted")


# -- schema and validate ----------------------------------------------------------------
@main.command()
@click.option("--kind", type=click.Choice(["lab", "scenario", "profile", "matrix", "results"]), default="lab",
              show_default=True, help="which kind of xenlab file")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="write every kind's schema into this directory as KIND.schema.json (docs/schema in the repository)")
def schema(kind: str, out_dir: str | None) -> None:
    """Print the JSON Schema of a kind of xenlab file (editors check and complete files with it)."""
    from .files import FILE_KINDS, json_schema_text, schema_file_name

    if out_dir is None:
        out.print(json_schema_text(kind), markup=False, highlight=False, end="")
        return
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for each in FILE_KINDS:
        (Path(out_dir) / schema_file_name(each)).write_text(json_schema_text(each))
    console.print(f"wrote {', '.join(schema_file_name(k) for k in FILE_KINDS)} into {out_dir}", markup=False)


@main.command()
@click.argument("files", nargs=-1, required=True)
def validate(files: tuple[str, ...]) -> None:
    """Check xenlab files (lab, scenario, qualification profile, matrix, results) as their own
    commands would, without starting anything; stops at the first bad one (exit 2)."""
    from .files import validate_file

    for name in files:
        console.print(validate_file(name).line, markup=False)


@main.command()
@click.argument("matrix_file")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output (schema xenlab.matrix/1)")
@click.option("--available-mib", type=click.IntRange(0), default=None,
              help="plan for this much free memory (default: what this machine has available now)")
@click.option("--cores", type=click.IntRange(1), default=None,
              help="plan for this many CPU cores (default: the ones this process may use)")
def matrix(matrix_file: str, as_json: bool, available_mib: int | None, cores: int | None) -> None:
    """Check a hardware matrix file and show its labs, in waves that fit in memory and on the
    cores together."""
    from .lab.resources import available_cores
    from .lab.resources import available_mib as available_now
    from .matrix import load_matrix

    plan = load_matrix(matrix_file, available_mib if available_mib is not None else available_now(),
                       cores or available_cores())
    if as_json:
        out.print_json(json.dumps(plan.to_json()))
        return
    axes = " x ".join(f"{axis} [{', '.join(values)}]" for axis, values in plan.axes.items())
    console.print(f"{matrix_file}: valid matrix {plan.matrix}: {axes} -> {len(plan.combinations)} labs", markup=False)
    needed = {c.name: c.needed_mib for c in plan.combinations}
    vcpus = {c.name: c.needed_vcpus for c in plan.combinations}
    console.print(f"  planned for {plan.available_mib} MiB of free memory and {plan.cores} cores", markup=False)
    for index, wave in enumerate(plan.waves, start=1):
        console.print(f"  wave {index}: " + ", ".join(f"{n} ({needed[n]} MiB, {vcpus[n]} vCPUs)" for n in wave),
                      markup=False)
    if plan.too_big:
        console.print(f"  too big for {plan.available_mib} MiB even alone: {', '.join(plan.too_big)}", markup=False)


# -- simulator ------------------------------------------------------------------------
@main.group()
def sim() -> None:
    """The XAPI simulator."""


@sim.command("serve")
@click.option("--port", default=0, show_default=True,
              help="TCP port on 127.0.0.1 for the control API; host i listens on port+1+i (0: free ports)")
@click.option("--hosts", default=3, show_default=True, type=click.IntRange(1, 250), help="simulated hosts")
@click.option("--pool", is_flag=True, help="join every host into h1's pool (default: standalone hosts)")
@click.option("--virtual-clock", is_flag=True,
              help="simulated time only moves through POST /_sim/advance (event.from still waits in real time)")
@click.option("--realtime", is_flag=True, hidden=True, help="the default now; kept for old scripts")
@click.option("--loopback-addresses", is_flag=True,
              help="host i is 127.0.0.<i+1> on one shared port, so clients that follow HOST_IS_SLAVE "
                   "to the master's address (Xen Orchestra) reach it")
@click.option("--password-file", type=click.Path(dir_okay=False),
              help="file whose first line is root's password (default: a generated one in a new 0600 file)")
@click.option("--time-scale", default=1.0, show_default=True, type=click.FloatRange(0.001, 1.0),
              help="xapi operations (join, HA enable, start, migrate) take their modelled duration times this; "
                   "HA timeouts are not scaled")
@click.option("--bmc-dir", type=click.Path(file_okay=False),
              help="give every host a virtual BMC (IPMI on 127.0.0.1) powering it; credentials kept here (0700)")
@click.option("--guest-agent-delay", default=3.0, show_default=True, type=click.FloatRange(0, 600),
              help="simulated seconds from a guest's boot to its guest agent's report (VM_guest_metrics, IPs)")
def sim_serve(port: int, hosts: int, pool: bool, virtual_clock: bool, realtime: bool, loopback_addresses: bool,
              password_file: str | None, time_scale: float, bmc_dir: str | None, guest_agent_delay: float) -> None:
    """Serve a simulated XAPI pool on 127.0.0.1 until interrupted.

    With --bmc-dir, a static lab file can point at it as at a rack of XCP-ng hosts with
    BMCs (docs/real-hosts.md): xapi on each host's port, power through IPMI. The control API
    (/_sim/) wants the control token, written to a 0600 file next to the password file, in an
    X-Xenlab-Sim-Token header; the token file (and a generated password file) go when it stops."""
    from .lab.bmc import SimBmcs
    from .sim.server import read_password_file, serve_forever

    if password_file:
        try:
            read_password_file(password_file)
        except ValueError as e:
            raise click.UsageError(str(e)) from None
    bmcs = SimBmcs(Path(bmc_dir)) if bmc_dir else None
    try:
        serve_forever(port=port, hosts=hosts, realtime=not virtual_clock, password_file=password_file, pool=pool,
                      loopback_addresses=loopback_addresses, extras=bmcs.start if bmcs else None,
                      time_scale=time_scale, agent_s=guest_agent_delay)
    finally:
        if bmcs is not None:
            bmcs.stop()


from .cli_cache import cache as _cache
from .cli_cache import images as _images
from .cli_qualify import qualify as _qualify  # added here so `python -m xenlab.cli qualify` has it too
from .cli_report import history as _history
from .cli_run import run as _run
from .cli_shard import report_group as _report_group  # `report RESULTS` and `report merge`

main.add_command(_run)
main.add_command(_qualify)
main.add_command(_images)
main.add_command(_cache)
main.add_command(_report_group)
main.add_command(_history)

if __name__ == "__main__":
    main()
