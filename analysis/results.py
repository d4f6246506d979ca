"""Read a run folder (results only: analysis never starts anything).

run = load_run(Path("results/latest"))
run.cells[0]["latency_us"]["p99"], run.histogram(run.cells[0], "latency")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hdrh.histogram import HdrHistogram

from analysis.style import label
from pushpull.core import variants
from pushpull.core.runfolder import RunFolderError, read_histogram, read_run


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
        return read_histogram(self.path, cell["name"], name)

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
    try:
        manifest, summary = read_run(Path(path))
    except RunFolderError as exc:
        raise PlotError(str(exc)) from None
    return Run(Path(path).resolve(), manifest, summary)


def series_key(cell: dict, run: Run, facets: frozenset[str] = frozenset()) -> tuple:
    """Cells drawn on one line: same transport, and the same variant of every dimension the run
    varied (poll interval, client, Locust processes, payload...; see pushpull/core/variants.py),
    but those of `facets`, which a chart draws as panels of their own."""
    return variants.series_key(cell, variants.series_fields(run.cells) - facets)


NETWORK = frozenset({"network"})  # a chart drawn per network: one panel each


def network_panels(run: Run) -> list[str | None]:
    """The networks of a run, by round trip (loopback, None, first): [None] when it has one."""
    found = {}
    for cell in run.points():
        profile = cell.get("network")
        found[profile["name"] if profile else None] = profile["rtt_ms"] if profile else -1.0
    return sorted(found, key=lambda name: found[name]) if len(found) > 1 else [None]


def on_network(cell: dict, name: str | None) -> bool:
    return ((cell.get("network") or {}).get("name")) == name


def series_label(key: tuple) -> str:
    transport, variant = key
    return label(transport) + (f" ({variant})" if variant else "")


def point_key(cell: dict) -> str:
    """A cell's name without its repeat: 'socketio-c100-r2-rep2' -> 'socketio-c100-r2'."""
    return variants.point_name(cell)


def cell_variants(cell: dict) -> list[str]:
    """What sets a cell apart beyond transport, clients and rate, in words:
    ['every 0.5 s', 'python-socketio client', 'chat', '1024 B payload', 'repeat 2']."""
    return variants.words(cell)
