"""What one load-generator process measures, and the file it leaves behind.

The process owns one `Recorder`: the HdrHistograms (integer microseconds), the steady-state
`Window`, the segments every client was owed, its own CPU time and its event-loop lag; each client
owns a `Tracker` (loadtests/tracker.py) that accounts its deliveries here. Nothing here imports
Locust, so the harness can read and merge the files without being monkey-patched.

The file format is in pushpull/core/records.py, which also reads and merges it.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from hdrh.histogram import HdrHistogram

from loadtests.tracker import Tracker
from pushpull.core.clock import correction
from pushpull.core.cputime import cpu_seconds
from pushpull.core.files import write_json
from pushpull.core.histograms import HISTOGRAMS, new_histogram, record_us
from pushpull.core.host import cpu_model, nofile_limit
from pushpull.core.records import FILE_VERSION

TIMELINE_NS = 5_000_000_000  # the timeline clients' events and polls in the window's first 5 s
TIMELINE_CLIENTS = 16  # per process: enough to draw a typical client, not a lucky one


@dataclass
class Window:
    """The steady-state window, by publish time. Unknown (None) until spawning has finished."""

    start_ns: int | None = None
    end_ns: int | None = None

    def contains(self, t_ns: int) -> bool:
        """Whether a time on the server's clock (the window's clock) falls in the window."""
        return (
            self.start_ns is not None
            and self.start_ns <= t_ns
            and (self.end_ns is None or t_ns <= self.end_ns)
        )


@dataclass
class Recorder:
    """Everything one load-generator process measures."""

    transport: str
    window: Window = field(default_factory=Window)
    histograms: dict[str, HdrHistogram] = field(
        default_factory=lambda: {name: new_histogram() for name in HISTOGRAMS}
    )
    segments: list[list] = field(default_factory=list)
    received: int = 0
    duplicates: int = 0
    reordered: int = 0
    polls: int = 0
    empty_polls: int = 0
    sent: int = 0  # chat messages this process's clients sent
    highest_seq: int = 0  # the highest seq any client of this process received
    errors: int = 0
    clients: int = 0
    reconnects: int = 0  # churn reconnects begun inside the window
    recoveries: list[list] = field(default_factory=list)  # [dropped, back, caught up] ns each
    # per window event, its deliveries' latency buckets {seq: {bucket index: count}}: the unit
    # the confidence intervals resample (pushpull/core/intervals.py, docs/intervals.md). On the hot
    # path: measured 0.37 us more per delivery (1.27 against 0.91 us for record_delivery), next
    # to the ~35-50 us the load generator spends per delivery in all
    per_event: dict[int, dict[int, int]] = field(default_factory=dict)
    gaps: list[tuple] = field(default_factory=list)  # (tracker, lo, hi) per reconnect
    clients_at_window_start: int | None = None
    clock_offset_ns: int = 0  # measured: server clock - this process's clock
    clock_uncertainty_ns: int | None = None  # half the round trip of the sample that set it
    clock_correction_ns: int = 0  # what is added to receive times (see set_clock)
    # the first TIMELINE_CLIENTS clients' views of the window's first seconds, each
    # {"events": [[seq, t_pub, t_recv]], "polls": [[t_sent, t_answered]]}
    timelines: list[dict] = field(default_factory=list)
    cpu_start: os.times_result | None = None
    cpu_end: os.times_result | None = None
    written: bool = False  # its measurements went out (file or message to the master)
    task_cpu_start: tuple[float, str] | None = None  # (cpu_seconds(), source) at the edges
    task_cpu_end: tuple[float, str] | None = None

    def tracker(self) -> Tracker:
        tracker = Tracker(self)
        if len(self.timelines) < TIMELINE_CLIENTS:
            tracker.timeline = {"events": [], "polls": []}
            self.timelines.append(tracker.timeline)
        return tracker

    def server_now(self) -> int:
        """This process's clock moved onto the server's (the window is on the server's clock)."""
        return time.time_ns() + self.clock_correction_ns

    def in_window_now(self) -> bool:
        return self.window.contains(self.server_now())

    def in_timeline(self, t_ns: int) -> bool:
        start = self.window.start_ns
        return start is not None and start <= t_ns <= start + TIMELINE_NS

    def note_event(self, timeline: dict, event: dict, t_recv_ns: int) -> None:
        if self.in_timeline(event["t_pub"]):
            timeline["events"].append(
                [event["seq"], event["t_pub"], t_recv_ns + self.clock_correction_ns]
            )

    def note_poll(self, tracker: Tracker, t_sent_ns: int, t_answered_ns: int) -> None:
        """A poll of a client whose timeline is kept (the others are ignored)."""
        if tracker.timeline is not None and self.in_timeline(t_answered_ns):
            tracker.timeline["polls"].append([t_sent_ns, t_answered_ns])

    def set_clock(self, offset_ns: int, uncertainty_ns: int) -> None:
        """Correct receive times by the measured offset only when it is larger than its own
        uncertainty: on one host the true offset is 0 and the estimate is asymmetry noise."""
        self.clock_offset_ns, self.clock_uncertainty_ns = offset_ns, uncertainty_ns
        self.clock_correction_ns = correction(offset_ns, uncertainty_ns)

    def record_delivery(self, event: dict, t_recv_ns: int) -> int:
        """Record one first receipt; returns its latency in microseconds. The receive time is
        moved onto the server's clock first (see set_clock; 0 on one host)."""
        t_recv_ns += self.clock_correction_ns
        t_pub = event["t_pub"]
        # a chat message's latency runs from its sender's send time (its t_sched)
        latency_us = (t_recv_ns - (t_pub if event["kind"] == "tick" else event["t_sched"])) // 1000
        # by publish time: warm-up before the window (or while it is unknown), steady inside,
        # tail after (recorded nowhere)
        start, end = self.window.start_ns, self.window.end_ns
        if start is None or t_pub < start:
            record_us(self.histograms["warmup"], latency_us)
        elif end is None or t_pub <= end:
            self.received += 1
            index = record_us(self.histograms["latency"], latency_us)
            buckets = self.per_event.get(event["seq"])
            if buckets is None:
                buckets = self.per_event[event["seq"]] = {}
            buckets[index] = buckets.get(index, 0) + 1
            record_us(self.histograms["from_schedule"], (t_recv_ns - event["t_sched"]) // 1000)
        return latency_us

    def record_catchup(self, event: dict, t_recv_ns: int) -> int:
        """A gap event received after a reconnect: its latency, recorded apart (inside the
        window by publish time), never in the steady-state histograms."""
        t_recv_ns += self.clock_correction_ns
        latency_us = (t_recv_ns - event["t_pub"]) // 1000
        if self.window.contains(event["t_pub"]):
            record_us(self.histograms["catchup"], latency_us)
        return latency_us

    def record_poll(self, delivered: int) -> None:
        """Count a poll whose answer arrived inside the window."""
        if self.in_window_now():
            self.polls += 1
            if delivered == 0:
                self.empty_polls += 1

    def window_started(self) -> None:
        self.cpu_start = os.times()
        self.task_cpu_start = cpu_seconds()
        self.clients_at_window_start = self.clients

    def window_ended(self) -> None:
        self.cpu_end = os.times()
        self.task_cpu_end = cpu_seconds()

    def to_dict(self) -> dict:
        cpu = None
        if self.cpu_start is not None and self.cpu_end is not None:
            (start, source), (end, _) = self.task_cpu_start, self.task_cpu_end
            cpu = {
                "user_s": self.cpu_end.user - self.cpu_start.user,
                "system_s": self.cpu_end.system - self.cpu_start.system,
                "wall_s": self.cpu_end.elapsed - self.cpu_start.elapsed,
                "total_s": end - start,  # every thread, by the scheduler's ns accounting
                "source": source,
            }
        return {
            "version": FILE_VERSION,
            "pid": os.getpid(),
            "host": {
                "name": socket.gethostname(),
                "cores": os.cpu_count(),
                "cpu_model": cpu_model(),
                "nofile": nofile_limit(),  # its open-file limit: how many clients it could hold
            },
            "transport": self.transport,
            "window": {"start_ns": self.window.start_ns, "end_ns": self.window.end_ns},
            "segments": self.segments,
            "received": self.received,
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "polls": self.polls,
            "empty_polls": self.empty_polls,
            "sent": self.sent,
            "errors": self.errors,
            "reconnects": self.reconnects,
            "recoveries": self.recoveries,
            "per_event": {str(seq): list(b.items()) for seq, b in self.per_event.items()},
            "gaps": [[lo, hi, tracker.missing_in(lo, hi)] for tracker, lo, hi in self.gaps],
            "clients_at_window_start": self.clients_at_window_start,
            "clock": {
                "offset_ns": self.clock_offset_ns,
                "uncertainty_ns": self.clock_uncertainty_ns,
                "correction_ns": self.clock_correction_ns,
            },
            "cpu": cpu,
            "timelines": [t for t in self.timelines if t["events"]],
            "histograms": {
                name: hist.encode().decode("ascii") for name, hist in self.histograms.items()
            },
        }

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / f"loadgen-{os.getpid()}.json"
        write_json(path, self.to_dict(), compact=True)
        return path
