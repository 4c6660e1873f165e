"""Plugin tests run inner pytest sessions (pytester) against fake labs: nothing boots."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

# Imported once here: inner in-process sessions drop the modules they imported, and
# numpy (under matplotlib) cannot be loaded twice in one process.
import matplotlib.backends.backend_agg
import matplotlib.figure  # noqa: F401
import pytest


def pytest_configure(config: pytest.Config) -> None:
    """pytester, enabled here: `pytest_plugins` is refused in a conftest below the rootdir,
    and these tests run from the repository root (testpaths) as well as from here."""
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")

HERE = Path(__file__).resolve().parent


def _load_fakes() -> None:
    """The outer tests use the same fakes as the inner sessions (loaded by file, not installed)."""
    spec = importlib.util.spec_from_file_location("fakelab_outer", HERE / "fakelab.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fakelab_outer"] = module
    spec.loader.exec_module(module)


_load_fakes()

INNER_CONFTEST = '''
import pytest
from fakelab import FakeProvider

@pytest.fixture(scope="session")
def xenlab_lab_provider():
    return FakeProvider()
'''


class Project:
    """A pytester project with lab files and a conftest handing out fake labs."""

    def __init__(self, pytester: pytest.Pytester, events: Path):
        self.pytester = pytester
        self.events = events

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly", *args)

    def log(self) -> list[dict]:
        if not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines()]

    def kinds(self, *kinds: str) -> list[tuple[str, str]]:
        """(event, lab) of the lab-life events, in order."""
        wanted = kinds or ("create", "attach", "up", "checkpoint_save", "checkpoint_restore", "down")
        return [(e["event"], e.get("lab", "")) for e in self.log() if e["event"] in wanted]


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    events = pytester.path / "events.jsonl"
    monkeypatch.setenv("XENLAB_FAKE_EVENTS", str(events))
    pytester.makepyfile(fakelab=(HERE / "fakelab.py").read_text())
    pytester.syspathinsert()
    pytester.makeconftest(INNER_CONFTEST)
    labs = pytester.mkdir("labs")
    (labs / "xen-pool2.yaml").write_text("name: xen-pool2\nhosts:\n  h1:\n  h2:\n")
    (labs / "xen-pool3.yaml").write_text("name: xen-pool3\nhosts:\n  a1:\n  a2:\n  b1:\n")
    return Project(pytester, events)

