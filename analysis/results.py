"""Read a run folder (results only: analysis never starts anything).

run = load_run(Path("results/latest"))
run.cells[0]["latency_us"]["p99"], run.histogram(run.cells[0], "latency")
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from hdrh.histogram import HdrHistogram

from analysis.style import label

SUPPORTED_SCHEMA = 1


class PlotError(Exception):
    """The run folder can't be read: one line, exit status 1."""


@dataclass
class Run:
    path: Path
    manifest: dict
    summary: dict

    @property
    def cells(self) -> list[dict]:
        return self.summary["cells"]

    def points(self) -> list[dict]:
        """One cell per measured point: of repeated cells (--repeat), the one with the median
        p50, so a chart shows a measured cell, not a blend of several."""
        groups: dict[str, list[dict]] = {}
        for cell in self.cells:
            groups.setdefault(point_key(cell), []).append(cell)
        chosen = []
        for group in groups.values():
            group.sort(
                key=lambda c: c["latency_us"]["p50"] if c["latency_us"]["p50"] is not None else 0
            )
            chosen.append(group[(len(group) - 1) // 2])
        return chosen

    def histogram(self, cell: dict, name: str = "latency") -> HdrHistogram | None:
        path = self.path / cell["name"] / "histograms.json"
        try:
            encoded = json.loads(path.read_text())[name]
        except (OSError, KeyError, ValueError):
            return None
        return HdrHistogram.decode(encoded.encode("ascii"))

    def title_suffix(self) -> str:
        """What was run, for chart titles: rate, window, machine."""
        args = self.manifest.get("arguments", {})
        rates = sorted({c["rate"] for c in self.cells})
        rate = "/".join(f"{r:g}" for r in rates)
        cores = self.manifest.get("cores")
        return (
            f"broadcast at {rate} events/s, {args.get('duration', '?'):g} s windows, {cores} cores"
        )


def load_run(path: Path) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise PlotError(f"{path} is not a run folder (expected e.g. results/latest)")
    try:
        summary = json.loads((path / "summary.json").read_text())
    except FileNotFoundError:
        raise PlotError(f"{path} has no summary.json (is it a pushpull run folder?)") from None
    except ValueError as exc:
        raise PlotError(f"{path / 'summary.json'} is not valid JSON: {exc}") from None
    if summary.get("schema_version") != SUPPORTED_SCHEMA:
        raise PlotError(
            f"{path / 'summary.json'}: schema_version {summary.get('schema_version')} is not supported (expected {SUPPORTED_SCHEMA})"
        )
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        manifest = {}
    return Run(path.resolve(), manifest, summary)


def varying(run: Run, field: str) -> bool:
    return len({c.get(field) for c in run.cells} - {None}) > 1


def series_key(cell: dict, run: Run) -> tuple:
    """Cells drawn on one line: same transport, and same poll interval, Socket.IO client and
    number of Locust processes when the run swept those."""
    variant = []
    if cell.get("payload_bytes") and varying(run, "payload_bytes"):
        variant.append(f"{cell['payload_bytes']} B")
    if cell["poll_interval"] is not None and varying(run, "poll_interval"):
        variant.append(f"every {cell['poll_interval']:g} s")
    if cell.get("socketio_client") and varying(run, "socketio_client"):
        variant.append(f"{cell['socketio_client']} client")
    if varying(run, "loadgen_procs"):
        variant.append(f"{cell['loadgen_procs']} Locust proc.")
    return cell["transport"], ", ".join(variant)


def series_label(key: tuple) -> str:
    transport, variant = key
    return label(transport) + (f" ({variant})" if variant else "")


def point_key(cell: dict) -> str:
    """A cell's name without its repeat suffix: 'socketio-c100-r2-rep2' -> 'socketio-c100-r2'."""
    return re.sub(r"-rep\d+$", "", cell["name"])


def cell_variants(cell: dict) -> list[str]:
    """What sets a cell apart beyond transport, clients and rate, in words:
    ['every 0.5 s', 'python-socketio client', 'chat', '1024 B', 'repeat 2']."""
    variants = []
    if cell.get("poll_interval") is not None:
        variants.append(f"every {cell['poll_interval']:g} s")
    if cell.get("socketio_client") == "python-socketio":
        variants.append("python-socketio client")
    if cell.get("loadgen_procs", 1) > 1:
        variants.append(f"{cell['loadgen_procs']} Locust processes")
    if cell.get("scenario") == "chat":
        variants.append("chat")
    if cell.get("payload_bytes"):
        variants.append(f"{cell['payload_bytes']} B")
    if cell.get("repeat", 1) > 1:
        variants.append(f"repeat {cell['repeat']}")
    return variants
