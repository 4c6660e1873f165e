"""The pytest face of xenlab: labs, hosts, guests, faults and metrics as fixtures.

Loaded through the `pytest11` entry point of an installed xenlab. Nothing boots unless a
test asks for the `lab` fixture (directly or through `hosts`, `hostA1`, ...): collection,
`--collect-only` and tests that do not need a lab never start QEMU.

Options: `--lab NAME_OR_FILE`, `--keep-lab`, `--reuse-lab`, `--accel auto|kvm|tcg`,
`--xenlab-report DIR`. Markers: `@pytest.mark.lab("xen-pool3")` (this test needs that lab;
it wins over --lab) and `@pytest.mark.isolated` (the lab goes back to its `ready`
checkpoint, saved right after bring-up, before the test).

Tests that need the same lab share one boot: the lab is a session-scoped fixture
parametrized by the lab choice, so test ids carry the lab name (`test_x[xen-pool2]`)
and tests are grouped by lab. Under pytest-xdist every worker has its own lab, named
with the worker id (`xen-pool2-gw0`).

Scenario files (`scenarios/*.yaml`, or any YAML file named on the command line) are
pytest items (`xenlab.fixtures.scenarios`): they take the scenario session's own steps
(`xenlab.scenario.session`) on the lab this session holds, QEMU or sim alike.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .errors import XenlabError
from .fixtures.artifacts import artifact_dir_name, collect_failure_artifacts
from .fixtures.recorders import (
    FaultTracker,
    GuestFactory,
    MetricsRecorder,
    PhaseRecord,
    RecordedTest,
    junit_line,
    raise_problems,
)
from .fixtures.remote import close_testinfra_host, lab_testinfra_hosts
from .fixtures.selection import DEFAULT_LAB, LabChoice, requested_ref, resolve_choice, spec_for_worker, worker_lab_name
from .fixtures.session import LabHandle, LabPolicy, LabProvider, LabRecord
from .lab.contract import Unsupported
from .lab.verbs import HostStep, listening
from .results import RunResults

MARKERS = (
    "lab(name_or_file): run this test on that lab (a name under labs/ or a lab file); wins over --lab",
    "isolated: restore the lab's `ready` checkpoint (saved right after bring-up) before this test",
    "estimate(seconds): this test's expected time, for --xenlab-shard when the history has none",
)


# -- options and configuration -------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xenlab", "xenlab labs of nested Xen hosts")
    group.addoption("--lab", dest="xenlab_lab", metavar="NAME_OR_FILE",
                    help=f"lab for tests without @pytest.mark.lab (default: {DEFAULT_LAB})")
    group.addoption("--keep-lab", dest="xenlab_keep_lab", action="store_true",
                    help="after a failure leave the lab running (untied from pytest) and print how to get in")
    group.addoption("--reuse-lab", dest="xenlab_reuse_lab", action="store_true",
                    help="attach to a lab that is already up (xenlab up) and never bring it down")
    group.addoption("--accel", dest="xenlab_accel", choices=("auto", "kvm", "tcg"),
                    help="acceleration for labs this session brings up (default: the lab file's)")
    group.addoption("--xenlab-report", dest="xenlab_report", metavar="DIR",
                    help="write results JSON, HTML report, failure artifacts (and junit.xml by default) into DIR")
    group.addoption("--xenlab-allow-unmeasured", dest="xenlab_allow_unmeasured", action="store_true",
                    help="a scenario that could not measure something this lab cannot measure is skipped with the "
                         "reason, not failed (it is never passed either way)")
    group.addoption("--xenlab-shard", dest="xenlab_shard", metavar="K/N",
                    help="run shard K of N: whole labs per shard, balanced by earlier runs' durations (docs/ci.md)")
    group.addoption("--xenlab-run-id", dest="xenlab_run_id", metavar="ID",
                    help="the id the shards of one run share (default: $XENLAB_RUN_ID, else the plan's digest)")
    group.addoption("--xenlab-machine", dest="xenlab_machine", metavar="NAME",
                    help="this machine's name in the merged report (default: $XENLAB_MACHINE, else the host name)")
    group.addoption("--xenlab-history", dest="xenlab_history", metavar="DB",
                    help="history database whose durations balance the shards (default: xenlab history's)")
    parser.addini("xenlab_lab_fixtures", "fixtures holding a lab their tests share (--xenlab-shard keeps those "
                  "tests on one shard)", type="linelist", default=[])
    parser.addini("xenlab_default_lab", "lab for tests that neither are marked nor get --lab", default=DEFAULT_LAB)
    parser.addini("xenlab_up_timeout", "seconds a lab may take to come up", default="900")


class XenlabSession:
    """The plugin's state for one pytest process (one per xdist worker)."""

    def __init__(self, config: pytest.Config):
        self.config = config
        option = config.option
        invocation = Path(config.invocation_params.dir)
        self.base_dirs = list(dict.fromkeys([invocation, Path(config.rootpath)]))
        self.report_dir = (invocation / option.xenlab_report).resolve() if option.xenlab_report else None
        workerinput = getattr(config, "workerinput", None)
        self.worker: str | None = workerinput["workerid"] if workerinput else None
        self.policy = LabPolicy(keep_on_failure=bool(option.xenlab_keep_lab), reuse=bool(option.xenlab_reuse_lab),
                                accel=option.xenlab_accel, timeout=float(config.getini("xenlab_up_timeout")),
                                collect_inventory=self.report_dir is not None)
        self.default_ref = config.getini("xenlab_default_lab") or DEFAULT_LAB
        self._choices: dict[tuple[str, str], LabChoice] = {}
        self.handles: dict[LabChoice, LabHandle] = {}
        self.lab_records: list[LabRecord] = []
        self.tests: dict[str, RecordedTest] = {}
        self.messages: list[str] = []
        self.written: list[Path] = []
        self.artifacts_collected: set[str] = set()
        self.started = time.monotonic()
        self.shard = None  # this machine's part of a sharded run (fixtures/sharding.ShardRun)

    # -- lab choice --------------------------------------------------------------------
    def choice_for(self, marker_args: tuple | None) -> LabChoice:
        ref, source = requested_ref(marker_args, self.config.option.xenlab_lab, self.default_ref)
        key = (ref, source)
        if key not in self._choices:
            self._choices[key] = resolve_choice(ref, source, self.base_dirs, self.policy.reuse)
        return self._choices[key]

    def lab_name(self, choice: LabChoice) -> str:
        return worker_lab_name(choice.name, self.worker)

    # -- progress ----------------------------------------------------------------------
    def progress(self, subject: str, message: str) -> None:
        line = f"xenlab {time.monotonic() - self.started:7.1f}s {subject}: {message}"
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None or self.config.option.verbose < 0:
            return
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(line)
        else:
            reporter.write_line(line)

    # -- labs --------------------------------------------------------------------------
    def open_lab(self, choice: LabChoice, spec, provider: LabProvider) -> LabHandle:
        handle = LabHandle.open(provider, choice, spec, self.policy, self.progress,
                                attach_name=self.lab_name(choice))
        self.handles[choice] = handle
        self.lab_records.append(handle.record)
        return handle

    def close_lab(self, choice: LabChoice) -> None:
        handle = self.handles.get(choice)
        if handle is None or handle.closed:
            return
        message = handle.close()
        if message:
            self.messages.append(message)

    def handle_of(self, item: pytest.Item) -> LabHandle | None:
        choice = lab_choice_of(item)
        return self.handles.get(choice) if choice is not None else None

    # -- per test ----------------------------------------------------------------------
    def record_of(self, item: pytest.Item) -> RecordedTest:
        record = self.tests.get(item.nodeid)
        if record is None:
            choice = lab_choice_of(item)
            record = RecordedTest(item.nodeid, item.location[0], self.lab_name(choice) if choice else "")
            self.tests[item.nodeid] = record
        return record

    def on_report(self, item: pytest.Item, report: pytest.TestReport) -> None:
        handle = self.handle_of(item)
        if lab_choice_of(item) is None and item.nodeid not in self.tests:
            return  # neither a lab test nor one that recorded metrics: not part of the results
        record = self.record_of(item)
        record.phases[report.when] = PhaseRecord(report.start, report.stop, report.outcome,
                                                 report.longreprtext if report.failed else "")
        if handle is None:
            return
        if report.when == "teardown":
            handle.dirty = True
        if report.failed:
            if item.nodeid not in handle.failed_tests:
                handle.failed_tests.append(item.nodeid)
            if not handle.closed:
                self.attach_evidence(item, report, handle)

    def attach_evidence(self, item: pytest.Item, report: pytest.TestReport, handle: LabHandle) -> None:
        machines = list(handle.lab.machines.values())
        if self.report_dir is None:
            tails = "\n".join(f"--- {m.name} ---\n{m.serial_tail(15)}" for m in machines)
            report.sections.append(("xenlab serial consoles", tails))
            return
        dest = self.report_dir / "artifacts" / artifact_dir_name(item.nodeid)
        if item.nodeid in self.artifacts_collected:
            report.sections.append(("xenlab artifacts", f"artifacts in {dest} (from the earlier failing phase)"))
            return
        self.artifacts_collected.add(item.nodeid)
        index = collect_failure_artifacts(machines, dest)
        lines = [f"artifacts in {dest}"] + [f"  {f.relative_to(dest)}" for f in index.files]
        lines += [f"  problem: {p}" for p in index.problems]
        report.sections.append(("xenlab artifacts", "\n".join(lines)))

    # -- session end -------------------------------------------------------------------
    def results(self) -> list[tuple[str, RunResults]]:
        """One RunResults per lab of this process (tests without a lab go with the only lab,
        or into their own results when there are several)."""
        by_lab: dict[str, list[RecordedTest]] = {}
        for record in self.tests.values():
            by_lab.setdefault(record.lab, []).append(record)
        labs = {r.name: r for r in self.lab_records}
        names = list(dict.fromkeys([*labs, *by_lab]))
        if len(labs) == 1 and "" in by_lab:
            only = next(iter(labs))
            by_lab.setdefault(only, []).extend(by_lab.pop(""))
            names.remove("")
        out = []
        for name in names:
            lab = labs.get(name)
            out.append((name, RunResults(
                lab=name, accel=lab.accel if lab else "", bringup=lab.bringup if lab else {},
                inventory=lab.inventory if lab else [],
                scenarios=[t.to_scenario() for t in by_lab.get(name, []) if t.phases])))
        return out

    def write_results(self) -> None:
        if self.report_dir is None:
            return
        from .report import write_reports

        produced = self.results()
        for name, results in produced:
            stem = "" if (len(produced) == 1 and self.worker is None) else f"-{name or 'no-lab'}"
            results = self.shard.stamp(results) if self.shard is not None else results
            self.written.append(results.write(self.report_dir / f"results{stem}.json"))
            try:
                self.written.append(write_reports(results, self.report_dir, stem=f"report{stem}").html)
            except Exception as exc:  # noqa: BLE001 - the JSON is written; `xenlab report` can retry
                self.messages.append(f"HTML report for {name or 'no lab'} failed: {exc}")


STATE = pytest.StashKey[XenlabSession]()
SIGTERM_BEFORE = pytest.StashKey[object]()


def _terminate_as_interrupt(signum: int, frame) -> None:
    """SIGTERM (a CI job cancelled, `kill`) ends the session as Ctrl-C does: pytest then
    tears the session's fixtures down, so its labs go down and every process recorded in
    their run directories (machines a `xenlab run` of a test started too) is stopped."""
    raise KeyboardInterrupt(f"stopped by signal {signum}: the session's labs are taken down")


def xenlab_session(config: pytest.Config) -> XenlabSession:
    return config.stash[STATE]


def lab_choice_of(item: pytest.Item) -> LabChoice | None:
    own = getattr(item, "xenlab_choice", None)  # scenario items choose their lab themselves
    if isinstance(own, LabChoice):
        return own
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    choice = callspec.params.get("lab_choice")
    return choice if isinstance(choice, LabChoice) else None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    session = XenlabSession(config)
    config.stash[STATE] = session
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        config.stash[SIGTERM_BEFORE] = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    if session.report_dir is not None:
        session.report_dir.mkdir(parents=True, exist_ok=True)
        if not config.option.xmlpath and session.worker is None:
            config.option.xmlpath = str(session.report_dir / "junit.xml")
    if config.option.xenlab_shard and getattr(config.option, "numprocesses", None):
        raise pytest.UsageError("--xenlab-shard gives this machine its part of the run: do not combine it with -n")
    if config.option.xenlab_lab:
        try:  # a bad --lab is a usage error, reported before anything is collected
            session.choice_for(None)
        except XenlabError as exc:
            raise pytest.UsageError(f"--lab {config.option.xenlab_lab}: {exc}") from None


def pytest_unconfigure(config: pytest.Config) -> None:
    before = config.stash.get(SIGTERM_BEFORE, None)
    if before is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, before)


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    """Scenario files (`scenarios/*.yaml`, or a YAML file named on the command line)."""
    from .fixtures.scenarios import ScenarioFile, is_scenario_file

    given = any(Path(arg.split("::")[0]).resolve() == file_path.resolve() for arg in parent.config.args)
    if is_scenario_file(file_path, given):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "lab_choice" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("lab")
    try:
        choice = xenlab_session(metafunc.config).choice_for(marker.args if marker else None)
    except XenlabError as exc:
        problem = f"{metafunc.definition.nodeid}: {exc}"
    else:
        metafunc.parametrize("lab_choice", [choice], ids=[choice.id], indirect=True, scope="session")
        return
    pytest.fail(problem, pytrace=False)  # outside the except: the message alone, no chained traceback


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group tests by lab (stable within a lab) so each lab boots once, then goes; with
    --xenlab-shard keep this machine's shard (fixtures/sharding.py)."""
    order: dict[LabChoice | None, int] = {}
    for item in items:
        order.setdefault(lab_choice_of(item), len(order))
    if len([c for c in order if c is not None]) > 1:
        items.sort(key=lambda item: order[lab_choice_of(item)])
    if config.option.xenlab_shard:
        from .fixtures.sharding import select_shard

        state = xenlab_session(config)
        state.shard = select_shard(config, items, lab_choice_of, state.report_dir)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Record every host verb the test calls (succeed, wait_for_unit, copy_to_host, ...) as a
    nested step of the test: JUnit properties `host_step.N`, and substeps in results and HTML."""
    if lab_choice_of(item) is None:
        return (yield)
    record = xenlab_session(item.config).record_of(item)

    def on_step(step: HostStep) -> None:
        record.host_steps.append(step)
        item.user_properties.append((f"host_step.{len(record.host_steps)}", junit_line(step)))

    with listening(on_step):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    report = yield
    if call.excinfo is not None and isinstance(call.excinfo.value, Unsupported):
        # a host asked for what its lab cannot do: skipped, naming the capability (never passed, no traceback)
        path, line, _ = item.reportinfo()
        report.outcome = "skipped"
        report.longrepr = (str(path), (line or 0) + 1, f"Skipped: {call.excinfo.value}")
    state = xenlab_session(item.config)
    state.on_report(item, report)
    if state.shard is not None:
        state.shard.on_report(report)
    return report


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(STATE, None)
    if state is None:
        return
    for choice in list(state.handles):  # labs whose fixture teardown never ran (interrupted)
        state.close_lab(choice)
    state.write_results()
    if state.shard is not None:
        state.shard.finish(int(session.exitstatus))


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None or not (state.lab_records or state.messages or state.written):
        return
    terminalreporter.section("xenlab")
    for record in state.lab_records:
        how = "reused" if record.reused else f"up in {record.up_seconds}s"
        terminalreporter.write_line(f"lab {record.name}: {how}, accel {record.accel or '?'}")
    for message in state.messages:
        terminalreporter.write_line(message)
    for path in state.written:
        terminalreporter.write_line(f"wrote {path}")


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def xenlab_lab_provider() -> LabProvider:
    """Where labs come from; override in a conftest to provide labs another way."""
    return LabProvider()


@pytest.fixture(scope="session")
def lab_choice(request: pytest.FixtureRequest) -> LabChoice:
    """Which lab this test runs on (marker, else --lab, else the default); boots nothing."""
    if hasattr(request, "param"):
        return request.param
    return xenlab_session(request.config).choice_for(None)


@pytest.fixture(scope="session")
def lab_spec(lab_choice: LabChoice, xenlab_lab_provider: LabProvider, request: pytest.FixtureRequest):
    """The chosen lab's spec, under this worker's lab name; boots nothing."""
    from .spec import load_lab

    state = xenlab_session(request.config)
    if lab_choice.path is not None:
        return spec_for_worker(load_lab(lab_choice.path), state.worker)
    return xenlab_lab_provider.attach(state.lab_name(lab_choice)).spec


@pytest.fixture(scope="session")
def lab(lab_choice: LabChoice, lab_spec, xenlab_lab_provider: LabProvider, request: pytest.FixtureRequest):
    """The running lab, shared by every test that chose it; brought up once per session."""
    state = xenlab_session(request.config)
    handle = state.open_lab(lab_choice, lab_spec, xenlab_lab_provider)
    try:
        yield handle.lab
    finally:
        state.close_lab(lab_choice)


@pytest.fixture(scope="session")
def hosts(lab) -> list:
    """The lab's Xen hosts in lab-file order (the services node is `lab.services`)."""
    return list(lab.hosts)


def _nth_host(request: pytest.FixtureRequest, lab_spec, index: int, fixture: str):
    names = list(lab_spec.hosts)
    if len(names) <= index:
        pytest.skip(f"{fixture} needs a lab with at least {index + 1} Xen hosts; lab {lab_spec.name} has "
                    f"{len(names)} ({', '.join(names)})")
    return request.getfixturevalue("lab").hosts[index]


@pytest.fixture(scope="session")
def hostA1(lab_spec, request: pytest.FixtureRequest):
    """The first host of pool A (the lab's first Xen host)."""
    return _nth_host(request, lab_spec, 0, "hostA1")


@pytest.fixture(scope="session")
def hostA2(lab_spec, request: pytest.FixtureRequest):
    """The second host of pool A (the lab's second Xen host)."""
    return _nth_host(request, lab_spec, 1, "hostA2")


@pytest.fixture(scope="session")
def hostB1(lab_spec, request: pytest.FixtureRequest):
    """A host outside pool A (the lab's third Xen host)."""
    return _nth_host(request, lab_spec, 2, "hostB1")


@pytest.fixture
def testinfra_hosts(lab) -> Iterator[dict]:
    """A testinfra Host per lab machine with a shell, by name; new connections for every test.
    On a lab whose hosts have no shell (a simulator, an xapi-only rack) the test is skipped
    with that reason, never run over an empty dict."""
    built = lab_testinfra_hosts(lab)
    try:
        yield built
    finally:
        for host in built.values():
            close_testinfra_host(host)


@pytest.fixture
def metrics(request: pytest.FixtureRequest) -> MetricsRecorder:
    """`metrics.record(name, value, unit)`: a JUnit property and a figure of the results.

    Properties go to the test's `user_properties`, which is what `record_property` does,
    without its warning under the default junit_family (xunit2 still writes them)."""
    recorder = MetricsRecorder(lambda name, value: request.node.user_properties.append((name, value)))
    xenlab_session(request.config).record_of(request.node).metrics = recorder
    return recorder


@pytest.fixture
def vm_factory(lab, request: pytest.FixtureRequest) -> Iterator[GuestFactory]:
    """`vm_factory.create(name=None, host=None, memory_mib=..)`: guests of pool A (formed if
    the lab has none), each destroyed after the test whatever happened."""
    from . import drivers

    prefix = re.sub(r"[^a-z0-9]+", "-", request.node.originalname.lower())[:24].strip("-")
    members = [h.name for h in lab.hosts[:2]]
    factory = GuestFactory(drivers.drivers_for(lab).toolstack, members, prefix or "guest")
    try:
        yield factory
    finally:
        raise_problems("guests that could not be destroyed", factory.destroy_all())


@pytest.fixture
def fault(lab) -> Iterator[FaultTracker]:
    """`fault("power_cut", "h2", ...)` through the lab's fault injector; every fault healed after the test."""
    from . import drivers

    injector = drivers.drivers_for(lab).faults
    tracker = FaultTracker(lambda kind, target, **params: injector.inject(kind, target, **params),
                           lambda handle: handle.heal())
    try:
        yield tracker
    finally:
        raise_problems("faults that could not be healed", tracker.heal_all())


@pytest.fixture(autouse=True)
def _xenlab_isolation(request: pytest.FixtureRequest) -> None:
    """@pytest.mark.isolated: the lab back at `ready` before the test (only if a test ran since)."""
    if request.node.get_closest_marker("isolated") is None or "lab_choice" not in request.fixturenames:
        return
    request.getfixturevalue("lab")
    state = xenlab_session(request.config)
    handle = state.handle_of(request.node)
    if handle is not None and handle.dirty:
        handle.restore_ready(lambda subject, message: state.progress(handle.lab.name,
                                                                     f"{message} for {request.node.name}"))
        handle.dirty = False
