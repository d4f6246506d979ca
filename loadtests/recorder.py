"""What one load-generator process measures, and the file it leaves behind.

Every client owns a `Tracker`: its baseline (the server's last_seq when it joined), which seqs it
has received (a bitmap, so duplicates and reorders are exact) and how many of them fall in the
steady-state window. The process owns one `Recorder`: the HdrHistograms (integer microseconds),
the window, its own CPU time and its event-loop lag. Nothing here imports Locust, so the harness
can read and merge the files (`merge_process_files`) without being monkey-patched.

File format (`loadgen-<pid>.json`, one per load-generator process, version 3):
    {"version": 1, "pid", "transport", "window": {"start_ns", "end_ns"},
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
                    "caught_up"}}  # reconnect begun -> every gap event received, us
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from hdrh.histogram import HdrHistogram

from pushpull.clock import correction
from pushpull.cputime import cpu_seconds
from pushpull.manifest import cpu_model

FILE_VERSION = 3  # 2: `timelines` (several clients) replaces `timeline`; 3: churn
HIST_LOWEST_US = 1
HIST_HIGHEST_US = 60_000_000
HIST_DIGITS = 3
HISTOGRAMS = ("latency", "from_schedule", "warmup", "loop_lag", "catchup", "connect", "caught_up")
TIMELINE_NS = 5_000_000_000  # the timeline clients' events and polls in the window's first 5 s
TIMELINE_CLIENTS = 16  # per process: enough to draw a typical client, not a lucky one


def new_histogram() -> HdrHistogram:
    return HdrHistogram(HIST_LOWEST_US, HIST_HIGHEST_US, HIST_DIGITS)


_LAYOUT = new_histogram()  # every histogram here has this layout (the same range and digits)
_HALF_MAG = _LAYOUT.sub_bucket_half_count_magnitude
_HALF_MAG_PLUS_1 = _HALF_MAG + 1
_HALF_COUNT = _LAYOUT.sub_bucket_half_count


def record_us(histogram: HdrHistogram, value_us: int) -> int:
    """Record, clamped to the trackable range (a same-host latency can come out 0 us).

    The same arithmetic as `HdrHistogram.record_value` (bucket from the value's bit length,
    sub-bucket by shift), inlined: it runs twice per delivery, and the library's five method
    calls per value cost ~2.4 us here against ~0.7 us. tests/test_recorder.py checks that both
    give identical histograms over the whole range. Returns the bucket's index."""
    if value_us < HIST_LOWEST_US:
        value_us = HIST_LOWEST_US
    elif value_us > HIST_HIGHEST_US:
        value_us = HIST_HIGHEST_US
    h = histogram
    bucket = (value_us | h.sub_bucket_mask).bit_length() - h.unit_magnitude - _HALF_MAG_PLUS_1
    index = ((bucket + 1) << _HALF_MAG) + (value_us >> (bucket + h.unit_magnitude)) - _HALF_COUNT
    h.counts[index] += 1
    h.total_count += 1
    if value_us < h.min_value:
        h.min_value = value_us
    if value_us > h.max_value:
        h.max_value = value_us
    return index


def parse_event(text: str) -> dict:
    """An event's JSON text as the fields a load generator needs (seq, t_pub, t_sched, kind).
    The servers write every event as '{"seq":N,"t_pub":N,"t_sched":N,"kind":"...",...' (one
    encode, docs/protocol.md), so those four are read from the text's head without decoding the
    rest (a padded event's data can be 60 kB); anything else is decoded in full."""
    head = text.split(",", 4)
    if (
        len(head) == 5
        and head[0].startswith('{"seq":')
        and head[1].startswith('"t_pub":')
        and head[2].startswith('"t_sched":')
        and head[3].startswith('"kind":"')
    ):
        try:
            return {
                "seq": int(head[0][7:]),
                "t_pub": int(head[1][8:]),
                "t_sched": int(head[2][10:]),
                "kind": head[3][8:-1],
            }
        except ValueError:
            pass
    return json.loads(text)


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
    # the confidence intervals resample (pushpull/intervals.py, docs/intervals.md). On the hot
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
        write_json(path, self.to_dict())
        return path


def write_json(path: Path, data: dict) -> None:
    """Write atomically: the harness never reads half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(data))
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
