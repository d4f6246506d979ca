"""What went wrong in a process's log: Python tracebacks and error lines, counted and named.

After every cell the harness reads the log of each server process and of Locust with this, so a
server fault (a publisher greenlet that died, a handler that raised) is in the results, never
only in a file nobody opens. A traceback counts once, named by its last exception line (a
chained traceback, "During handling of the above exception ...", is one); gevent's line saying
which greenlet failed belongs to the traceback before it. An error line is a logging record at
ERROR or CRITICAL (Python's and Locust's formats) or a program's own `prog: error: ...` line.

    scan_log(Path("server.log"))  ->  {"count": 1, "first": ["wsproto.utilities.LocalProtocolError: ..."]}
"""

from __future__ import annotations

import re
from pathlib import Path

TRACEBACK = "Traceback (most recent call last):"
CHAINED = ("During handling of the above exception", "The above exception was the direct cause")
ERROR_LINE = re.compile(
    r"/(ERROR|CRITICAL)/"  # Locust: [2026-12-01 21:40:01,123] host/ERROR/locust.runners: ...
    r"|^(ERROR|CRITICAL):"  # Python logging's default format
    r"|^\S+: error: "  # a program's one-line error
)
GREENLET_FAILED = re.compile(r"<Greenlet .*> failed with \w+")
FIRST_LINES = 5
LINE_CHARS = 300


def scan_log(path: Path, first: int = FIRST_LINES) -> dict:
    """{"count": tracebacks + error lines, "first": the first `first` of them, one line each}.
    A missing log counts nothing."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {"count": 0, "first": []}
    return scan_text(text, first)


def scan_text(text: str, first: int = FIRST_LINES) -> dict:
    found: list[str] = []
    count = 0
    in_traceback = False
    pending: str | None = None  # a traceback's exception line, unless a chained one follows

    def record(line: str) -> None:
        nonlocal count
        count += 1
        if len(found) < first:
            found.append(line.strip()[:LINE_CHARS])

    for line in text.splitlines():
        stripped = line.strip()
        if pending is not None:
            if not stripped:
                continue
            if stripped.startswith(CHAINED):
                pending = None
                continue
            record(pending)
            pending = None
            if GREENLET_FAILED.search(line):
                continue
        if line.startswith(TRACEBACK) or stripped == TRACEBACK:
            in_traceback = True
            continue
        if in_traceback:
            if not stripped or line[:1].isspace():
                continue  # its frames and source lines
            in_traceback = False
            pending = stripped
            continue
        if ERROR_LINE.search(line):
            record(line)
    if pending is not None:
        record(pending)
    return {"count": count, "first": found}


def scan_logs(paths: dict[str, Path]) -> dict:
    """Every named log scanned: {"count": total, "processes": {name: scan_log(path)}}."""
    processes = {name: scan_log(path) for name, path in paths.items()}
    return {"count": sum(p["count"] for p in processes.values()), "processes": processes}
