"""The CI files docs/ci.md ships are valid: YAML, and every xenlab and pytest command they run
exists and takes the options given (xenlab's through click's own parser; pytest's by a real
`--collect-only` of the shard, which plans it without starting anything)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from xenlab.cli import main

REPO = Path(__file__).resolve().parents[2]
CI_FILES = {"gitlab": REPO / "docs/ci/gitlab-ci.yml", "github": REPO / "docs/ci/github-workflow.yml"}
# what CI fills in: a placeholder per variable, the values of a first shard
PLACEHOLDERS = {"CI_NODE_INDEX": "1", "CI_NODE_TOTAL": "3", "SHARDS": "3", "matrix.shard": "1",
                "matrix.suite": "nightly", "XENLAB_HISTORY_DB": "/nonexistent/history.sqlite"}
COMMAND = re.compile(r"(?:^|\$\(|\|\||&&|;|\bthen\b)\s*((?:xenlab|python3 -m pytest)\s[^;|&)]*)")


def load(name: str) -> dict:
    data = yaml.safe_load(CI_FILES[name].read_text())
    assert isinstance(data, dict)
    return data


def shell_lines(name: str) -> list[tuple[str, dict[str, str]]]:
    """Every shell line of the file with the variables its job sets (GitLab `variables:` with
    `extends:`; GitHub `env:` of the workflow, job and step)."""
    data = load(name)
    found: list[tuple[str, dict[str, str]]] = []
    if name == "gitlab":
        top = {k: str(v) for k, v in (data.get("variables") or {}).items()}
        for job, body in data.items():
            if not isinstance(body, dict) or job in ("variables", "stages"):
                continue
            parents = [data[p] for p in ([body["extends"]] if isinstance(body.get("extends"), str) else [])]
            env = {**top}
            for part in [*parents, body]:
                env.update({k: str(v) for k, v in (part.get("variables") or {}).items()})
            for part in [*parents, body]:
                for key in ("before_script", "script"):
                    found += [(line, env) for line in part.get(key) or []]
        return found
    top = {k: str(v) for k, v in (data.get("env") or {}).items()}
    for job in data["jobs"].values():
        env = {**top, **{k: str(v) for k, v in (job.get("env") or {}).items()}}
        for step in job["steps"]:
            step_env = {**env, **{k: str(v) for k, v in (step.get("env") or {}).items()}}
            found += [(line, step_env) for line in str(step.get("run", "")).splitlines() if line.strip()]
    return found


def expand(line: str, env: dict[str, str]) -> str:
    line = re.sub(r"\$\{\{\s*([^}]+?)\s*\}\}", lambda m: PLACEHOLDERS.get(m.group(1), "x"), line)
    for _ in range(3):  # variables that name variables
        line = re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?",
                      lambda m: PLACEHOLDERS.get(m.group(1)) or env.get(m.group(1), "x"), line)
    return line


def commands(name: str) -> list[list[str]]:
    found = []
    for line, env in shell_lines(name):
        for match in COMMAND.finditer(expand(line, env)):
            found.append(shlex.split(match.group(1)))
    return found


def parse_xenlab(args: list[str]) -> list[str]:
    """Parse like `xenlab ARGS` would, down to the leaf command; returns the command path."""
    ctx = main.make_context("xenlab", list(args))
    command: click.Command = main
    path = []
    while isinstance(command, click.Group):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        name, command, rest = command.resolve_command(ctx, rest)
        path.append(name)
        ctx = command.make_context(name, rest, parent=ctx)
    return path


@pytest.mark.parametrize("name", sorted(CI_FILES))
def test_the_ci_file_is_yaml_and_runs_the_nightly_suite_and_the_matrix_in_shards(name):
    found = commands(name)
    xenlab_paths = [parse_xenlab(c[1:]) for c in found if c[0] == "xenlab"]  # raises on any bad option
    assert ["qualify"] in xenlab_paths and ["report", "merge"] in xenlab_paths
    assert ["history", "add"] in xenlab_paths and ["cache", "key"] in xenlab_paths
    qualify = next(c for c in found if c[:2] == ["xenlab", "qualify"])
    assert "--shard" in qualify and "qualification/matrix-firmware-nic.yaml" in qualify
    assert any(c[:3] == ["python3", "-m", "pytest"] and "--xenlab-shard" in c for c in found)


def test_a_bad_option_would_be_caught():
    with pytest.raises(click.UsageError):
        parse_xenlab(["report", "merge", "a", "--outt", "b"])
    with pytest.raises(click.UsageError):
        parse_xenlab(["qualify", "p.yaml", "--shards", "1/2"])


@pytest.mark.parametrize("name", sorted(CI_FILES))
def test_the_ci_files_pytest_command_plans_its_shard_of_the_real_suite(name, tmp_path):
    """`--collect-only` runs the plugin's options and the shard plan on tests/e2e; nothing boots."""
    [command] = [c for c in commands(name) if c[:3] == ["python3", "-m", "pytest"]]
    args = command[3:]
    args[args.index("--xenlab-report") + 1] = str(tmp_path / "shard")
    env = {**os.environ, "XENLAB_NIGHTLY": "1", "XENLAB_RUN_ID": "ci-check", "XENLAB_MACHINE": "checker",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "pytest", *args, "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "shard 1/3:" in done.stdout
    manifest = json.loads((tmp_path / "shard" / "shard.json").read_text())
    assert (manifest["run_id"], manifest["machine"], manifest["index"], manifest["count"]) == ("ci-check", "checker",
                                                                                               1, 3)
    pool2 = [n for n in manifest["plan_order"] if "test_lab_core.py" in n or "test_teardown.py" in n]
    assert pool2, manifest["plan_order"]  # the tests sharing the pool2 lab...
    holders = {bool(set(pool2) & set(manifest["items"]))}
    assert holders == {set(pool2) <= set(manifest["items"])}  # ...are all on this shard or none of them is
