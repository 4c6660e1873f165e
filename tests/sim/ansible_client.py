"""Ansible as an XCP-ng admin runs it: `ansible-playbook` with community.general's xenserver
modules (`xenserver_guest_info`, `xenserver_guest`, `xenserver_guest_powerstate`).

Imported as a plain module by the tests and by bench/sim.py.  Ansible comes from PyPI
(`ansible`, which bundles community.general), through the `sim-clients` extra that
setup.sh installs.  The playbook is `ansible/admin_cycle.yml`, one phase per run, so a
caller reads each phase's `changed` and facts from Ansible's JSON callback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLAYBOOK = Path(__file__).resolve().parent / "ansible" / "admin_cycle.yml"
# the admin cycle, in order (tests/sim/ansible/admin_cycle.yml has a task per phase)
PHASES = ("template_facts", "create", "rerun", "reconfigure", "power_on", "suspend", "resume", "restart",
          "shutdown", "remove")


def ansible_missing() -> str | None:
    """Why ansible-playbook cannot run here, or None."""
    if shutil.which("ansible-playbook") is None:
        return "ansible-playbook is not installed (setup.sh installs the `sim-clients` extra: pip's `ansible`)"
    return None


@dataclass
class Phase:
    """What one phase's task did: Ansible's result for it."""

    name: str
    changed: bool
    failed: bool
    result: dict[str, Any]

    @property
    def msg(self) -> str:
        return str(self.result.get("msg", ""))


class Ansible:
    """Runs phases of the admin-cycle playbook against one XAPI URL, its modules on `python`."""

    def __init__(self, url: str, password_file: Path, python: str, home: Path, playbook: Path = PLAYBOOK) -> None:
        why = ansible_missing()
        if why:
            raise RuntimeError(why)
        self.url, self.password_file, self.python, self.playbook = url, password_file, python, playbook
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "json", "ANSIBLE_HOME": str(home),
                    "ANSIBLE_LOCAL_TEMP": str(home / "tmp"), "ANSIBLE_NOCOLOR": "1",
                    "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0", "ANSIBLE_LOCALHOST_WARNING": "0"}
        self.env.pop("PYTHONPATH", None)

    def run(self, phase: str, timeout: float = 300) -> Phase:
        argv = ["ansible-playbook", "-i", "localhost,", str(self.playbook), "-e", f"phase={phase}",
                "-e", f"xapi_url={self.url}", "-e", f"xapi_password_file={self.password_file}",
                "-e", f"ansible_python_interpreter={self.python}"]
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        try:
            tasks = json.loads(done.stdout)["plays"][0]["tasks"]
        except (ValueError, KeyError, IndexError):
            raise RuntimeError(f"ansible-playbook (phase {phase}) gave no JSON: {done.stdout[-2000:]}"
                               f"{done.stderr[-2000:]}") from None
        ran = [(t["task"]["name"], t["hosts"]["localhost"]) for t in tasks
               if not t["hosts"]["localhost"].get("skipped")]
        if len(ran) != 1:
            raise RuntimeError(f"phase {phase} ran {len(ran)} tasks: {[name for name, _ in ran]}")
        name, result = ran[0]
        return Phase(name, bool(result.get("changed")), bool(result.get("failed")), result)
