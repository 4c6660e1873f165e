"""A run directory holds keys, QMP sockets and state: xenlab uses one only if it is this
user's own, a real directory (not a symlink) of mode 0700; otherwise it refuses and says why."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xenlab.errors import XenlabError
from xenlab.lab import rundir
from xenlab.lab.rundir import RunDir, runs_base

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534


@pytest.fixture
def base_env(tmp_path, monkeypatch):
    base = tmp_path / "runs"
    monkeypatch.setenv("XENLAB_RUN_DIR", str(base))
    return base


def test_a_new_run_base_is_made_private(base_env):
    assert runs_base() == base_env
    st = os.lstat(base_env)
    assert st.st_uid == os.getuid() and st.st_mode & 0o777 == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_run_base_made_in_advance_by_another_user_is_refused(base_env):
    base_env.mkdir(mode=0o700)
    os.chown(base_env, NOBODY, NOBODY)
    with pytest.raises(XenlabError) as refused:
        runs_base()
    message = str(refused.value)
    assert str(base_env) in message and f"uid {NOBODY}" in message and "XENLAB_RUN_DIR" in message


def test_the_default_base_made_by_another_user_is_refused(tmp_path, monkeypatch):
    """The probe of the issue: /tmp/xenlab-UID made beforehand by uid 65534 (here in tmp_path)."""
    monkeypatch.delenv("XENLAB_RUN_DIR", raising=False)
    fake_default = tmp_path / f"xenlab-{os.getuid()}"
    monkeypatch.setattr(rundir, "default_runs_base", lambda: fake_default)
    fake_default.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(fake_default, NOBODY, NOBODY)
    else:
        fake_default.chmod(0o777)
    with pytest.raises(XenlabError, match=str(fake_default)):
        runs_base()


def test_a_run_base_open_to_others_is_refused_not_chmodded(base_env):
    base_env.mkdir()
    base_env.chmod(0o755)
    with pytest.raises(XenlabError, match="0755.*chmod 700"):
        runs_base()
    assert base_env.stat().st_mode & 0o777 == 0o755  # refused, not silently repaired


def test_a_symlinked_run_base_is_refused(base_env, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    base_env.symlink_to(target)
    with pytest.raises(XenlabError, match="symbolic link"):
        runs_base()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_lab_run_directory_owned_by_another_user_is_refused(base_env):
    run = RunDir.for_lab("l1")
    run.root.mkdir(mode=0o700)
    os.chown(run.root, NOBODY, NOBODY)
    with pytest.raises(XenlabError, match=f"uid {NOBODY}"):
        run.create()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_the_cli_refuses_a_foreign_run_base_without_a_traceback(base_env):
    base_env.mkdir(mode=0o700)
    os.chown(base_env, NOBODY, NOBODY)
    done = subprocess.run([sys.executable, "-m", "xenlab.cli", "status"], check=False, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, timeout=120)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"uid {NOBODY}" in done.stdout + done.stderr


def test_bench_bringup_never_removes_the_users_run_base(tmp_path, monkeypatch):
    """bench/bringup.py used `setdefault` on XENLAB_RUN_DIR, then removed it: a user's labs went with it.
    Its rounds are replaced here (they boot QEMU) by one that fails, as a round may."""
    users = tmp_path / "my-labs"
    (users / "lab1").mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("XENLAB_RUN_DIR", str(users))
    spec = importlib.util.spec_from_file_location("bringup_bench", REPO / "bench" / "bringup.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    used = []

    def failing_rounds(args):
        used.append(Path(os.environ["XENLAB_RUN_DIR"]))
        (used[0] / "lab-of-the-bench").mkdir()
        raise RuntimeError("a round failed")

    monkeypatch.setattr(bench, "measure", failing_rounds)
    monkeypatch.setattr(sys, "argv", ["bringup.py"])
    with pytest.raises(RuntimeError):
        bench.main()
    assert used and used[0] != users and not used[0].exists()  # its own base, removed
    assert (users / "lab1").is_dir()  # the user's, untouched
