"""The wider comparison end to end: the chat scenario, factorial sweeps, payload padding and the
capacity search, each on a tiny real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pushpull.core import transports
from pushpull.harness.capacity import verdict
from tests.conftest import QUICK_CELL, chart_size, log_problems, publish_problems, pushpull

QUICK = (*QUICK_CELL, "--duration", "2")


def run_of(out: Path) -> Path:
    return (out / "latest").resolve()


def cells_of(out: Path) -> list[dict]:
    return json.loads((run_of(out) / "summary.json").read_text())["cells"]


CHAT_TRANSPORTS = [t.name for t in transports.REGISTRY if "poll_interval" not in t.dimensions]


@pytest.mark.slow
def test_chat_scenario_every_transport(tmp_path):
    """Every transport of the registry but interval polling (its latency is its interval)."""
    result = pushpull(
        "bench", "--scenario", "chat", "--transports", ",".join(CHAT_TRANSPORTS),
        "--clients", "3", "--send-rate", "2", "--out", str(tmp_path), "--no-plot", *QUICK,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cells = cells_of(tmp_path)
    assert {c["transport"] for c in cells} == set(CHAT_TRANSPORTS)
    assert not log_problems(cells), log_problems(cells)
    for cell in cells:
        assert cell["scenario"] == "chat" and cell["name"].endswith("-chat")
        # 3 clients each sending 2/s for ~2 s: every message reaches all 3 (the sender too)
        assert cell["sent"] >= 3 * 2 * 2 * 0.7, cell["sent"]
        assert cell["published"] >= 3 * 2 * 2 * 0.7
        assert cell["expected"] == 3 * cell["published"] == cell["received"], cell
        assert cell["lost"] == 0 and cell["duplicates"] == 0
        lat = cell["latency_us"]
        assert 0 < lat["p50"] <= lat["max"] < 1_000_000, "sender's send time to each receipt"
        assert cell["publisher_lag_us"]["p50"] is None, "no ticks in the chat scenario"


@pytest.mark.slow
def test_rate_and_payload_sweep_is_factorial_charted_and_on_the_wire(tmp_path):
    """Two dimensions at once (rate x payload, 4 cells): every combination measured, the
    publisher keeps each rate, and the padding shows up in the bytes sent per delivery."""
    result = pushpull(
        "bench", "--transports", "socketio", "--clients", "2", "--rate", "10,20",
        "--payload-bytes", "0,3000", "--out", str(tmp_path), *QUICK,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cells = cells_of(tmp_path)
    by_key = {(c["rate"], c["payload_bytes"]): c for c in cells}
    assert not log_problems(cells) and not publish_problems(cells), log_problems(cells)
    assert sorted(by_key) == [(10.0, 0), (10.0, 3000), (20.0, 0), (20.0, 3000)]
    for cell in cells:
        assert abs(cell["published"] - cell["rate"] * 2) <= 2, "the publisher keeps its rate"
        assert cell["lost"] == 0
    for rate in (10.0, 20.0):
        small, big = by_key[(rate, 0)], by_key[(rate, 3000)]
        grown = big["bytes_out_per_delivery"] - small["bytes_out_per_delivery"]
        # measured on the sockets, Engine.IO and websocket framing included; with 40 to 80
        # deliveries a cell, one event sent to both clients between the window's end and the
        # last /stats read moves this by at most 2 x 3000 / 40 = 150 bytes
        assert 2850 < grown < 3350, (rate, grown)
    charts = run_of(tmp_path) / "charts"
    for name in ("latency_vs_rate.png", "cost_per_delivery.png", "latency_vs_clients.png"):
        chart_size(charts / name)


@pytest.mark.slow
def test_capacity_search_on_tiny_bounds(tmp_path):
    """Both ends of the search on real servers: Socket.IO holds a 100 ms p99 up to --max (then
    4 is measured once more, --capacity-repeats 2); short-poll every 0.5 s cannot hold it even
    at 2 clients (its p99 is about the interval), so its search stops at the first step."""
    result = pushpull(
        "capacity", "--transports", "socketio,shortpoll", "--slo-p99", "100", "--start", "2",
        "--step", "2", "--max", "4", "--duration", "1", "--capacity-repeats", "2",
        "--grace", "0.5", "--drain", "0.5", "--idle", "0", "--out", str(tmp_path), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    capacity = json.loads((run_of(tmp_path) / "capacity.json").read_text())
    found = capacity["transports"]["socketio"]
    assert [clients for clients, _p99 in found["steps"]] == [2, 4, 4]
    assert found["capacity"] == 4 and found["lower_bound"] and "--max" in found["reason"]
    assert found["capacity_range"] == [4, None], found["measurements"]
    failed = capacity["transports"]["shortpoll"]
    (step,) = failed["steps"]
    assert step[0] == 2 and step[1] > 100, failed  # one measurement, its p99 in ms
    assert failed["capacity"] is None and failed["stopped_at"] == 2, failed
    assert "over the 100 ms limit" in failed["reason"] and not failed["lower_bound"], failed
    assert failed["capacity_range"] == [None, 2], failed["measurements"]
    assert "socketio: at least 4 clients" in result.stdout
    assert "shortpoll: below 2 clients, range [-, 2] (at 2: p99" in result.stdout, result.stdout
    chart_size(run_of(tmp_path) / "charts" / "capacity.png")


def test_capacity_verdicts():
    ok = {"client_bound": False, "client_bound_reasons": [], "errors": 0, "lost": 0, "expected": 10,
          "latency_us": {"p99": 200_000}}  # fmt: skip
    assert verdict(ok, 250_000) is None
    assert "over the 250 ms limit" in verdict({**ok, "latency_us": {"p99": 300_000}}, 250_000)
    assert "lost" in verdict({**ok, "lost": 3}, 250_000)
    assert "errors" in verdict({**ok, "errors": 1}, 250_000)
    bound = {**ok, "client_bound": True, "client_bound_reasons": ["a Locust process used 95%"]}
    assert "load generator saturated" in verdict(bound, 250_000)
