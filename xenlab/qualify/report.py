"""A qualification run's report in DIR: qualification.json (schema xenlab.qualify/1),
qualification-junit.xml (one testcase per check; not run = skipped) and one
self-contained qualification.html (verdicts first, then figures against thresholds,
plots, the inventory), built from the run report's HTML and plot helpers.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from ..report import plots
from ..report.html import esc, image, inventory_section, outcome, page, table, when
from ..report.units import Threshold, format_value
from ..results import HostInventory
from .model import CheckOutcome, QualifyReport

JSON_NAME, JUNIT_NAME, HTML_NAME = "qualification.json", "qualification-junit.xml", "qualification.html"
RESULTS_NAME = "results.json"  # the same run as xenlab.results/2, for `xenlab history add`
VERDICT_CLASS = {"passed": "passed", "failed": "failed", "not_run": "skipped", "not_measured": "not_measured"}


@dataclass(frozen=True)
class QualifyFiles:
    json: Path
    junit: Path
    html: Path
    results: Path


def write_report(report: QualifyReport, out_dir: Path) -> QualifyFiles:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = QualifyFiles(out_dir / JSON_NAME, out_dir / JUNIT_NAME, out_dir / HTML_NAME, out_dir / RESULTS_NAME)
    files.json.write_text(report.model_dump_json(by_alias=True, indent=2), encoding="utf-8")
    files.junit.write_bytes(render_junit(report))
    files.html.write_text(render_html(report), encoding="utf-8")
    report.as_results().write(files.results)
    return files


def render_junit(report: QualifyReport) -> bytes:
    suite = ET.Element("testsuite", name=f"qualify {report.profile} on {report.lab}", tests=str(len(report.checks)),
                       failures=str(report.count("failed")),
                       skipped=str(report.count("not_run") + report.count("not_measured")),
                       time=f"{report.ended_at - report.started_at:.2f}")
    for check in report.checks:
        case = ET.SubElement(suite, "testcase", classname=f"qualify.{check.check}", name=check.id,
                             time=f"{check.seconds:.2f}")
        if check.verdict == "failed":
            ET.SubElement(case, "failure", message=check.reason[:500]).text = check.reason
        elif check.verdict in ("not_run", "not_measured"):  # JUnit has no third outcome: never a pass
            ET.SubElement(case, "skipped", message=check.reason[:500])
        if check.figures:
            ET.SubElement(case, "system-out").text = "\n".join(
                f"{f.name} = {f.text}" + (f" (threshold {f.threshold})" if f.threshold else "") for f in check.figures)
    return ET.tostring(ET.ElementTree(suite).getroot(), encoding="utf-8", xml_declaration=True)


# -- HTML ------------------------------------------------------------------------------
def _verdict(check: CheckOutcome) -> str:
    return outcome(VERDICT_CLASS[check.verdict]).replace(">skipped<", ">not run<")


def _summary(report: QualifyReport) -> str:
    rows = [[esc(c.check), esc(c.subject), _verdict(c), esc(f"{c.seconds:.1f} s"), esc(c.reason)]
            for c in report.checks]
    return "<section><h2>Verdicts</h2>" + table(["check", "on", "verdict", "took", "why"], rows, {3}) + "</section>"


def _figures(report: QualifyReport) -> str:
    rows = []
    for c in report.checks:
        for f in c.figures:
            judged = "" if f.passed is None else outcome("passed" if f.passed else "failed")
            rows.append([esc(c.id), esc(f.name), esc(f.text), esc(f.threshold or "(recorded)"), judged,
                         esc(f.meaning)])
    if not rows:
        return "<section><h2>Figures</h2><p class=\"small\">no check measured anything.</p></section>"
    return ("<section><h2>Figures against thresholds</h2>"
            "<p class=\"small\">Every number a check measured, with the profile's threshold where it has one.</p>"
            + table(["check", "figure", "measured", "threshold", "", "what it is"], rows, {2}) + "</section>")


def _threshold_value(checks: list[CheckOutcome], figure: str, unit: str) -> float | None:
    texts = {f.threshold for c in checks for f in c.figures if f.name == figure and f.threshold}
    if len(texts) != 1:
        return None
    threshold = Threshold.parse(texts.pop())
    from ..report.units import convert

    try:
        return convert(threshold.value, threshold.unit or unit, unit)
    except ValueError:
        return None


def _plots(report: QualifyReport) -> str:
    parts = ["<section><h2>Plots</h2>"]
    network = [c for c in report.checks if c.check == "network"]
    bars = [(c.subject, f.value, f.passed) for c in network for f in c.figures if f.name == "throughput"]
    bars += [(f"guests: {c.subject}", f.value, f.passed) for c in network for f in c.figures
             if f.name == "guest_throughput"]
    parts.append("<h3>TCP throughput</h3><p class=\"small\">Megabits per second iperf3 moved from one host's dom0 "
                 "to another's on each lab network, and one guest sent another on a second host (counted by the "
                 "receiving guest); green met the threshold, red missed it; the dashed line is dom0's.</p>")
    parts.append(image(plots.bar_plot(bars, "Mbit/s", "TCP throughput per path",
                                            _threshold_value(network, "throughput", "Mbit/s")),
                             "dom0-to-dom0 throughput"))
    storage = [c for c in report.checks if c.check == "storage"]
    bars = [(f"{c.subject} {f.name.replace('_', ' ')}", f.value, f.passed) for c in storage for f in c.figures
            if f.unit == "MiB/s"]
    parts.append("<h3>Storage sequential throughput</h3><p class=\"small\">MiB per second fio read and wrote in "
                 "1 MiB direct I/O blocks, on the shared SR (NFS) and on dom0's local disk.</p>")
    parts.append(image(plots.bar_plot(bars, "MiB/s", "fio sequential throughput"), "storage throughput"))
    downtimes = [v for c in report.checks if c.check == "migration"
                 for v in (c.details.get("series", {}).get("downtime") or [])]
    parts.append("<h3>Live-migration downtimes</h3><p class=\"small\">Each live migration's guest downtime: the "
                 "longest silence in the guest's 10 ms heartbeats around the switch-over; the dashed line is the "
                 "median.</p>")
    parts.append(image(plots.distribution_plot(downtimes, "s", "guest downtime per live migration"),
                             "migration downtimes"))
    return "".join(parts) + "</section>"


def _inventory_details(inventory: list[HostInventory]) -> str:
    if not inventory:
        return ""
    rows = [[esc(i.name), esc(i.cpu_microcode or "none reported"), "<br>".join(esc(n) for n in i.nic_details) or "?",
             esc(i.iommu or "?"), esc(i.xen_caps or "?"), esc(" ".join(i.virt_caps) or "?"),
             f"<code>{esc(i.xen_commandline)}</code>"] for i in inventory]
    return ("<section><h3>Hardware and hypervisor details</h3>"
            + table(["host", "microcode", "NICs (ethtool -i, link)", "IOMMU", "Xen guest ABIs", "virt_caps",
                     "Xen command line"], rows) + "</section>")


def _log_lines(report: QualifyReport) -> str:
    rows = [[esc(c.subject), "<br>".join(esc(line) for line in c.details.get("unexpected", [])[:20])]
            for c in report.checks if c.check == "stability" and c.details.get("unexpected")]
    if not rows:
        return ""
    return ("<section><h3>Unexpected log lines</h3><p class=\"small\">Warnings or worse no allow-pattern of the "
            "profile explains (first 20 per host).</p>" + table(["host", "lines"], rows) + "</section>")


def render_html(report: QualifyReport) -> str:
    css = "pass" if report.passed else "fail"
    phases = ", ".join(f"{k} {format_value(v, 's')}" for k, v in report.phase_seconds.items())
    body = [f"<h1>Hardware qualification: {esc(report.lab)}</h1>",
            (f"<p class=\"meta\">profile {esc(report.profile)} ({esc(report.profile_file)}); {esc(report.backend)} lab, "
            f"accel {esc(report.accel)}; {esc(when(report.started_at))} to {esc(when(report.ended_at))}; "
            f"xenlab {esc(report.xenlab_version)}</p>"),
            f"<div class=\"verdict {css}\">{esc(report.verdict)}</div>",
            _summary(report), _figures(report), _plots(report), _log_lines(report),
            inventory_section(report.inventory), _inventory_details(report.inventory),
            f"<p class=\"small\">Time per phase: {esc(phases or 'none')}.</p>"]
    return page(f"qualification {report.lab}", body)
