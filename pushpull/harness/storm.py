"""The storm (`pushpull storm`): every connection dropped at once mid-window, and the figures of
how the clients came back."""

from __future__ import annotations

import math
import time

from pushpull.harness.procs import (
    HarnessError,
    request_json,
)
from pushpull.harness.snapshots import Snapshot, cpu_share, snapshot


def drop_everything(run) -> dict:
    """The storm: `storm_at_s` into the window of `run` (a pushpull/harness/cell.py CellRun),
    every server drops every client connection at once (POST /admin/drop); the clients come
    back as their libraries do."""
    run.sleep_until(
        run.window["start_ns"] + int(run.config.storm_at_s * 1e9), "before the drop", "window"
    )
    before = snapshot([], run.processes, run.redis)
    dropped = 0
    sent = time.time_ns()
    for url in run.urls:
        status, body = request_json(url + "/admin/drop", "POST", {})
        if status != 200:
            raise HarnessError(f"POST {url}/admin/drop answered {status}: {body}")
        dropped += body["dropped"]
    t_drop_ns = (sent + time.time_ns()) // 2 + run.to_server  # the server's clock, as receipts
    return {"t_drop_ns": t_drop_ns, "dropped": dropped, "snapshot": before}


STORM_SHARES = (50, 99, 100)


def storm_figures(storm: dict, merged: dict, start, end, window: dict) -> dict:
    """After the drop: how long until 50/99/100% of the dropped clients were welcomed again and
    had every missed event (seconds since the drop, null if not reached by the end), the
    recovery curves (time at each whole percent), and the server's CPU before and after."""
    t_drop = storm["t_drop_ns"]
    records = merged["recoveries"]
    count = len(records)

    def curve(index: int) -> list[float | None]:
        """Seconds after the drop by which k% of the dropped clients had got there, k = 0..100
        (None: that share never did within the window)."""
        times = sorted((r[index] - t_drop) / 1e9 for r in records if r[index] is not None)
        points: list[float | None] = []
        for k in range(101):
            needed = math.ceil(count * k / 100)
            if needed == 0:
                points.append(0.0)
            else:
                points.append(round(times[needed - 1], 4) if needed <= len(times) else None)
        return points

    back, caught = curve(1), curve(2)
    before, after = storm["snapshot"], end

    def cpu_percent(a: Snapshot, b: Snapshot) -> float | None:
        share = cpu_share(a, b)
        return None if share is None else round(100 * share, 1)

    return {
        "t_drop_ns": t_drop,
        "dropped": storm["dropped"],  # connections the servers closed
        "clients_dropped": count,  # clients that saw their connection end and came back for it
        "never_back": sum(1 for r in records if r[1] is None),
        "never_caught_up": sum(1 for r in records if r[2] is None),
        "reconnected_s": {f"p{k}": back[k] for k in STORM_SHARES},
        "caught_up_s": {f"p{k}": caught[k] for k in STORM_SHARES},
        "curve": {"reconnected_s": back, "caught_up_s": caught},
        "server_cpu_percent_before": cpu_percent(start, before),
        "server_cpu_percent_after": cpu_percent(before, after),
        "after_s": round((window["end_ns"] - t_drop) / 1e9, 3),
    }
