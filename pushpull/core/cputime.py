"""CPU time of a whole process, as precisely as the kernel keeps it.

Linux's scheduler accounts every thread's time on a CPU in nanoseconds (the first field of
/proc/<pid>/task/<tid>/schedstat). The usual user+system times (os.times, psutil) are counted in
clock ticks (10 ms): a small cell's server, which may use a few tens of ms in its window, is
then quantised to a few ticks. Where schedstat is missing (another OS, a kernel without
CONFIG_SCHEDSTATS), the tick-based times are used and the source says so.
"""

from __future__ import annotations

import os
from pathlib import Path

SCHEDSTAT, TICKS = "schedstat", "ticks"


def cpu_seconds(pid: int | None = None) -> tuple[float, str]:
    """(CPU seconds of every live thread of process `pid` (this one by default), source)."""
    task_dir = Path(f"/proc/{pid if pid is not None else 'self'}/task")
    try:
        total_ns = 0
        for task in task_dir.iterdir():
            try:
                total_ns += int((task / "schedstat").read_text().split()[0])
            except FileNotFoundError:  # a thread that ended meanwhile
                continue
        if total_ns > 0:
            return total_ns / 1e9, SCHEDSTAT
    except (OSError, ValueError, IndexError):
        pass
    if pid is None:
        times = os.times()
        return times.user + times.system, TICKS
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system, TICKS
