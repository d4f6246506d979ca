"""Shared test helpers: real servers as subprocesses on free ports, the pushpull CLI as a
subprocess (the harness must not be imported by Locust or gevent users)."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def running_server(module: str, rate: float = 0.0, *extra: str, stderr: Path | None = None):
    """Start `python -m module --port 0`, read its announce line, yield (url, pid), stop it.
    With `stderr`, the server's error output goes to that file."""
    error_file = open(stderr, "w") if stderr is not None else None  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", "0", "--rate", str(rate), *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=error_file or subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"{module} did not start (exit {process.wait()})")
        announce = json.loads(line)
        yield announce["listening"], announce["pid"]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if error_file is not None:
            error_file.close()


def pushpull(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run the CLI as a user would, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "pushpull.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )
