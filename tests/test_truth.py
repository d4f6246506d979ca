"""Numbers checked against a truth set up in advance: a known delay on the wire, a server clock
off by a known amount. A harness that mismeasured either would fail here (the smoke sweep in
tests/test_sweep.py checks the same latency rules on undisturbed servers, and passes them)."""

from __future__ import annotations

import json

import pytest

from pushpull.harness.proxy import Proxy
from tests.conftest import latency_problems, pushpull, running_server

pytestmark = pytest.mark.slow  # the full tier (make test-all)

DELAY_MS = 40  # each way: Nagle's wait for a delayed ACK on Linux
CLOCK_OFFSET_MS = -500  # the server's clock runs this far behind the load generator's


def test_a_known_delay_behind_a_skewed_clock_is_measured_as_that_delay(tmp_path):
    """A WebSocket server whose clock is 500 ms behind, behind a proxy that holds every chunk
    40 ms each way. The load generator must find the offset (its /time probes see the delay on
    both legs, so their midpoint stays true), take it off, and measure the 40 ms the proxy
    added: uncorrected, every latency would read 500 ms too long. The harness must wait for the
    window's end on the server's clock before it asks what was published (it once asked half a
    second early and counted the last events as received but never owed: lost -12). And the
    latency rules that undisturbed servers pass must fail this one."""
    with (
        running_server("servers.websocket", 10, "--clock-offset-ms", str(CLOCK_OFFSET_MS)) as (
            url,
            _pid,
        ),
        Proxy(url, delay_s=DELAY_MS / 1000) as proxy,
    ):
        result = pushpull(
            "bench", "--target", proxy.url, "--transports", "websocket", "--clients", "3",
            "--duration", "2", "--grace", "0.5", "--drain", "0.5", "--idle", "0", "--no-plot", "--out", str(tmp_path),
            timeout=120,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    (cell,) = json.loads((tmp_path / "latest" / "summary.json").read_text())["cells"]
    assert cell["lost"] == 0 and cell["received"] == cell["expected"] >= 3 * 15, cell
    clock = cell["clock_offset_us"]
    assert abs(clock["offset"] - CLOCK_OFFSET_MS * 1000) < 5_000, clock
    assert clock["uncertainty"] >= DELAY_MS * 1000, clock  # half a round trip through the proxy
    lat = cell["latency_us"]
    assert DELAY_MS * 1000 <= lat["min"] <= lat["p50"] < (DELAY_MS + 20) * 1000, lat
    problems = latency_problems([cell])
    assert problems and "websocket at 3 clients" in problems[0], problems
