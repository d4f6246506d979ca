"""Clients that come and go (--churn-every): the gap accounting, exact on synthetic trackers with
a client dropped for a known number of events, and end to end on real servers through Locust,
where every event of the window is owed either to a connection or to a gap."""

from __future__ import annotations

import json

import pytest

from loadtests.recorder import Recorder
from pushpull.core.records import expected_deliveries, gap_figures
from tests.conftest import chart_size, log_problems, publish_problems, pushpull

T0 = 10**18


def event(seq: int) -> dict:
    return {"seq": seq, "t_pub": T0 + seq * 10**6, "t_sched": T0 + seq * 10**6, "kind": "tick"}


def recorder_and_tracker():
    recorder = Recorder(transport="websocket")
    recorder.window.start_ns, recorder.window.end_ns = 0, 10**19
    tracker = recorder.tracker()
    tracker.joined(10, 0)
    for seq in range(11, 16):  # receives 11..15
        tracker.deliver(event(seq), T0 + seq * 10**6 + 500)
    return recorder, tracker


def files(recorder: Recorder) -> dict:
    return json.loads(json.dumps(recorder.to_dict()))


def test_a_client_away_for_four_events_without_resume_loses_exactly_those():
    recorder, tracker = recorder_and_tracker()
    tracker.away()  # leaves after 15; 16..19 are published while it is away
    tracker.coming_back(T0 + 19_000)
    tracker.back(19, T0 + 19_200)  # the new welcome: the newest seq is 19
    for seq in range(20, 24):
        tracker.deliver(event(seq), T0 + seq * 10**6 + 500)
    data = files(recorder)
    assert data["gaps"] == [[15, 19, [16, 17, 18, 19]]]
    assert gap_figures(data["gaps"], 11, 23) == (4, 4)
    assert gap_figures(data["gaps"], 18, 23) == (2, 2), "only the window's seqs count"
    assert expected_deliveries(recorder.segments, 11, 23) == 5 + 4, "connected: 11-15, 20-23"
    assert recorder.received == 9, "nothing owed while connected was lost"
    assert recorder.reconnects == 1
    assert recorder.histograms["connect"].get_total_count() == 1
    assert recorder.histograms["caught_up"].get_total_count() == 0, "it never catches up"


def test_a_client_that_resumes_catches_up_and_its_catch_up_latency_is_kept_apart():
    recorder, tracker = recorder_and_tracker()
    tracker.away()
    tracker.coming_back(T0 + 19_000_000)
    tracker.deliver(event(16), T0 + 19_100_000)  # replayed before the welcome: still counted
    tracker.back(19, T0 + 19_200_000)
    for seq in (17, 18, 19):  # the replay after the welcome
        tracker.deliver(event(seq), T0 + 19_300_000)
    tracker.deliver(event(20), T0 + 20_500_000)
    data = files(recorder)
    assert data["gaps"] == [[15, 19, []]]
    assert gap_figures(data["gaps"], 11, 20) == (4, 0)
    assert recorder.received == 5 + 1, "replayed events are not steady-state deliveries"
    assert recorder.histograms["catchup"].get_total_count() == 3  # 17-19 (16 came unwelcomed)
    assert recorder.histograms["latency"].get_total_count() == 6
    caught = recorder.histograms["caught_up"]
    assert caught.get_total_count() == 1 and caught.get_max_value() == pytest.approx(300, abs=1)


def test_a_duplicate_replay_is_a_duplicate_not_a_second_catch_up():
    recorder, tracker = recorder_and_tracker()
    tracker.away()
    tracker.coming_back(T0 + 17_000)
    tracker.back(17, T0 + 17_100)
    for seq in (16, 17, 17, 15):
        tracker.deliver(event(seq), T0 + 17_200)
    assert recorder.duplicates == 1, "17 twice; 15 was owed to the first connection, not this one"
    assert files(recorder)["gaps"] == [[15, 17, []]]


@pytest.mark.slow
def test_churn_end_to_end_owes_every_window_event_to_a_connection_or_a_gap(tmp_path):
    """Real servers, real Locust, one sweep: clients leave every ~1 s for 0.3 s. Every event of
    the window is owed to each client either while connected (expected) or while away
    (gap_owed), exactly; nothing owed while connected is lost; a push client without resume
    loses the whole gap, one that resumes (and long-poll by design) none of it. (SSE's
    Last-Event-ID resume is checked the same way in the storm test below.)"""
    result = pushpull(
        "bench", "--transports", "socketio,websocket,longpoll", "--clients", "4",
        "--rate", "20", "--churn-every", "1", "--churn-downtime", "0.3", "--resume", "off,on",
        "--grace", "0.5", "--drain", "1", "--idle", "0", "--duration", "2", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = [p for p in tmp_path.iterdir() if not p.is_symlink()]
    cells = json.loads((run / "summary.json").read_text())["cells"]
    assert sorted((c["transport"], c["resume"]) for c in cells) == [
        ("longpoll", None), ("socketio", False), ("socketio", True),
        ("websocket", False), ("websocket", True),
    ]  # fmt: skip
    assert not log_problems(cells), log_problems(cells)
    assert not publish_problems(cells), publish_problems(cells)  # a dead publisher fails here
    for cell in cells:
        assert cell["churn_every"] == 1 and cell["reconnects"] > 0, cell["name"]
        assert cell["lost"] == 0 and cell["duplicates"] == 0, cell["name"]
        assert cell["expected"] + cell["gap_owed"] == 4 * cell["published"], cell["name"]
        assert cell["gap_owed"] > 0, cell["name"]
        if cell["resume"] is False:
            assert cell["gap_lost"] == cell["gap_owed"] and cell["caught_up"] == 0, cell["name"]
        else:
            assert cell["gap_lost"] == 0 and cell["caught_up"] > 0, cell["name"]
            assert cell["catchup_latency_us"]["count"] > 0, cell["name"]
    chart_size(run / "charts" / "churn.png")
    assert "Clients that come and go" in (run / "summary.md").read_text()
    findings = (run / "report.html").read_text()
    assert "websocket without resume" in findings and "longpoll 0 of" in findings


@pytest.mark.slow
def test_storm_on_a_few_clients(tmp_path):
    """`pushpull storm`: every connection dropped at once; Socket.IO clients (socket.io-client's
    0.5-1.5 s first wait) and SSE clients (EventSource's 3 s) all come back within the window;
    SSE catches up on everything published meanwhile, Socket.IO without resume never does."""
    result = pushpull(
        "storm", "--transports", "socketio,sse", "--clients", "3", "--rate", "10",
        "--before", "1", "--after", "4", "--grace", "0.5", "--drain", "1", "--idle", "0", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = [p for p in tmp_path.iterdir() if not p.is_symlink()]
    cells = {c["transport"]: c for c in json.loads((run / "summary.json").read_text())["cells"]}
    assert not log_problems(list(cells.values())), log_problems(list(cells.values()))
    assert not publish_problems(list(cells.values())), publish_problems(list(cells.values()))
    for transport, cell in cells.items():
        recovery = cell["recovery"]
        assert cell["storm"] is True
        assert recovery["clients_dropped"] == 3 and recovery["never_back"] == 0, recovery
        assert recovery["dropped"] >= 3, "the servers closed every client connection"
        back = recovery["reconnected_s"]
        assert 0 < back["p50"] <= back["p100"] < 5, (transport, back)
        assert cell["lost"] == 0 and cell["gap_owed"] > 0
    sse, socketio = cells["sse"], cells["socketio"]
    assert 2.9 <= sse["recovery"]["reconnected_s"]["p50"], "EventSource waits 3 s"
    assert sse["gap_lost"] == 0 and sse["recovery"]["never_caught_up"] == 0
    assert socketio["resume"] is False
    assert socketio["gap_lost"] == socketio["gap_owed"]
    assert socketio["recovery"]["never_caught_up"] == 3
    chart_size(run / "charts" / "storm.png")
    assert "Reconnect storm" in (run / "summary.md").read_text()
    report = (run / "report.html").read_text()
    assert 'id="storm"' in report and "EventSource" in report
