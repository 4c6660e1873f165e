"""`xenlab report merge`: the shards of one run put back together, as if one machine ran it.

Each shard directory holds its manifest (`shard.json`, see `shard_files`), its results
JSON (`results*.json`; a matrix shard's combinations `*/results.json`) and its JUnit file.
The merge checks that the shards belong to one run (one run id, one shard count), refuses
a shard given twice, names every shard that is missing or broke off (or lost items its
plan gave it), and writes one results JSON (each scenario naming its machine and shard),
one JUnit file and one HTML report. Outcomes are kept as each shard reported them: a
scenario `not_measured` on its shard is `not_measured` in the merge.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidInput, SpecError
from ..results import HostInventory, RunResults, ScenarioResult, ShardRecord, load_results
from .shard_files import MANIFEST_NAME, ShardManifest, read_manifest

JUNIT_NAMES = ("junit.xml", "matrix-junit.xml")
MAX_JUNIT_BYTES = 64 * 1024 * 1024


@dataclass
class ShardOutput:
    """One shard directory as found: its manifest, results and JUnit files, and what is wrong with it."""

    directory: Path
    manifest: ShardManifest
    results: list[RunResults] = field(default_factory=list)
    junit: list[tuple[Path, ET.Element]] = field(default_factory=list)  # each JUnit file, parsed
    problems: list[str] = field(default_factory=list)

    @property
    def record(self) -> ShardRecord:
        status = "failed" if self.problems else "reported"
        return ShardRecord(shard=self.manifest.label, machine=self.manifest.machine, status=status,
                           reason="; ".join(self.problems), items=len(self.manifest.items))


@dataclass
class MergedRun:
    results: RunResults
    shards: list[ShardOutput]
    junit: bytes

    @property
    def incomplete(self) -> list[ShardRecord]:
        """The shards that are missing or failed to report everything (named, never dropped)."""
        return [r for r in self.results.shards if r.status != "reported"]


def read_shards(directories: list[Path]) -> list[ShardOutput]:
    """Every directory's shard, checked to be of one run and each shard once (else InvalidInput, exit 2)."""
    if not directories:
        raise InvalidInput("give the directories the shards wrote (at least one)")
    found: dict[int, ShardOutput] = {}
    first: ShardOutput | None = None
    for directory in directories:
        manifest = read_manifest(directory)
        where = str(Path(directory) / MANIFEST_NAME)
        if first is not None:
            for name in ("run_id", "count", "kind"):
                mine, theirs = getattr(manifest, name), getattr(first.manifest, name)
                if mine != theirs:
                    raise SpecError(where, [(None, (
                        f"{name} {mine!r} differs from {theirs!r} in {first.directory / MANIFEST_NAME}: "
                        "merge the shards of one run only"))])
        if manifest.index in found:
            earlier = found[manifest.index].directory / MANIFEST_NAME
            raise SpecError(where, [(None, (f"shard {manifest.label} of run {manifest.run_id} was given already "
                                            f"({earlier}): give each shard once"))])
        shard = ShardOutput(Path(directory), manifest)
        found[manifest.index] = shard
        first = first or shard
    return [found[k] for k in sorted(found)]


def collect(shard: ShardOutput) -> None:
    """Read a shard's results and find its JUnit files; what cannot be read makes the shard failed."""
    manifest, directory = shard.manifest, shard.directory
    if not manifest.finished:
        shard.problems.append("it broke off: its manifest was never marked finished")
    paths = sorted(directory.glob("results*.json")) + sorted(directory.glob("*/results.json"))
    for path in paths:
        try:
            shard.results.append(load_results(path))
        except SpecError as exc:
            shard.problems.append(f"its results {path} cannot be read: {exc}")
    for path in (directory / name for name in JUNIT_NAMES):
        if path.is_file():
            try:
                shard.junit.append((path, _junit_root(path)))
            except SpecError as exc:
                shard.problems.append(f"its JUnit file cannot be read: {exc}")
    if manifest.finished:
        lost = [item for item in manifest.items if item not in manifest.outcomes]
        if lost:
            shown = ", ".join(lost[:5]) + (f" and {len(lost) - 5} more" if len(lost) > 5 else "")
            shard.problems.append(f"{len(lost)} item(s) its plan gave it did not report: {shown}")
        if manifest.items and not any(directory.glob(name) for name in JUNIT_NAMES):
            shard.problems.append(f"no JUnit file ({' or '.join(JUNIT_NAMES)}) in {directory}")


def stamped(scenario: ScenarioResult, manifest: ShardManifest) -> ScenarioResult:
    return scenario.model_copy(update={"machine": scenario.machine or manifest.machine,
                                       "shard": scenario.shard or manifest.label})


def merge_results(shards: list[ShardOutput]) -> RunResults:
    """One RunResults of every shard's; hosts are named LAB/HOST when several labs are merged."""
    runs = [(shard, r) for shard in shards for r in shard.results]
    labs = list(dict.fromkeys(r.lab for _, r in runs if r.lab))
    several = len(labs) > 1
    scenarios = [stamped(s, shard.manifest) for shard, r in runs for s in r.scenarios]
    inventory: list[HostInventory] = []
    bringup: dict[str, dict[str, float]] = {}
    for _, r in runs:
        prefix = f"{r.lab}/" if several and r.lab else ""
        inventory += [h.model_copy(update={"name": prefix + h.name}) for h in r.inventory]
        bringup.update({prefix + host: dict(stages) for host, stages in r.bringup.items()})
    accels = sorted({r.accel for _, r in runs if r.accel})
    count = shards[0].manifest.count
    by_index = {s.manifest.index: s for s in shards}
    records = [by_index[k].record if k in by_index else
               ShardRecord(shard=f"{k}/{count}", status="missing", reason="no directory of this shard was given")
               for k in range(1, count + 1)]
    created = min([r.created_at for _, r in runs] + [s.manifest.started_at for s in shards])
    return RunResults(created_at=created, lab=labs[0] if len(labs) == 1 else "", accel=",".join(accels),
                      scenarios=scenarios, inventory=inventory, bringup=bringup,
                      run_id=shards[0].manifest.run_id, shards=records)


def _junit_root(path: Path) -> ET.Element:
    raw = path.read_bytes()[: MAX_JUNIT_BYTES + 1]
    if len(raw) > MAX_JUNIT_BYTES:
        raise SpecError(str(path), [(None, f"larger than {MAX_JUNIT_BYTES // 2**20} MiB: not a JUnit file")])
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise SpecError(str(path), [(None, "declares a DOCTYPE or entities, which no JUnit file needs: refused")])
    try:
        return ET.fromstring(raw)
    except ET.ParseError as exc:
        raise SpecError(str(path), [(exc.position[0], f"not XML: {exc}")]) from None


def merge_junit(shards: list[ShardOutput], records: list[ShardRecord], run_id: str) -> bytes:
    """Every shard's test suites under one root, each test case naming its shard and machine; one
    failing case per shard that is missing or broke off, so CI shows it."""
    root = ET.Element("testsuites", name=f"xenlab run {run_id}")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for shard in shards:
        for _, top in shard.junit:
            suites = [top] if top.tag == "testsuite" else list(top.iter("testsuite"))
            for suite in suites:
                suite.set("name", f"shard {shard.manifest.label} on {shard.manifest.machine}: {suite.get('name', '')}")
                for case in suite.iter("testcase"):
                    properties = case.find("properties")
                    if properties is None:
                        properties = ET.Element("properties")
                        case.insert(0, properties)
                    ET.SubElement(properties, "property", name="xenlab.shard", value=shard.manifest.label)
                    ET.SubElement(properties, "property", name="xenlab.machine", value=shard.manifest.machine)
                for key in totals:
                    totals[key] += int(suite.get(key, "0") or 0)
                root.append(suite)
    broken = [r for r in records if r.status != "reported"]
    if broken:
        suite = ET.SubElement(root, "testsuite", name="xenlab shards", tests=str(len(broken)),
                              failures=str(len(broken)), errors="0", skipped="0")
        for record in broken:
            case = ET.SubElement(suite, "testcase", classname="xenlab.shards", name=f"shard {record.shard}")
            ET.SubElement(case, "failure", message=f"{record.status}: {record.reason}"[:500]).text = record.reason
        totals["tests"] += len(broken)
        totals["failures"] += len(broken)
    for key, value in totals.items():
        root.set(key, str(value))
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def merge_shards(directories: list[Path]) -> MergedRun:
    """Read, check and merge the shards' outputs (nothing is written; see `write_merged`)."""
    shards = read_shards([Path(d) for d in directories])
    for shard in shards:
        collect(shard)
    results = merge_results(shards)
    junit = merge_junit(shards, results.shards, results.run_id)
    return MergedRun(results, shards, junit)


def write_merged(merged: MergedRun, out_dir: Path) -> list[Path]:
    """results.json, junit.xml and report.html in out_dir (the existing writers)."""
    from . import write_reports

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [merged.results.write(out_dir / "results.json")]
    junit = out_dir / "junit.xml"
    junit.write_bytes(merged.junit)
    written.append(junit)
    written.append(write_reports(merged.results, out_dir, stem="report").html)
    return written
