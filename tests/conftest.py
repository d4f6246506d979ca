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


PUSH_P50_LIMIT_US = 25_000  # a few clients on loopback deliver in ~1-5 ms; Nagle's wait is 40 ms


def latency_problems(cells: list[dict]) -> list[str]:
    """What a wrong latency would break, with room for a noisy machine: at a few clients every
    transport but short-poll delivers its median within a few tens of milliseconds, and at least
    five times sooner than short-poll at the same count (whose median is half its interval).
    A 40 ms batching (Nagle left on, a server that sits on its writes) fails the first."""
    problems = []
    short = {c["clients"]: c["latency_us"]["p50"] for c in cells if c["transport"] == "shortpoll"}
    for cell in cells:
        if cell["transport"] == "shortpoll":
            continue
        where, p50 = f"{cell['transport']} at {cell['clients']} clients", cell["latency_us"]["p50"]
        if not 0 < p50 < PUSH_P50_LIMIT_US:
            problems.append(f"{where}: p50 {p50 / 1000:.1f} ms, not under 25 ms")
        if cell["clients"] in short and not p50 * 5 < short[cell["clients"]]:
            problems.append(
                f"{where}: p50 {p50 / 1000:.1f} ms, not a fifth of short-poll's "
                f"{short[cell['clients']] / 1000:.1f} ms"
            )
    return problems
