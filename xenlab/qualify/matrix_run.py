"""A qualification suite over a hardware matrix: each combination is a lab of its own (its
hardware from the matrix file), brought up, qualified and taken down, wave after wave (a
wave is the labs that fit in memory together, as `xenlab.matrix` plans them). One report
puts the combinations side by side, the combination table first; each combination keeps
its own full report in a directory of its name."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import Field

from ..errors import SpecError, XenlabError
from ..lab import Lab, running_labs
from ..matrix import Combination, MatrixPlan
from ..report.html import esc, outcome, page, table, when
from ..report.qualification import SuiteSpec, load_profile
from ..waiting import Progress, quiet
from .model import QModel, QualifyReport
from .report import render_junit
from .suite import PHASES, QualifyPlan, run_qualify

MATRIX_SCHEMA = "xenlab.qualify-matrix/1"
PHASE_ORDER = {phase: index for index, phase in enumerate(PHASES)}
# The figures a reader compares across combinations first: (check, figure, how to sum up many).
KEY_FIGURES = (("boot", "to_ssh", max), ("network", "throughput", min), ("storage", "seq_read", min),
               ("migration", "downtime_max", max))


class MatrixRow(QModel):
    """One combination's outcome in the matrix report."""

    name: str
    hardware: dict[str, str]
    verdict: str  # passed | failed | not_run (never brought up: `reason` says why)
    reason: str = ""
    counts: dict[str, int] = Field(default_factory=dict)  # checks per verdict
    checks: dict[str, str] = Field(default_factory=dict)  # check kind -> its worst verdict
    key_figures: dict[str, str] = Field(default_factory=dict)  # "network throughput" -> "212 Mbit/s"
    report: str = ""  # the combination's own HTML report, relative to the matrix report
    seconds: float = 0.0
    machine: str = ""  # a sharded run (`xenlab report merge`): the machine and shard ("2/3") it ran on
    shard: str = ""


class MatrixReport(QModel):
    schema_: str = Field(MATRIX_SCHEMA, alias="schema")
    profile: str
    matrix: str
    axes: dict[str, list[str]]
    started_at: float
    ended_at: float
    rows: list[MatrixRow]

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.verdict == "passed" for r in self.rows)

    @property
    def verdict(self) -> str:
        passed = sum(r.verdict == "passed" for r in self.rows)
        word = "PASS" if self.passed else "FAIL"
        return f"{word}: {passed} of {len(self.rows)} combinations passed ({self.matrix}, profile {self.profile})"


WORST = {"failed": 3, "not_measured": 2, "not_run": 1, "passed": 0}


def row_of(combination: Combination, report: QualifyReport, seconds: float, report_path: str) -> MatrixRow:
    """The matrix row of a combination that ran: verdict, counts, worst verdict per check kind,
    and the key figures summed up across hosts and paths (the slowest boot, the lowest
    throughput...)."""
    checks: dict[str, str] = {}
    for check in report.checks:
        if WORST[check.verdict] >= WORST.get(checks.get(check.check, "passed"), 0):
            checks[check.check] = check.verdict
    figures: dict[str, str] = {}
    for kind, name, pick in KEY_FIGURES:
        found = [f for c in report.checks if c.check == kind for f in c.figures if f.name == name and f.value is not None]
        if found:
            chosen = pick(found, key=lambda f: f.value)
            figures[f"{kind} {name}"] = chosen.text
    verdict = "passed" if report.passed else "failed"
    failed = [c.id for c in report.checks if c.verdict == "failed"]
    return MatrixRow(name=combination.name, hardware=dict(combination.values), verdict=verdict,
                     reason=", ".join(failed[:6]), counts={v: report.count(v) for v in ("passed", "failed", "not_measured", "not_run")},
                     checks=dict(sorted(checks.items(), key=lambda kv: PHASE_ORDER.get(kv[0], 99))),
                     key_figures=figures, report=report_path, seconds=round(seconds, 1))


def not_run_row(combination: Combination, reason: str, seconds: float = 0.0) -> MatrixRow:
    return MatrixRow(name=combination.name, hardware=dict(combination.values), verdict="not_run", reason=reason,
                     seconds=round(seconds, 1))


def run_matrix(profile_path: str, plan: MatrixPlan, matrix_path: str, out_dir: Path, progress: Progress = quiet,
               resume: bool = False, timeout: float = 1800,
               on_row: Callable[[MatrixRow], None] | None = None) -> MatrixReport:
    """Qualify every combination of `plan` (a validated matrix) with the profile; write and
    return the matrix report. A combination that cannot come up is a row with its reason;
    the others go on. Every lab is taken down after its suite, whatever happened."""
    profile = load_profile(profile_path)
    started_at = time.time()
    by_name = {c.name: c for c in plan.combinations}
    rows: dict[str, MatrixRow] = {}

    def qualify_one(combination: Combination) -> MatrixRow:
        started = time.monotonic()
        say = _prefixed(progress, combination.name)
        if combination.name in running_labs():  # someone's lab: never qualify over it, never take it down
            row = not_run_row(combination, f"a lab named {combination.name} is up already: take it down "
                                           "(`xenlab down`) or give the matrix another `prefix:`")
            if on_row is not None:
                on_row(row)
            return row
        lab = Lab(combination.spec, matrix_path)
        qplan = QualifyPlan(profile, profile_path, profile.suite or SuiteSpec(), lab, running=False,
                            out_dir=out_dir / combination.name)
        try:
            report = run_qualify(qplan, say, resume=resume, timeout=timeout)
            row = row_of(combination, report, time.monotonic() - started, f"{combination.name}/qualification.html")
        except XenlabError as exc:
            row = not_run_row(combination, f"did not come up or broke off: {exc}", time.monotonic() - started)
        finally:
            try:
                lab.down()
            except XenlabError:
                pass  # it never came up: nothing of it runs
        if on_row is not None:
            on_row(row)
        return row

    for index, wave in enumerate(plan.waves, start=1):
        progress("matrix", f"wave {index}/{len(plan.waves)}: {', '.join(wave)}")
        with ThreadPoolExecutor(max_workers=len(wave)) as pool:
            for row in pool.map(qualify_one, [by_name[name] for name in wave]):
                rows[row.name] = row
    for name in plan.too_big:
        rows[name] = not_run_row(by_name[name], f"needs {by_name[name].needed_mib} MiB, more than this machine has "
                                                f"available ({plan.available_mib} MiB)")
    report = MatrixReport(profile=profile.name, matrix=plan.matrix, axes=plan.axes, started_at=started_at,
                          ended_at=time.time(), rows=[rows[c.name] for c in plan.combinations if c.name in rows])
    write_matrix_report(report, out_dir)
    return report


def _prefixed(progress: Progress, name: str) -> Progress:
    return lambda subject, message: progress(f"{name}/{subject}", message)


def write_matrix_report(report: MatrixReport, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "matrix.json").write_text(report.model_dump_json(by_alias=True, indent=2) + "\n")
    (out_dir / "matrix.html").write_text(render_matrix_html(report))
    (out_dir / "matrix-junit.xml").write_bytes(render_matrix_junit(report, out_dir))


def render_matrix_junit(report: MatrixReport, out_dir: Path) -> bytes:
    """Every combination's own test suite (its checks), and one failing case per combination
    that never ran its suite."""
    suites = ET.Element("testsuites", name=f"qualify {report.profile} over {report.matrix}")
    for row in report.rows:
        own = out_dir / row.name / "qualification.json"
        if row.verdict != "not_run" and own.is_file():
            suite = ET.fromstring(render_junit(QualifyReport.model_validate_json(own.read_text())))
            suite.set("name", f"{row.name}: {suite.get('name')}")
            suites.append(suite)
            continue
        suite = ET.SubElement(suites, "testsuite", name=row.name, tests="1", failures="1", skipped="0")
        case = ET.SubElement(suite, "testcase", classname="qualify.matrix", name=row.name)
        ET.SubElement(case, "failure", message=row.reason[:500]).text = row.reason
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


def render_matrix_html(report: MatrixReport) -> str:
    axes = list(report.axes)
    kinds = sorted({k for r in report.rows for k in r.checks}, key=lambda k: PHASE_ORDER.get(k, 99))
    figures = [f"{kind} {name}" for kind, name, _ in KEY_FIGURES]
    sharded = any(r.shard for r in report.rows)
    headers = ["combination", *axes, "verdict", *kinds, *figures, "minutes", "report"]
    headers += ["shard", "machine"] if sharded else []
    rows = []
    for r in report.rows:
        link = f'<a href="{esc(r.report)}">report</a>' if r.report else esc(r.reason)
        rows.append([esc(r.name), *(esc(r.hardware.get(a, "")) for a in axes), outcome(r.verdict),
                     *(outcome(r.checks[k]) if k in r.checks else "-" for k in kinds),
                     *(esc(r.key_figures.get(f, "-")) for f in figures), f"{r.seconds / 60:.1f}", link]
                    + ([esc(r.shard), esc(r.machine)] if sharded else []))
    body = [
        f"<h1>Qualification over a hardware matrix: {esc(report.matrix)}</h1>",
        (f"<p>{esc(report.verdict)}. Profile {esc(report.profile)}; "
        f"{when(report.started_at)} to {when(report.ended_at)}.</p>"),
        "<h2>Combinations</h2>",
        table(headers, rows),
        ("<p>Each check column shows that kind's worst verdict on the combination; key figures are "
        "the slowest boot to dom0 SSH, the lowest dom0-to-dom0 throughput, the lowest sequential "
        "read and the longest migration downtime of its hosts and paths.</p>"),
    ]
    reasons = [f"<li>{esc(r.name)}: {esc(r.reason)}</li>" for r in report.rows if r.reason]
    if reasons:
        body += ["<h2>Why a combination failed or did not run</h2>", "<ul>", *reasons, "</ul>"]
    return page(f"xenlab qualify matrix {report.matrix}", body)


def merge_matrix_reports(shards: list[tuple[Path, str, str]], plan_order: list[str], out_dir: Path
                         ) -> MatrixReport:
    """The matrix report of a sharded run: each shard's (directory, "K/N", machine) rows, naming
    where they ran, in the matrix's order; each combination's own report copied beside it; a
    combination no shard reported is a `not_run` row saying so. Written to out_dir."""
    import shutil

    found: dict[str, MatrixRow] = {}
    reports: list[MatrixReport] = []
    for directory, label, machine in shards:
        path = directory / "matrix.json"
        if not path.is_file():
            continue  # the merge names this shard as failed
        try:
            report = load_matrix_report(path)
        except ValueError as exc:
            raise SpecError(str(path), [(None, f"not a matrix report: {str(exc).splitlines()[0]}")]) from None
        reports.append(report)
        for row in report.rows:
            found[row.name] = row.model_copy(update={"machine": machine, "shard": label})
            own = directory / row.name
            if own.is_dir() and (out_dir / row.name).resolve() != own.resolve():
                shutil.copytree(own, out_dir / row.name, dirs_exist_ok=True)
    rows = [found.get(name) or MatrixRow(name=name, hardware={}, verdict="not_run",
                                         reason="no shard reported this combination (see the shards above)")
            for name in plan_order]
    rows += [row for name, row in found.items() if name not in plan_order]
    first = reports[0] if reports else None
    merged = MatrixReport(profile=first.profile if first else "?", matrix=first.matrix if first else "?",
                          axes=first.axes if first else {},
                          started_at=min((r.started_at for r in reports), default=time.time()),
                          ended_at=max((r.ended_at for r in reports), default=time.time()), rows=rows)
    write_matrix_report(merged, out_dir)
    return merged


def load_matrix_report(path: Path) -> MatrixReport:
    if not path.is_file():
        raise XenlabError(f"{path}: no matrix report")
    return MatrixReport.model_validate_json(path.read_text())
