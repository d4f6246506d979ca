"""One client's view of the event stream, for what its load-generator process measures.

Every client owns a `Tracker`: its baseline (the server's last_seq when it joined), which seqs it
has received (a bitmap, so duplicates and reorders are exact), which segments of the stream it
was owed across voluntary disconnects (churn) and server drops, and how it caught up. What it
accounts goes to its process's `Recorder` (loadtests/recorder.py). Nothing here imports Locust.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pushpull.core.histograms import record_us

if TYPE_CHECKING:
    from loadtests.recorder import Recorder


class Tracker:
    """One client's view of the event stream: baseline, bitmap of seqs seen, counts; across
    voluntary disconnects (churn), the gaps it was away for and how it caught up."""

    __slots__ = (
        "recorder", "base", "bits", "max_seq", "segment", "timeline",
        "away_at", "gap", "pending", "back_started_ns", "back_in_window", "recovery",
        "connect_started_ns",
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
        self.connect_started_ns = 0  # when the first connect began (this process's clock)
        self.back_in_window = False
        self.recovery: list | None = None  # [dropped, back, caught up] after a server drop

    def joined(self, last_seq: int, t_recv_ns: int) -> None:
        """The server said (its answer arrived at t_recv_ns): every event after `last_seq` is
        owed to this client from now on. The first time, the connect's time is recorded."""
        if self.base is None:
            self.base = last_seq
            if self.connect_started_ns:
                elapsed_us = (t_recv_ns - self.connect_started_ns) // 1000
                record_us(self.recorder.histograms["first_connect"], elapsed_us)
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
