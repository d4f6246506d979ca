"""Self-validation against theory: small real sweeps whose outcome is known in advance.

- short polling every T seconds delivers with latency close to uniform on [0, T] (quantiles,
  not just the mean), when the publish period and T don't line up;
- short polling asks about 1/(rate x T) times per delivery when T is shorter than the period;
- long polling asks about once per delivery when events are rare;
- nothing is lost or duplicated below saturation.
"""

from __future__ import annotations

import json

import pytest
from hdrh.histogram import HdrHistogram

from tests.conftest import QUICK_CELL, pushpull

pytestmark = pytest.mark.slow  # the full tier (make test-all)


def sweep(tmp_path_factory, name: str, *args: str) -> list[dict]:
    out = tmp_path_factory.mktemp(name)
    result = pushpull(
        "bench",
        "--out",
        str(out),
        "--no-plot",
        *QUICK_CELL,
        *args,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    run = (out / "latest").resolve()
    cells = json.loads((run / "summary.json").read_text())["cells"]
    for cell in cells:
        cell["histogram"] = HdrHistogram.decode(
            json.loads((run / cell["name"] / "histograms.json").read_text())["latency"].encode()
        )
    return cells


@pytest.fixture(scope="module")
def uniform_cell(tmp_path_factory) -> dict:
    # 7 events/s against a 0.3 s poll: event times fall at 21 different phases of the poll cycle
    (cell,) = sweep(
        tmp_path_factory, "uniform", "--transports", "shortpoll", "--clients", "30",
        "--rate", "7", "--poll-interval", "0.3", "--duration", "5",
    )  # fmt: skip
    return cell


@pytest.fixture(scope="module")
def rare_events(tmp_path_factory) -> dict[str, dict]:
    cells = sweep(
        tmp_path_factory, "rare", "--transports", "shortpoll,longpoll", "--clients", "20",
        "--rate", "2", "--poll-interval", "0.1", "--duration", "5",
    )  # fmt: skip
    return {c["transport"]: c for c in cells}


def test_short_poll_latency_is_uniform_over_the_interval(uniform_cell):
    interval_us = 300_000
    histogram = uniform_cell["histogram"]
    assert histogram.get_total_count() >= 30 * 7 * 5 * 0.9
    for q in (10, 25, 50, 75, 90):
        measured = histogram.get_value_at_percentile(q)
        expected = interval_us * q / 100
        # uniform on [d, T + d] with d the few-ms cost of a poll; tolerance 10% of T
        assert abs(measured - expected) < 0.10 * interval_us, (q, measured, expected)
    assert histogram.get_max_value() < interval_us + 60_000


def test_short_poll_asks_one_over_rate_times_interval_per_delivery(rare_events):
    cell = rare_events["shortpoll"]
    expected = 1 / (2 * 0.1)  # 5 polls per event
    assert abs(cell["requests_per_delivery"] - expected) / expected < 0.10, cell[
        "requests_per_delivery"
    ]
    assert abs(cell["empty_poll_share"] - (1 - 1 / expected)) < 0.05, cell["empty_poll_share"]


def test_long_poll_asks_about_once_per_delivery_at_low_rates(rare_events):
    cell = rare_events["longpoll"]
    assert 0.9 <= cell["requests_per_delivery"] <= 1.1, cell["requests_per_delivery"]
    assert cell["empty_poll_share"] < 0.05


def test_nothing_lost_or_duplicated_below_saturation(uniform_cell, rare_events):
    for cell in [uniform_cell, *rare_events.values()]:
        assert cell["lost"] == 0 and cell["duplicates"] == 0 and cell["reordered"] == 0, cell[
            "name"
        ]
        assert cell["received"] == cell["expected"] > 0
        assert not cell["client_bound"], cell["client_bound_reasons"]
