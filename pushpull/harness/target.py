"""A server the harness did not start (`--target URL`): checked before it is measured, and the
figures it cannot give (a missing optional endpoint) named with why, never invented."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

from pushpull.harness.config import Cell
from pushpull.harness.procs import (
    HarnessError,
)
from pushpull.harness.verify import OPTIONAL_ENDPOINTS, verify_target


def check_target(cell: Cell, cell_dir: Path, url: str) -> dict[str, str]:
    """Verify a server the harness did not start. Problems with the client-facing protocol
    fail the cell; missing optional endpoints are written to verify.txt and returned."""
    parts = urlsplit(url)
    try:
        socket.create_connection(
            (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)), timeout=5
        ).close()
    except OSError as exc:
        raise HarnessError(f"the target {url} does not answer: {exc.strerror or exc}") from None
    problems, missing = verify_target(cell.spec, url)
    lines = [f"problem: {p}" for p in problems] + [
        f"missing: {path} ({reason}); null: {OPTIONAL_ENDPOINTS[path][1]}"
        for path, reason in missing.items()
    ]
    if lines:
        (cell_dir / "verify.txt").write_text("\n".join(lines) + "\n")
    if problems:
        raise HarnessError(
            f"the target {url} does not speak the {cell.transport} protocol: {problems[0]} "
            f"({len(problems)} problem(s), see {cell_dir / 'verify.txt'})"
        )
    return missing


def unavailable_figures(missing: dict[str, str]) -> dict[str, str]:
    """The summary's figures a target cannot give, each with why (never invented)."""
    reasons = {}
    for path, fields in TARGET_FIGURES.items():
        if path in missing:
            reasons.update(dict.fromkeys(fields, f"the target has no {path} ({missing[path]})"))
    return reasons


TARGET_FIGURES = {
    "/stats": (
        "requests", "requests_per_delivery", "bytes_per_delivery", "bytes_out_per_delivery",
        "server_cpu_us_per_delivery", "server_cpu_percent", "server_rss_bytes",
        "server_rss_per_client_bytes",
    ),
    "/published": ("published", "expected", "lost", "publisher_lag_us"),
    "/time": ("clock_offset_us",),
}  # fmt: skip
