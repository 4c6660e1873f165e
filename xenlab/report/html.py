"""Self-contained HTML reports of a RunResults: one file, inline CSS, inline images, no URLs.

A report must open years later on a machine without network, and print on paper: so
there is no script, no external stylesheet or font, plots are PNG data URIs and the
timelines are inline SVG.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Iterable

from ..results import Figure, HostInventory, RunResults, ScenarioResult, StepResult, figure_meaning, figure_meanings
from . import plots
from .qualification import QualificationReport
from .units import convert, format_value

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;margin:24px auto;
max-width:1100px;padding:0 16px;color:#212121}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;border-bottom:2px solid #e0e0e0;padding-bottom:3px;margin-top:28px}
h3{font-size:15px;margin:18px 0 6px}.meta{color:#616161}
table{border-collapse:collapse;margin:6px 0 12px;width:100%}th,td{border:1px solid #e0e0e0;padding:3px 6px;
text-align:left;vertical-align:top}th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.passed,.pass{color:#2e7d32;font-weight:600}.failed,.fail{color:#c62828;font-weight:600}
.error{color:#ef6c00;font-weight:600}.skipped{color:#757575}.not_measured{color:#6a1b9a;font-weight:600}
.verdict{font-size:17px;font-weight:700;padding:8px 12px;border-radius:4px;margin:12px 0}
.verdict.pass{background:#e8f5e9;border:2px solid #2e7d32}.verdict.fail{background:#ffebee;border:2px solid #c62828}
img.plot{max-width:100%;display:block;margin:6px 0}.silence{color:#c62828}
span.figure{border-bottom:1px dotted #9e9e9e}svg.timeline{display:block;margin:6px 0}
.small{font-size:12px;color:#616161}code{font-size:12px}
pre{font-size:12px;background:#fafafa;border:1px solid #e0e0e0;padding:4px 6px;margin:2px 0 6px;white-space:pre-wrap}
section{page-break-inside:avoid}
@media print{body{margin:0;max-width:none;font-size:11px}h2{page-break-after:avoid}
.verdict{border-width:1px}section,table,img,svg{page-break-inside:avoid}a{color:inherit;text-decoration:none}}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def figure_text(figure: Figure) -> str:
    text = format_value(figure.value, figure.unit)
    return f"{text} ({figure.note})" if figure.note else text


def page(title: str, body: Iterable[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def table(headers: list[str], rows: Iterable[list[str]], numeric: set[int] = frozenset(),
          below: dict[int, str] | None = None) -> str:
    """Cells are HTML already (escape when building them); `below[i]` is a full-width row after row i."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    below = below or {}
    body = "".join("<tr>" + "".join(f"<td class=\"num\">{c}</td>" if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>"
                   + (f"<tr class=\"below\"><td colspan=\"{len(headers)}\">{below[n]}</td></tr>" if n in below else "")
                   for n, row in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure_name(name: str) -> str:
    """A figure's name with its meaning on hover (the meanings table says it on paper)."""
    meaning = figure_meaning(name)
    return f"<span class=\"figure\" title=\"{esc(meaning)}\">{esc(name)}</span>" if meaning else esc(name)


def meanings_table(names: Iterable[str]) -> str:
    """What each figure shown counts, one line each: a reader needs no source code."""
    described = figure_meanings(list(names))
    unknown = [n for n in dict.fromkeys(names) if not figure_meaning(n)]
    rows = [[f"<code>{esc(n)}</code>", esc(m)] for n, m in described]
    rows += [[f"<code>{esc(n)}</code>", "a figure of the test itself, which xenlab does not describe"] for n in unknown]
    return ("<details open><summary class=\"small\">what the figures mean</summary>"
            + table(["figure", "meaning"], rows) + "</details>") if rows else ""


def heartbeat_section(step: StepResult) -> str:
    """One plot per event of the step (a row per guest) and the measured silences in words."""
    parts = []
    for event, rows in plots.timeline_rows(step.timelines).items():
        uri = plots.heartbeat_plot(event, rows)
        words = "".join(f"<li>{esc(row.guest)}: <b class=\"silence\">{esc(plots.silence_label(row))}</b>"
                        + (" (its heartbeat counter restarted: the guest rebooted)"
                           if any(t.restarted for t in step.timelines if t.guest == row.guest and t.event == event)
                           else "") + "</li>" for row in rows)
        parts.append(f"<div class=\"heartbeats\">{image(uri, f'heartbeats around {event}')}"
                     f"<ul class=\"small\">{words}</ul></div>")
    return "".join(parts)


def command_section(step: StepResult) -> str:
    """What a `run` or `wait: until` step's command did: exit status, checks, its output's tail."""
    c = step.details.get("command")
    if not isinstance(c, dict):
        return ""
    exit_ = c.get("exit")
    said = f"exit {esc(exit_)}" if exit_ is not None else esc(c.get("error") or "no exit status")
    tries = f", {esc(c['attempts'])} tries" if c.get("attempts", 1) != 1 else ""
    checks = "".join(f"<li>{outcome('pass' if k.get('passed') else 'fail')} {esc(k.get('check', ''))}: "
                     f"{esc(k.get('message', ''))}</li>" for k in c.get("checks") or [])
    streams = "".join(f"<div class=\"small\">{name} (last lines)</div><pre>{esc(c[key])}</pre>"
                      for name, key in (("stdout", "stdout_tail"), ("stderr", "stderr_tail")) if c.get(key))
    return (f"<div class=\"command\"><code>{esc(c.get('host', ''))}$ {esc(c.get('command', ''))}</code> "
            f"<span class=\"small\">{said}, {esc(c.get('seconds', '?'))} s{tries}"
            + (f"; {esc(c['error'])}" if c.get("error") and exit_ is not None else "") + "</span>"
            + (f"<ul class=\"small\">{checks}</ul>" if checks else "") + streams + "</div>")


def outcome(value: str) -> str:
    """An outcome as a coloured word: passed, failed, error, skipped, not measured."""
    return f"<span class=\"{esc(value)}\">{esc(value.replace('_', ' '))}</span>"


def image(uri: str | None, alt: str) -> str:
    if uri is None:
        return f"<p class=\"small\">{esc(alt)}: no data in this run.</p>"
    return f"<img class=\"plot\" alt=\"{esc(alt)}\" src=\"{uri}\">"


# -- what the plots show ------------------------------------------------------------------
def walk_steps(steps: list[StepResult]) -> Iterable[StepResult]:
    for step in steps:
        yield step
        yield from walk_steps(step.substeps)


def downtime_samples(results: RunResults) -> list[float]:
    """Every guest downtime of the run in seconds: the scenarios' series, else step figures."""
    values: list[float] = []
    for scenario in results.scenarios:
        series = {k: v for k, v in scenario.series.items() if "downtime" in k}
        if series:
            for name, samples in series.items():
                unit = next((f.unit for k, f in scenario.summary.items() if k.startswith(name)), "s")
                values += [convert(v, unit, "s") for v in samples if v is not None]
            continue
        for step in walk_steps(scenario.steps):
            for name, figure in step.figures.items():
                if "downtime" in name and figure.value is not None:
                    values.append(convert(figure.value, figure.unit, "s"))
    return values


# FailoverResult fields (in step details, or under details["failover"]) and step figures
# that mark how long after the fault each phase of a failover ended.
DETAIL_MILESTONES = {"detected_after_s": "detected", "fenced_after_s": "fenced", "heartbeat_back_after_s": "guest back"}
FIGURE_MILESTONES = {"detection": "detected", "detected_after": "detected", "fenced_after": "fenced",
                     "fencing": "fenced", "recovery": "guest back", "heartbeat_back_after": "guest back"}


def failover_phases(results: RunResults) -> list[plots.FailoverPhases]:
    """Failovers from step details (a FailoverResult) or from figures named like its phases."""
    found = []
    for scenario in results.scenarios:
        for step in walk_steps(scenario.steps):
            milestones: dict[str, float] = {}
            nested = step.details.get("failover")
            details = nested if isinstance(nested, dict) else step.details
            for key, label in DETAIL_MILESTONES.items():
                value = details.get(key)
                if isinstance(value, dict):  # per guest: the failover ends when the last guest is back
                    value = max((v for v in value.values() if isinstance(v, (int, float))), default=None)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    milestones[label] = float(value)
            for name, label in FIGURE_MILESTONES.items():
                figure = step.figures.get(name)
                if label not in milestones and figure is not None and figure.value is not None:
                    milestones[label] = convert(figure.value, figure.unit, "s")
            if milestones:
                found.append(plots.FailoverPhases(f"{scenario.name}: {step.name}", milestones))
    return found


# -- timelines -----------------------------------------------------------------------------
def timeline_svg(scenario: ScenarioResult, max_rows: int = 60) -> str:
    """Gantt chart of a scenario's steps: when each ran, how long, how it ended."""
    steps = scenario.steps[:max_rows]
    if not steps:
        return "<p class=\"small\">no steps recorded.</p>"
    start = min([scenario.started_at] + [s.started_at for s in steps])
    end = max([scenario.ended_at] + [s.ended_at for s in steps])
    span = max(end - start, 1e-6)
    label_w, bar_w, row_h = 260, 620, 18
    height = row_h * len(steps) + 28
    parts = [(f"<svg class=\"timeline\" width=\"{label_w + bar_w + 20}\" height=\"{height}\" role=\"img\" "
              f"aria-label=\"timeline of {esc(scenario.name)}\">")]
    for i, step in enumerate(steps):
        y = i * row_h + 4
        x = label_w + (step.started_at - start) / span * bar_w
        w = max(2.0, step.seconds / span * bar_w)
        color = plots.OUTCOME_COLORS.get(step.outcome, "#9e9e9e")
        label = f"{step.index}. {step.name}"
        label = label if len(label) <= 38 else label[:37] + "…"
        tip = f"{step.name} ({step.kind}): {step.outcome}, {step.seconds:.2f} s"
        if step.substeps:
            tip += f", {len(step.substeps)} substeps"
        parts.append(f"<text x=\"0\" y=\"{y + 12}\" font-size=\"12\">{esc(label)}</text>")
        parts.append(f"<rect x=\"{x:.1f}\" y=\"{y}\" width=\"{w:.1f}\" height=\"{row_h - 5}\" fill=\"{color}\">"
                     f"<title>{esc(tip)}</title></rect>")
    axis_y = len(steps) * row_h + 8
    parts.append(f"<line x1=\"{label_w}\" y1=\"{axis_y}\" x2=\"{label_w + bar_w}\" y2=\"{axis_y}\" "
                 "stroke=\"#9e9e9e\"/>")
    for k in range(5):
        x = label_w + k * bar_w / 4
        parts.append(f"<text x=\"{x:.0f}\" y=\"{axis_y + 14}\" font-size=\"10\" text-anchor=\"middle\">"
                     f"{span * k / 4:.1f}s</text>")
    parts.append("</svg>")
    more = f"<p class=\"small\">{len(scenario.steps) - max_rows} more steps in the table.</p>" \
        if len(scenario.steps) > max_rows else ""
    return "".join(parts) + more


# -- sections ------------------------------------------------------------------------------
def inventory_section(inventory: list[HostInventory]) -> str:
    if not inventory:
        return "<section><h2>Host inventory</h2><p class=\"small\">no inventory collected.</p></section>"
    rows = []
    for inv in inventory:
        nested = {True: "nested", False: "bare metal", None: "?"}[inv.nested]
        cpu = esc(inv.cpu_model or "?") + f"<br><span class=\"small\">{esc(inv.cpus or '?')} CPUs; " \
            f"{len(inv.cpu_flags)} flags</span>"
        rows.append([esc(inv.name), cpu,
                     esc(format_value(inv.memory_mib, "MiB")), "<br>".join(esc(n) for n in inv.nics) or "?",
                     "<br>".join(esc(d) for d in inv.disks) or "?", esc(inv.firmware or "?"),
                     esc(inv.xen_version or "?"), esc(inv.dom0_kernel or "?"), esc(f"{inv.accel or '?'}, {nested}")])
    flags = "".join(f"<p class=\"small\"><b>{esc(inv.name)} CPU flags:</b> {esc(' '.join(inv.cpu_flags))}</p>"
                    for inv in inventory if inv.cpu_flags)
    return ("<section><h2>Host inventory</h2>" + table(
        ["host", "CPU", "memory", "NICs", "disks", "firmware", "Xen", "dom0 kernel", "accel"], rows) + flags
        + "</section>")


def qualification_section(report: QualificationReport) -> str:
    status = "pass" if report.passed else "fail"
    rows = [[esc(c.subject), esc(c.check), esc(c.expected), esc(c.measured),
             outcome("pass" if c.passed else "fail"), esc(c.message)] for c in report.checks]
    description = f"<p class=\"small\">{esc(report.profile_description)}</p>" if report.profile_description else ""
    return (f"<section><h2>Qualification: profile {esc(report.profile)}</h2>{description}"
            f"<div class=\"verdict {status}\">{esc(report.verdict)}</div>"
            + table(["subject", "check", "expected", "measured", "result", "note"], rows) + "</section>")


def scenario_section(scenario: ScenarioResult) -> str:
    parts = [f"<section><h3>{esc(scenario.name)} {outcome(scenario.outcome)}</h3>",
             (f"<p class=\"small\">{esc(scenario.file)} · lab {esc(scenario.lab or '?')} · toolstack "
              f"{esc(scenario.toolstack or '-')} · {scenario.ended_at - scenario.started_at:.1f} s"
              + (f" · shard {esc(scenario.shard)} on {esc(scenario.machine or '?')}" if scenario.shard else "")
              + "</p>"),
             timeline_svg(scenario)]
    if scenario.summary:
        parts.append(table(["figure", "value"],
                           [[figure_name(k), esc(figure_text(f))] for k, f in scenario.summary.items()]))
    rows: list[list[str]] = []
    below: dict[int, str] = {}
    for step in walk_steps(scenario.steps):
        extra = heartbeat_section(step) + command_section(step)
        if extra:
            below[len(rows)] = extra
        figures = "<br>".join(f"{figure_name(k)}: {esc(figure_text(f))}" for k, f in step.figures.items())
        expectations = "<br>".join(
            f"{outcome({'passed': 'pass', 'not_measured': 'not_measured'}.get(e.verdict or '', 'fail'))} "
            f"{esc(e.figure)} {esc(e.expected)}"
            + (f" <span class=\"small\">{esc(e.message)}</span>" if e.message else "") for e in step.expectations)
        rows.append([esc(step.index), esc(step.name), esc(step.kind),
                     f"{step.started_at - scenario.started_at:.2f}", f"{step.seconds:.2f}", outcome(step.outcome),
                     figures, expectations, esc(step.message)])
    if rows:
        parts.append(table(["#", "step", "kind", "at (s)", "took (s)", "outcome", "figures", "expectations", "message"],
                           rows, numeric={3, 4}, below=below))
    parts.append(meanings_table(scenario.figure_names()))
    parts.append("</section>")
    return "".join(parts)


def shards_section(results: RunResults) -> str:
    """A sharded run's machines: which shard ran where, and every shard that is missing or broke off."""
    broken = [r for r in results.shards if r.status != "reported"]
    verdict = (f"<div class=\"verdict fail\">{len(broken)} of {len(results.shards)} shards missing or broken off: "
               + esc(", ".join(f"{r.shard} ({r.status})" for r in broken)) + "</div>") if broken else ""
    rows = [[esc(r.shard), esc(r.machine or "-"),
             f"<span class=\"{'passed' if r.status == 'reported' else 'failed'}\">{esc(r.status)}</span>",
             esc(r.items), esc(r.reason)] for r in results.shards]
    return (f"<section><h2>Shards (run {esc(results.run_id or '?')})</h2>{verdict}"
            + table(["shard", "machine", "status", "items", "why"], rows, {3}) + "</section>")


def render_run_html(results: RunResults, qualification: QualificationReport | None = None) -> str:
    """The whole run on one page: verdict, bring-up, plots, scenario timelines, inventory."""
    title = f"xenlab run: lab {results.lab or '?'}"
    counts: dict[str, int] = {}
    for s in results.scenarios:
        counts[s.outcome] = counts.get(s.outcome, 0) + 1
    body = [f"<h1>{esc(title)}</h1>",
            f"<p class=\"meta\">{esc(when(results.created_at))} · accel {esc(results.accel or '?')} · xenlab "
            f"{esc(results.xenlab_version)} · {len(results.scenarios)} scenarios: "
            + (", ".join(f"{n} {outcome(o)}" for o, n in sorted(counts.items())) or "none") + "</p>"]
    if qualification is not None:
        status = "pass" if qualification.passed else "fail"
        body.append(f"<div class=\"verdict {status}\">{esc(qualification.verdict)}</div>")
    if results.shards:
        body.append(shards_section(results))
    body.append("<section><h2>Bring-up</h2>" + image(plots.bringup_plot(results.bringup), "bring-up stages per host"))
    if results.bringup:
        stages = sorted({st for v in results.bringup.values() for st in v}, key=lambda st: max(
            v.get(st, 0) for v in results.bringup.values()))
        body.append(table(["host"] + [f"{st} (s)" for st in stages],
                          [[esc(h)] + [esc(v.get(st, "")) for st in stages] for h, v in results.bringup.items()],
                          numeric=set(range(1, len(stages) + 1))))
    body.append("</section>")
    body.append("<section><h2>Guest downtime</h2>"
                + image(plots.distribution_plot(downtime_samples(results), "s", "downtime distribution"),
                        "downtime distribution") + "</section>")
    body.append("<section><h2>Failovers</h2>" + image(plots.failover_plot(failover_phases(results)), "failover phases")
                + "</section>")
    if results.scenarios:
        body.append("<h2>Scenarios</h2>")
        sharded = any(s.shard for s in results.scenarios)
        body.append(table(["scenario", "outcome", "steps", "took (s)"] + (["shard", "machine"] if sharded else []),
                          [[esc(s.name), outcome(s.outcome), esc(len(s.steps)), f"{s.ended_at - s.started_at:.1f}"]
                           + ([esc(s.shard), esc(s.machine)] if sharded else []) for s in results.scenarios],
                          numeric={2, 3}))
        body += [scenario_section(s) for s in results.scenarios]
    body.append(inventory_section(results.inventory))
    if qualification is not None:
        body.append(qualification_section(qualification))
    return page(title, body)


def render_qualification_html(results: RunResults, report: QualificationReport) -> str:
    """A printable hardware-qualification certificate: verdict first, then evidence."""
    title = f"xenlab hardware qualification: {results.lab or '?'} ({report.profile})"
    body = [f"<h1>{esc(title)}</h1>",
            (f"<p class=\"meta\">{esc(when(results.created_at))} · accel {esc(results.accel or '?')} · xenlab "
             f"{esc(results.xenlab_version)}</p>"),
            qualification_section(report), inventory_section(results.inventory)]
    if results.bringup:
        plot = image(plots.bringup_plot(results.bringup), "bring-up stages per host")
        body.append(f"<section><h2>Bring-up</h2>{plot}</section>")
    return page(title, body)
