"""Per-client accounting and exact merging of load-generator measurements."""

from __future__ import annotations

import json
import random

from loadtests.recorder import Recorder
from pushpull.core.histograms import new_histogram, record_us
from pushpull.core.records import expected_deliveries, merge_process_files

T0 = 1_800_000_000_000_000_000


def event(seq: int, t_pub: int = T0 + 5_000_000) -> dict:
    return {"seq": seq, "t_pub": t_pub, "t_sched": t_pub - 1000, "kind": "tick", "data": {}}


def steady_recorder() -> Recorder:
    recorder = Recorder(transport="test")
    recorder.window.start_ns, recorder.window.end_ns = T0, T0 + 10_000_000_000
    return recorder


def test_tracker_counts_duplicates_reorders_and_ignores_what_is_not_owed():
    recorder = steady_recorder()
    tracker = recorder.tracker()
    t_recv = T0 + 6_000_000  # 1 ms after event()'s publish time
    assert tracker.deliver(event(3), t_recv) is None  # before the welcome: not owed yet
    tracker.joined(10, 0)
    assert tracker.deliver(event(10), t_recv) is None  # at the baseline: not owed
    assert tracker.deliver(event(11), t_recv) == 1000
    assert tracker.deliver(event(13), t_recv) == 1000
    assert tracker.deliver(event(12), t_recv) == 1000  # late: reordered, still counted once
    assert tracker.deliver(event(13), t_recv) is None  # duplicate
    assert tracker.deliver(event(500), t_recv) == 1000  # far ahead: the bitmap grows
    assert (recorder.received, recorder.duplicates, recorder.reordered) == (4, 1, 1)
    latency = recorder.histograms["latency"]
    assert latency.get_total_count() == 4 and latency.get_value_at_percentile(50) == 1000


def test_clock_offset_moves_receipts_onto_the_server_clock():
    recorder = steady_recorder()
    recorder.set_clock(-400_000, 100_000)  # this clock runs 0.4 ms ahead of the server's
    tracker = recorder.tracker()
    tracker.joined(0, 0)
    assert tracker.deliver(event(1), T0 + 6_000_000) == 600
    recorder.set_clock(30_000, 200_000)  # within its uncertainty: noise, not corrected
    assert tracker.deliver(event(2), T0 + 6_000_000) == 1000


def test_phases_keep_warmup_apart():
    recorder = steady_recorder()
    tracker = recorder.tracker()
    tracker.joined(0, 0)
    tracker.deliver(event(1, T0 - 1), T0 + 1_000_000)  # published before the window
    tracker.deliver(event(2, T0 + 1), T0 + 2_000_000)  # inside
    tracker.deliver(event(3, T0 + 20_000_000_000), T0 + 20_000_000_000)  # after: tail, dropped
    assert recorder.histograms["warmup"].get_total_count() == 1
    assert recorder.histograms["latency"].get_total_count() == 1
    assert recorder.received == 1


def test_expected_deliveries_follow_each_connection():
    # window seqs 101..200; one client all along, one joined at 150, one left at 120.
    segments = [[50, None], [150, None], [90, 120]]
    assert expected_deliveries(segments, 101, 200) == 100 + 50 + 20
    assert expected_deliveries(segments, None, None) == 0


def test_tracker_segments_end_where_the_connection_left():
    recorder = steady_recorder()
    tracker = recorder.tracker()
    tracker.joined(7, 0)
    tracker.deliver(event(8), T0 + 6_000_000)
    tracker.left()
    tracker.joined(20, 0)
    assert recorder.segments == [[7, 8], [20, None]]


def test_a_first_connect_is_timed_to_its_welcome_once_per_client():
    """begun -> welcome, in us, the first time only: a reconnect's time is `connect`'s (churn)."""
    recorder = steady_recorder()
    tracker = recorder.tracker()
    tracker.connect_started_ns = T0
    tracker.joined(7, T0 + 3_250_000)
    tracker.left()
    tracker.joined(20, T0 + 90_000_000)  # a later connection of the same client
    first = recorder.histograms["first_connect"]
    assert first.get_total_count() == 1
    assert first.values_are_equivalent(first.get_value_at_percentile(50), 3250)
    untimed = recorder.tracker()  # never told when its connect began: nothing recorded
    untimed.joined(7, T0)
    assert first.get_total_count() == 1


def test_merge_is_exact(tmp_path):
    rng = random.Random(4)
    values = [[rng.randint(1, 2_000_000) for _ in range(5000)] for _ in range(3)]
    for i, chunk in enumerate(values):
        recorder = steady_recorder()
        for v in chunk:
            record_us(recorder.histograms["latency"], v)
        recorder.received, recorder.duplicates = len(chunk), i
        recorder.segments = [[i, None]]
        data = recorder.to_dict()
        data["pid"] = 1000 + i
        (tmp_path / f"loadgen-{i}.json").write_text(json.dumps(data))
    merged = merge_process_files(sorted(tmp_path.glob("loadgen-*.json")))
    reference = new_histogram()
    for v in (v for chunk in values for v in chunk):
        reference.record_value(v)
    hist = merged["histograms"]["latency"]
    assert hist.get_total_count() == reference.get_total_count() == 15000
    for q in (0, 50, 90, 99, 99.9, 100):
        assert hist.get_value_at_percentile(q) == reference.get_value_at_percentile(q)
    assert merged["received"] == 15000 and merged["duplicates"] == 0 + 1 + 2
    assert merged["segments"] == [[0, None], [1, None], [2, None]]
    assert len(merged["processes"]) == 3


def test_fast_recording_is_identical_to_the_library():
    import random

    from pushpull.core.histograms import HIST_HIGHEST_US, new_histogram, record_us

    rng = random.Random(5)
    values = [0, -3, 1, 2, 1023, 1024, 2047, 2048, 4095, 65535, 65536, HIST_HIGHEST_US, 10**9]
    values += [rng.randrange(1, 2**k) for k in range(1, 27) for _ in range(40)]
    fast, library = new_histogram(), new_histogram()
    for value in values:
        record_us(fast, value)
        library.record_value(min(max(value, 1), HIST_HIGHEST_US))
    assert list(fast.counts) == list(library.counts)
    assert fast.get_total_count() == library.get_total_count() == len(values)
    assert fast.get_min_value() == library.get_min_value()
    assert fast.get_max_value() == library.get_max_value()
    assert fast.encode() == library.encode()


def test_parse_event_reads_the_head_and_falls_back_to_json():
    import json

    from pushpull.core.events import parse_event

    event = {"seq": 7, "t_pub": 1795613024160701117, "t_sched": 1795613024159912658,
             "kind": "chat", "data": {"text": "a, b", "pad": "x" * 100}}  # fmt: skip
    fast = parse_event(json.dumps(event, separators=(",", ":")))
    assert fast == {k: event[k] for k in ("seq", "t_pub", "t_sched", "kind")}
    spaced = json.dumps(event)  # another encoder's spacing: decoded in full
    assert parse_event(spaced) == event
