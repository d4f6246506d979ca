"""One look for every chart: each transport's colour and label come from its registry entry
(pushpull/core/transports.py), the same everywhere."""

from __future__ import annotations

import math
import os
from pathlib import Path

from pushpull.core import transports

LINESTYLES = {"p50": "-", "p99": "--"}


def color(transport: str) -> str:
    return transports.get(transport).color


def label(transport: str) -> str:
    return transports.get(transport).label


def rank(transport: str) -> int:
    """Sort key: the registry's order."""
    return transports.rank(transport)


def transport_order(names) -> list[str]:
    return sorted(set(names), key=rank)


def plain_number(value: float, _pos=None) -> str:
    """Axis labels as plain numbers (0.1, 1, 10, 500), not 10^x."""
    return f"{value:g}"


def ms_text(value_us: float | None) -> str:
    """Microseconds as milliseconds for tables: '12.3', or '-' when there is no value."""
    return "-" if value_us is None else f"{value_us / 1000:.1f}"


def minor_2_5(value: float, _pos=None) -> str:
    """Label the 2s and 5s between the decades of a log axis (2, 5, 20, 50, ...), not the rest."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value) + 1e-9)
    return f"{value:g}" if round(mantissa, 6) in (2.0, 5.0) else ""


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def save_figure(fig, path: Path) -> None:
    """Write a chart atomically, never through a symlink (a link at `path` is replaced, not
    followed): a temp file beside it, then a rename."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def write_text_inside(folder: Path, name: str, text: str) -> Path:
    """Write folder/name atomically, replacing (not following) a symlink there."""
    path = folder / name
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
