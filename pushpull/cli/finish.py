"""What every measuring command does after its cells: draw the run's charts, summary.md and
report.html from what was measured (an interrupted or partly failed run is drawn too), and say
where they are."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from pushpull.harness.procs import output_error


def measured(run_dir: Path) -> bool:
    """Whether the run folder holds at least one measured cell (then it can be drawn)."""
    try:
        return bool(json.loads((run_dir / "summary.json").read_text())["cells"])
    except (OSError, ValueError, KeyError):
        return False


def finish(args: argparse.Namespace, status: int, run_dir: Path) -> int:
    """The run's status, made worse by a report that could not be drawn (unless --no-plot)."""
    if not getattr(args, "no_plot", False) and measured(run_dir):
        drawn = draw_report(run_dir)  # drawn whatever the run's status: what was measured shows
        status = status or drawn
    return status


def draw_report(run_dir: Path) -> int:
    """Charts, summary.md and report.html of a run, from its data: 0, or 1 with one line."""
    from analysis.report import write_report
    from analysis.results import PlotError

    try:
        report = write_report(run_dir)
    except PlotError as exc:
        print(f"pushpull report: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the charts or the report could not be written
        print(f"pushpull report: error: {output_error(exc) or exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug in drawing must not hide the measurements: one line, log kept
        if interrupted(exc):
            raise KeyboardInterrupt from None
        log = Path(run_dir) / "error.log"
        log.write_text(traceback.format_exc())
        print(
            f"pushpull report: internal error: {type(exc).__name__}: {exc} (traceback in {log})",
            file=sys.stderr,
        )
        return 1
    print(f"pushpull: charts in {report.parent / 'charts'}/")
    print(f"pushpull: report in {report}")
    return 0


def interrupted(exc: BaseException | None) -> bool:
    """Whether `exc` was caused by Ctrl-C (a KeyboardInterrupt in its chain)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
