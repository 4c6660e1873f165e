"""Reports of a run, all read from `xenlab.results.RunResults`: HTML, qualification, history.

JUnit XML is pytest's own (`--junitxml`; the pytest plugin defaults it into the report
directory). `write_reports` is what both faces call: `xenlab report` and the plugin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..results import RunResults, load_results
from .inventory import collect_inventory
from .qualification import QualificationProfile, QualificationReport, check_profile, load_profile, qualify

__all__ = [
    "QualificationProfile",
    "QualificationReport",
    "ReportFiles",
    "collect_inventory",
    "load_profile",
    "load_results",
    "qualify",
    "write_reports",
]


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    qualification_html: Path | None = None
    qualification_json: Path | None = None
    qualification: QualificationReport | None = None


def write_reports(results: RunResults, out_dir: Path, profile: QualificationProfile | None = None,
                  stem: str = "report") -> ReportFiles:
    """Write `<stem>.html` (and with a profile `qualification.html` + `.json`) into out_dir."""
    from .html import render_qualification_html, render_run_html

    if profile is not None:
        check_profile(profile, results)  # before anything is written
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    verdict = qualify(results, profile) if profile is not None else None
    html_path = out_dir / f"{stem}.html"
    html_path.write_text(render_run_html(results, verdict), encoding="utf-8")
    if verdict is None:
        return ReportFiles(html_path)
    q_html = out_dir / "qualification.html"
    q_html.write_text(render_qualification_html(results, verdict), encoding="utf-8")
    q_json = out_dir / "qualification.json"
    q_json.write_text(verdict.model_dump_json(indent=2), encoding="utf-8")
    return ReportFiles(html_path, q_html, q_json, verdict)
