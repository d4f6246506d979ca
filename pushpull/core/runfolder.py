"""Reading a run folder: the run's summary.json (upgraded to the current schema, every cell's
transport known), its manifest.json, and a cell's histograms.json. The analysis draws from what
this reads; `pushpull validate` checks its figures through it.

    manifest, summary = read_run(Path("results/latest"))
    read_histogram(Path("results/latest"), summary["cells"][0]["name"], "latency")
"""

from __future__ import annotations

import json
from pathlib import Path

from hdrh.histogram import HdrHistogram

from pushpull.core import transports
from pushpull.core.schema import READABLE_VERSIONS, upgrade_cell


class RunFolderError(Exception):
    """The run folder can't be read: one line naming the file and what is wrong with it."""


def read_run(path: Path) -> tuple[dict, dict]:
    """(manifest, summary) of the run folder `path`; the manifest is {} when it is missing."""
    path = Path(path)
    if not path.is_dir():
        raise RunFolderError(f"{path} is not a run folder (expected e.g. results/latest)")
    try:
        summary = json.loads((path / "summary.json").read_text())
    except FileNotFoundError:
        raise RunFolderError(f"{path} has no summary.json (is it a pushpull run folder?)") from None
    except ValueError as exc:
        raise RunFolderError(f"{path / 'summary.json'} is not valid JSON: {exc}") from None
    version = summary.get("schema_version")
    if version not in READABLE_VERSIONS:
        readable = ", ".join(map(str, READABLE_VERSIONS))
        raise RunFolderError(
            f"{path / 'summary.json'}: schema_version {version} is not supported (readable: {readable})"
        )
    summary["cells"] = [upgrade_cell(cell, version) for cell in summary.get("cells", [])]
    for cell in summary["cells"]:
        try:
            transports.get(cell["transport"])
        except transports.UnknownTransport as exc:
            raise RunFolderError(
                f"{path / 'summary.json'}: cell {cell.get('name')}: {exc}"
            ) from None
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        manifest = {}
    return manifest, summary


def read_histogram(run_dir: Path, cell_name: str, name: str = "latency") -> HdrHistogram | None:
    """One of a cell's histograms (pushpull/core/histograms.py), None where it was not kept."""
    path = Path(run_dir) / cell_name / "histograms.json"
    try:
        encoded = json.loads(path.read_text())[name]
    except (OSError, KeyError, ValueError):
        return None
    return HdrHistogram.decode(encoded.encode("ascii"))
