"""The load generator's file: what one load-generator process leaves behind (written by
loadtests/recorder.py's `Recorder`), and its reader: `merge_process_files` merges the files of
several processes exactly, `expected_deliveries` and `gap_figures` say what was owed.

File format (`loadgen-<pid>.json`, one per load-generator process, version 3):
    {"version": 3, "pid", "transport", "window": {"start_ns", "end_ns"},
     "segments": [[baseline, end_seq_or_null], ...],   # one per client connection
     "received", "duplicates", "reordered", "polls", "empty_polls", "sent", "errors",
     "clients_at_window_start", "cpu": {"user_s", "system_s", "wall_s"},
     "clock": {"offset_ns", "uncertainty_ns", "correction_ns"},   # server clock - this one's
     "timelines": [{"events": [[seq, t_pub, t_recv]], "polls": [[t_sent, t_answered]]}, ...],
     "reconnects",                 # churn reconnects begun inside the window
     "per_event": {seq: [[bucket index, count], ...]},   # each window event's deliveries
     "recoveries": [[dropped_ns, back_ns, caught_up_ns], ...],   # after server drops (storm),
                                   # on the server's clock; null where it never happened
     "gaps": [[lo, hi, [missing seq, ...]], ...],   # per reconnect: seqs (lo, hi] published
                                   # while the client was away, and those it never received
     "histograms": {"latency", "from_schedule", "warmup", "loop_lag",
                    "catchup",     # latency of gap events received after a reconnect
                    "connect",     # reconnect begun -> welcome (or first answer), us
                    "caught_up",   # reconnect begun -> every gap event received, us
                    "first_connect"}}  # first connect begun -> welcome (or baseline), us
"""

from __future__ import annotations

import json
from pathlib import Path

from hdrh.histogram import HdrHistogram

from pushpull.core.histograms import HISTOGRAMS, new_histogram

FILE_VERSION = 3  # 2: `timelines` (several clients) replaces `timeline`; 3: churn


def expected_deliveries(segments: list[list], first_seq: int | None, last_seq: int | None) -> int:
    """Events in [first_seq, last_seq] (the window's) owed to the clients: for each connection
    with baseline b and end e (None while connected), the seqs in (b, e] within the window."""
    if first_seq is None or last_seq is None:
        return 0
    total = 0
    for base, end in segments:
        lo = max(first_seq, base + 1)
        hi = last_seq if end is None else min(last_seq, end)
        total += max(0, hi - lo + 1)
    return total


def gap_figures(gaps: list[list], first_seq: int | None, last_seq: int | None) -> tuple[int, int]:
    """(owed, lost) over the churn gaps, within the window's seqs [first_seq, last_seq]: the
    events published while clients were away, and those of them they never received."""
    if first_seq is None or last_seq is None:
        return 0, 0
    owed = lost = 0
    for lo, hi, missing in gaps:
        owed += max(0, min(hi, last_seq) - max(lo + 1, first_seq) + 1)
        lost += sum(1 for seq in missing if first_seq <= seq <= last_seq)
    return owed, lost


def merge_process_files(paths: list[Path]) -> dict:
    """Merge the files of several load-generator processes exactly: counts add, histograms add
    bucket by bucket (HdrHistogram decode + add), CPU stays per process."""
    merged: dict = {
        "processes": [],
        "segments": [],
        "received": 0,
        "duplicates": 0,
        "reordered": 0,
        "polls": 0,
        "empty_polls": 0,
        "sent": 0,
        "errors": 0,
        "reconnects": 0,
        "recoveries": [],
        "per_event": {},
        "gaps": [],
        "clients_at_window_start": 0,
        "histograms": {name: new_histogram() for name in HISTOGRAMS},
        "window": None,
    }
    for path in sorted(paths):
        data = json.loads(Path(path).read_text())
        if data.get("version") != FILE_VERSION:
            raise ValueError(
                f"{path}: unsupported load-generator file version {data.get('version')}"
            )
        for key in (
            "received",
            "duplicates",
            "reordered",
            "polls",
            "empty_polls",
            "sent",
            "errors",
            "reconnects",
        ):
            merged[key] += data[key]
        merged["gaps"].extend(data["gaps"])
        merged["recoveries"].extend(data["recoveries"])
        for seq, buckets in data["per_event"].items():
            into = merged["per_event"].setdefault(int(seq), {})
            for index, count in buckets:
                into[index] = into.get(index, 0) + count
        merged["clients_at_window_start"] += data["clients_at_window_start"] or 0
        merged["segments"].extend(data["segments"])
        loop_lag = HdrHistogram.decode(data["histograms"]["loop_lag"].encode("ascii"))
        merged["processes"].append(
            {
                "pid": data["pid"],
                "host": data.get("host"),
                "cpu": data["cpu"],
                "clock": data["clock"],
                "loop_lag_p99_us": loop_lag.get_value_at_percentile(99)
                if loop_lag.get_total_count()
                else None,
            }
        )
        merged["window"] = merged["window"] or data["window"]
        for name, encoded in data["histograms"].items():
            merged["histograms"][name].add(HdrHistogram.decode(encoded.encode("ascii")))
    return merged
