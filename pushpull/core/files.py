"""Atomic writes: a reader (the harness, the analysis, an interrupted run) never sees half a file."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(path: Path, data: dict, *, compact: bool = False) -> None:
    """Write `data` as JSON to `path` through a temp file and a rename. A failed write (a full
    disk, say) leaves the old file as it was and no temp file behind. `compact` leaves out the
    indentation (the load generator's files, which only programs read)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    text = json.dumps(data) if compact else json.dumps(data, indent=2) + "\n"
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None  # name the real file
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
