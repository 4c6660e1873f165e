"""The real clients of a served simulator: Xen Orchestra's `xen-api` (Node) and XenAPI.

Imported as a plain module by the tests and by bench/sim.py.  The Node package is
installed by setup.sh (`npm ci` in tests/sim/xo_client).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Self

XO_DIR = Path(__file__).resolve().parent / "xo_client"
XO_DRIVER = XO_DIR / "drive.mjs"


def xo_missing() -> str | None:
    """Why Xen Orchestra's client cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed (setup.sh installs what the tests need)"
    if not (XO_DIR / "node_modules" / "xen-api" / "package.json").is_file():
        return f"npm package xen-api is not installed in {XO_DIR}: run ./setup.sh (it runs `npm ci` there)"
    return None


def write_password_file(path: Path, password: str) -> Path:
    path.write_text(password + "\n")
    path.chmod(0o600)
    return path


class XOClient:
    """One Xen Orchestra `xen-api` client, connected and watching, driven over a pipe."""

    def __init__(self, url: str, password_file: Path, transport: str = "auto", user: str = "root",
                 ready_timeout: float = 60.0, debounce: int | None = None) -> None:
        why = xo_missing()
        if why:
            raise RuntimeError(why)
        config: dict[str, Any] = {"url": url, "user": user, "passwordFile": str(password_file),
                                  "transport": transport}
        if debounce is not None:
            config["debounce"] = debounce
        self.proc = subprocess.Popen(["node", str(XO_DRIVER), json.dumps(config)], cwd=XO_DIR,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env={**os.environ, "NODE_NO_WARNINGS": "1"})
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=lambda: self._stderr.extend(self.proc.stderr), daemon=True).start()
        self.ready = self._read(ready_timeout, "connect and fill its object cache")

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _read(self, timeout: float, what: str) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"Xen Orchestra's client did not {what} within {timeout} s; "
                               f"stderr: {''.join(self._stderr)[-2000:]}") from None
        if line is None:
            self.proc.wait(5)
            raise RuntimeError(f"Xen Orchestra's client exited ({self.proc.returncode}) before it could {what}: "
                               f"{''.join(self._stderr)[-3000:]}")
        return json.loads(line)

    def send(self, cmd: str, **args: Any) -> None:
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float = 30.0, what: str = "answer") -> dict[str, Any]:
        return self._read(timeout, what)

    def __call__(self, cmd: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        self.send(cmd, **args)
        return self._read(timeout, f"answer {cmd} {args}")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def timed(fn, *args) -> tuple[Any, float]:
    t = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t
