"""The run folder and its manifest: where a run's results live and what they were measured on.

results/20261124T014241Z-7f5d5f7/manifest.json
"""

from __future__ import annotations

import os
import platform
import resource
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from pushpull.core.host import cpu_model, memory_bytes
from pushpull.harness.mq import redact_text

PACKAGES = (
    "flask",
    "flask-socketio",
    "python-socketio",
    "python-engineio",
    "simple-websocket",
    "gevent",
    "greenlet",
    "locust",
    "geventhttpclient",
    "hdrhistogram",
    "psutil",
    "matplotlib",
)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def new_run_dir(out: Path) -> Path:
    """results/<UTC timestamp>-<git short sha>/, never reusing a folder."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    sha = git("rev-parse", "--short", "HEAD") or "nogit"
    out.mkdir(parents=True, exist_ok=True)
    base = out / f"{stamp}-{sha}"
    run_dir, n = base, 1
    while True:
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            n += 1
            run_dir = base.with_name(f"{base.name}-{n}")


def point_latest(run_dir: Path) -> None:
    """results/latest -> the newest run folder (a relative symlink, replaced atomically)."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest-{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_dir.name)
        tmp.replace(link)
    except OSError:
        tmp.unlink(missing_ok=True)


def build_manifest(arguments: dict, placement: dict) -> dict:
    status = git("status", "--porcelain")
    return {
        "schema_version": 1,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": memory_bytes(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "git": {
            "sha": git("rev-parse", "HEAD"),
            "dirty": bool(status) if status is not None else None,
        },
        "rlimit_nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "argv": [redact_text(word) for word in sys.argv],  # no queue credentials
        "arguments": arguments,
        "placement": placement,
    }
