"""What one load-generator process measures, and the file it leaves behind.

Every client owns a `Tracker`: its baseline (the server's last_seq when it joined), which seqs it
has received (a bitmap, so duplicates and reorders are exact) and how many of them fall in the
steady-state window. The process owns one `Recorder`: the HdrHistograms (integer microseconds),
the window, its own CPU time and its event-loop lag. Nothing here imports Locust, so the harness
can read and merge the files without being monkey-patched.

The file format is in pushpull/core/records.py, which also reads and merges it.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from hdrh.histogram import HdrHistogram

from pushpull.core.clock import correction
from pushpull.core.cputime import cpu_seconds
from pushpull.core.files import write_json
from pushpull.core.histograms import HISTOGRAMS, new_histogram, record_us
from pushpull.core.host import cpu_model
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


class Tracker:
    """One client's view of the event stream: baseline, bitmap of seqs seen, counts; across
    voluntary disconnects (churn), the gaps it was away for and how it caught up."""

    __slots__ = (
        "recorder", "base", "bits", "max_seq", "segment", "timeline",
        "away_at", "gap", "pending", "back_started_ns", "back_in_window", "recovery",
    )  # fmt: skip

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.timeline: dict | None = None  # set for the clients whose timelines are kept
        self.base: int | None = None  # seqs are stored as bit (seq - base - 1)
        self.bits = bytearray()
        self.max_seq = 0
        self.segment: list | None = None
        self.away_at: int | None = None  # the seq this client had when it left (churn)
        self.gap: tuple[int, int] | None = None  # (lo, hi]: published while it was away
        self.pending = 0  # gap events not received yet
        self.back_started_ns = 0  # when the reconnect began (this process's clock)
        self.back_in_window = False
        self.recovery: list | None = None  # [dropped, back, caught up] after a server drop

    def joined(self, last_seq: int) -> None:
        """The server said: every event after `last_seq` is owed to this client from now on."""
        if self.base is None:
            self.base = last_seq
        self.segment = [last_seq, None]
        self.recorder.segments.append(self.segment)

    def forget(self) -> None:
        """This client never really joined (its connect failed): it is owed nothing."""
        if self.segment is not None:
            self.segment[1] = self.segment[0]
            self.segment = None

    def left(self) -> None:
        """The connection ended. Everything any client of this process had received by then was
        published while this one was connected, so it stays owed (and lost if never received)."""
        if self.segment is not None:
            self.segment[1] = max(self.max_seq, self.segment[0], self.recorder.highest_seq)
            self.segment = None

    def away(self) -> None:
        """The client leaves on purpose (churn): its connection is owed what it has received up
        to now; everything after belongs to the gap, measured when it comes back."""
        if self.segment is not None:
            self.away_at = self.segment[1] = max(self.max_seq, self.segment[0])
            self.segment = None

    def dropped(self, t_ns: int) -> None:
        """The server dropped the connection (a storm): like leaving, and the recovery is timed
        (on the server's clock): [dropped, welcomed again, every missed event received]."""
        self.away()
        if self.away_at is None:  # it had no segment: never joined, nothing to recover
            return
        correction = self.recorder.clock_correction_ns
        self.recovery = [t_ns + correction, None, None]
        self.recorder.recoveries.append(self.recovery)

    def coming_back(self, started_ns: int) -> None:
        """The reconnect begins (after the downtime): connect and catch-up times run from here."""
        self.back_started_ns = started_ns
        self.back_in_window = self.recorder.in_window_now()
        if self.back_in_window:
            self.recorder.reconnects += 1

    def back(self, head: int, t_recv_ns: int) -> None:
        """Reconnected: the server's newest seq was `head` when it welcomed (or first answered)
        the client. The seqs (away_at, head] were published while it was away: the gap. A
        client that resumes receives them next (catch-up); one that does not never will."""
        lo = self.away_at if self.away_at is not None else head
        self.away_at = None
        hi = max(lo, head)
        self.gap = (lo, hi)
        self.pending = len(self.missing_in(lo, hi))
        self.recorder.gaps.append((self, lo, hi))
        self.segment = [hi, None]
        self.recorder.segments.append(self.segment)
        if self.back_in_window:
            record_us(
                self.recorder.histograms["connect"], (t_recv_ns - self.back_started_ns) // 1000
            )
        if self.recovery is not None:
            self.recovery[1] = t_recv_ns + self.recorder.clock_correction_ns
        if self.pending == 0:
            self._caught_up(t_recv_ns)

    def _caught_up(self, t_recv_ns: int) -> None:
        if self.recovery is not None:
            self.recovery[2] = t_recv_ns + self.recorder.clock_correction_ns
            self.recovery = None
        if self.back_in_window:
            elapsed_us = (t_recv_ns - self.back_started_ns) // 1000
            record_us(self.recorder.histograms["caught_up"], elapsed_us)

    def _mark(self, seq: int) -> None:
        index = seq - self.base - 1
        if (index >> 3) >= len(self.bits):
            self.bits.extend(bytes((index >> 3) - len(self.bits) + 64))
        self.bits[index >> 3] |= 1 << (index & 7)
        self.max_seq = max(self.max_seq, seq)

    def missing_in(self, lo: int, hi: int) -> list[int]:
        """The seqs in (lo, hi] this client never received."""
        base, bits = self.base or 0, self.bits
        missing = []
        for seq in range(lo + 1, hi + 1):
            index = seq - base - 1
            byte = index >> 3
            if index < 0 or byte >= len(bits) or not bits[byte] & (1 << (index & 7)):
                missing.append(seq)
        return missing

    def deliver(self, event: dict, t_recv_ns: int) -> int | None:
        """Account one received event: its latency in us, or None for a duplicate or an event
        not owed to this client."""
        seq = event["seq"]
        segment = self.segment
        if self.base is None or seq <= self.base:
            return None
        if segment is None:
            if self.away_at is not None and seq > self.away_at:
                self._mark(seq)  # reconnecting: arrived before the welcome (a gap event)
            return None
        catchup = seq <= segment[0]  # published before this connection's welcome
        if catchup and (self.gap is None or not self.gap[0] < seq <= self.gap[1]):
            return None  # owed to an earlier connection, not this one
        index = seq - self.base - 1
        byte, bit = index >> 3, 1 << (index & 7)
        if byte >= len(self.bits):
            self.bits.extend(bytes(byte - len(self.bits) + 64))
        recorder = self.recorder
        if self.bits[byte] & bit:
            recorder.duplicates += 1
            return None
        self.bits[byte] |= bit
        if seq < self.max_seq:
            recorder.reordered += 1
        else:
            self.max_seq = seq
            if seq > recorder.highest_seq:
                recorder.highest_seq = seq
        if catchup:  # kept apart from steady-state latency
            latency_us = recorder.record_catchup(event, t_recv_ns)
            if self.pending > 0:
                self.pending -= 1
                if self.pending == 0:
                    self._caught_up(t_recv_ns)
            return latency_us
        latency_us = recorder.record_delivery(event, t_recv_ns)
        if self.timeline is not None:
            recorder.note_event(self.timeline, event, t_recv_ns)
        return latency_us


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
