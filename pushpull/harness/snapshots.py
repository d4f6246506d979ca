"""The servers at one instant: their counters (/stats), their CPU time as the kernel counts it
(pushpull/core/cputime.py), their memory, and the queue's Redis's CPU; the idle baseline
between two of them; and the offset from this machine's clock to the server's."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

from pushpull.core.clock import correction, measure_offset
from pushpull.core.cputime import cpu_seconds
from pushpull.harness.mq import Redis
from pushpull.harness.procs import (
    HarnessError,
    get_json,
)


@dataclass
class Snapshot:
    """The servers at one instant: each process's own counters (the first's first), their CPU
    time as the kernel sees it, and the queue's Redis's CPU time when there is one."""

    t_ns: int
    stats: list[dict]
    cpu_s: float
    rss_bytes: int
    queue_cpu_s: float | None = None
    cpu_source: str | None = None  # schedstat (ns), ticks (10 ms), or the target's /stats

    def total(self, key: str) -> int:
        return sum(stats[key] for stats in self.stats)


def snapshot(
    urls: list[str],
    processes: list[psutil.Process] | None,
    redis: Redis | None,
    stats_last: bool = False,
) -> Snapshot:
    """Counters from each server's /stats (no URLs: the target has none); CPU and memory from
    the kernel for processes the harness started, else (None) from what /stats reports. /stats
    is read before the CPU (at an interval's start) or, with `stats_last`, after it (at its end),
    so the harness's own requests fall outside the measured interval."""
    t_ns = time.time_ns()
    if processes is not None and stats_last:
        taken = snapshot([], processes, redis)
        taken.stats = [get_json(url + "/stats") for url in urls]
        return taken
    stats = [get_json(url + "/stats") for url in urls]
    if processes is None:  # a target: its own report of itself, if it gives one
        cpu_s = sum(s["cpu_user_s"] + s.get("cpu_system_s", 0.0) for s in stats) if stats else None
        rss = sum(s["rss_bytes"] for s in stats) if stats else None
        source = "the target's /stats" if stats else None
    else:
        cpu_s = rss = 0
        source = None
        for process in processes:
            seconds, source = cpu_seconds(process.pid)
            cpu_s += seconds
            rss += process.memory_info().rss
    queue_cpu_s = None if redis is None else redis.cpu_s()
    return Snapshot(t_ns, stats, cpu_s, rss, queue_cpu_s, source)


IDLE_SETTLE_S = 0.3  # after the verify probes closed


def cpu_share(before: Snapshot | None, after: Snapshot | None) -> float | None:
    """The server side's CPU seconds per second between two snapshots (its queue's Redis
    included), or None where either has no CPU figure."""
    if (
        before is None
        or after is None
        or before.cpu_s is None
        or after.cpu_s is None
        or after.t_ns <= before.t_ns
    ):
        return None
    used = after.cpu_s - before.cpu_s
    if after.queue_cpu_s is not None and before.queue_cpu_s is not None:
        used += after.queue_cpu_s - before.queue_cpu_s
    return used / ((after.t_ns - before.t_ns) / 1e9)


def idle_cpu_share(before: Snapshot | None, after: Snapshot | None) -> float | None:
    """The server side's CPU seconds per second with no client connected (between two
    snapshots taken before Locust starts; the first reads /stats before the CPU, the second
    reads no /stats, so no request of the harness falls inside), or None if not measured."""
    return cpu_share(before, after)


def server_clock_correction(url: str, unavailable: dict) -> int:
    """What to add to this machine's clock to read the server's (pushpull/core/clock.py), as the
    load generator corrects its own; 0 when the server has no /time."""
    if "clock_offset_us" in unavailable:
        return 0
    try:
        return correction(*measure_offset(url))
    except (OSError, ValueError, KeyError) as exc:
        raise HarnessError(f"GET {url}/time: {exc}") from None
