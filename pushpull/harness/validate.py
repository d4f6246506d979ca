"""`pushpull validate`: does pushpull measure what it says? A benchmark, not a test: a few minutes
of checks against truths set up in advance, each with its figures, written to validate.json and
validate.md in a folder of its own (the README quotes a run). `make test` keeps quick versions of
the same checks (tests/test_rules.py, tests/test_truth.py, tests/test_theory.py); here they run
long enough for the figures to mean something.

1. Intervals (docs/intervals.md), on synthetic data whose true percentiles are known: how often
   the 95% interval over events holds the truth, in `--trials` runs per model.
2. Delay and clock: a WebSocket server whose clock is set off by a known amount, behind a proxy
   that holds every chunk a known time each way (pushpull/harness/proxy.py), measured by `bench
   --target`: the offset found against the one set, the latency added against the delay.
3. Polling theory, on real servers: short-poll every T delivers with latency uniform on [0, T]
   and asks 1 / (rate x T) times per delivery; long-poll asks about once per delivery; nothing
   is lost.

    pushpull validate --out results            # -> results/<UTC>-validate/validate.md
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pushpull.core import transports
from pushpull.core.intervals import latency_intervals

COVERAGE_MODELS = [  # (name, mean burst shift us, mean per-client jitter us, events, checked)
    ("fan-out-dominated, 30 events", 5_000, 20_000, 30, True),
    ("burst-dominated, 300 events", 20_000, 5_000, 300, True),
    # docs/intervals.md: with 30 events and bursts dominating, p99 rests on the worst event or
    # two and the interval falls short; measured and shown, not held to the floor
    ("burst-dominated, 30 events", 20_000, 5_000, 30, False),
]
TRUTH_EVENTS = 20_000  # the true percentiles: of this many events of the same model
COVERAGE_CLIENTS = 100
# The percentile bootstrap runs a little narrow on tens of events (measured 88-95% where 95% is
# claimed; docs/intervals.md says so). The floor catches a method gone wrong (resampling
# deliveries instead of events holds the truth in 12-48% of runs), not a few points short.
COVERAGE_FLOOR = 0.85
CLOCK_OFFSETS_MS = (0, 80, -80)
DELAYS_MS = (0, 20)
OFFSET_TOLERANCE_US = 2_000
DELAY_TOLERANCE_US = 3_000
POLL_INTERVAL_S = 0.3
POLL_RATES = (2, 7)
UNIFORM_KS_LIMIT = 0.05
# The polling theory is checked on the registry's plain HTTP polls (a poll `hold_s`): one that
# polls on a period (the `poll_interval` dimension) asks 1 / (rate x interval) times per
# delivery, within 5%; one held until something is new asks once, within 10%.
POLLS = [t.name for t in transports.REGISTRY if t.role == transports.POLL and t.hold_s is not None]
REQUESTS_TOLERANCE = {True: 0.05, False: 0.10}  # periodic or not
# The clock check's transport: any push transport would do; the plain WebSocket's one frame per
# event keeps the proxy's delay the only thing added.
CLOCK_TRANSPORT = "websocket"


def periodic(name: str) -> bool:
    """Whether the transport polls on a period (short-poll), rather than being held."""
    return transports.get(name).periodic


# --- 1. intervals on synthetic data ----------------------------------------------------------


def synthetic_events(rng, events: int, clients: int, shift_us: float, jitter_us: float) -> dict:
    """Per-event HdrHistogram buckets (seq -> {index: count}) where each event's burst moves all
    its deliveries together: an exponential shift per event, exponential jitter per client."""
    from pushpull.core.histograms import new_histogram

    layout = new_histogram()
    per_event = {}
    for seq in range(1, events + 1):
        shift = rng.exponential(shift_us)
        buckets: dict[int, int] = {}
        for value in (shift + rng.exponential(jitter_us, clients) + 1).astype(int):
            index = layout._counts_index_for(int(value))
            buckets[index] = buckets.get(index, 0) + 1
        per_event[seq] = buckets
    return per_event


def merged_percentile(per_event: dict, percentile: float) -> int:
    """The percentile HdrHistogram reports for all the events' deliveries together."""
    from pushpull.core.histograms import new_histogram

    histogram = new_histogram()
    for buckets in per_event.values():
        for index, count in buckets.items():
            histogram.counts[index] += count
            histogram.total_count += count
    histogram.min_value, histogram.max_value = 1, 60_000_000
    return histogram.get_value_at_percentile(percentile)


def coverage(
    shift_us: float,
    jitter_us: float,
    events: int,
    trials: int,
    resamples: int = 1000,
    seed: int = 7,
) -> dict:
    """How many of `trials` runs' 95% intervals hold the true p50 and p99 (those of
    TRUTH_EVENTS events of the same model)."""
    rng = np.random.default_rng(seed)
    truth = synthetic_events(rng, TRUTH_EVENTS, COVERAGE_CLIENTS, shift_us, jitter_us)
    true = {"p50": merged_percentile(truth, 50), "p99": merged_percentile(truth, 99)}
    held = {"p50": 0, "p99": 0}
    for trial in range(trials):
        per_event = synthetic_events(rng, events, COVERAGE_CLIENTS, shift_us, jitter_us)
        intervals = latency_intervals(per_event, resamples=resamples, seed=trial)
        for name in held:
            low, high = intervals[name]
            held[name] += low <= true[name] <= high
    return {"trials": trials, "true_us": true, "held": held}


def wilson(successes: int, trials: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval of a proportion."""
    if trials == 0:
        return [0.0, 1.0]
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = (
        z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    )
    return [round(max(0.0, centre - half), 3), round(min(1.0, centre + half), 3)]


def interval_checks(trials: int) -> list[dict]:
    checks = []
    for name, shift_us, jitter_us, events, checked in COVERAGE_MODELS:
        result = coverage(shift_us, jitter_us, events, trials)
        for stat in ("p50", "p99"):
            held = result["held"][stat]
            low, high = wilson(held, trials)
            limit = checked or stat == "p50"
            checks.append(
                {
                    "check": f"95% interval of {stat} holds the truth ({name})",
                    "measured": f"{held}/{trials} = {held / trials:.0%} "
                    f"(95% CI {low:.0%}-{high:.0%})",
                    "expected": f">= {COVERAGE_FLOOR:.0%} (nominal 95%)"
                    if limit
                    else "short of 95%: a known limit (docs/intervals.md)",
                    "ok": held / trials >= COVERAGE_FLOOR if limit else None,
                    "figures": {**result, "stat": stat, "share": held / trials},
                }
            )
    return checks


# --- 2. known delay and clock offset -----------------------------------------------------------


def bench(out: Path, *args: str, timeout: float = 900) -> list[dict]:
    """One `pushpull bench` as a user would run it; its cells, each with its latency histogram
    (read through pushpull/core/runfolder.py, as the charts read it)."""
    from pushpull.core.runfolder import read_histogram, read_run

    command = [sys.executable, "-m", "pushpull.cli", "bench", "--out", str(out), "--no-plot"]
    result = subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        from pushpull.harness.procs import HarnessError

        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise HarnessError(f"pushpull bench {' '.join(args)}: exit {result.returncode}: {last}")
    run_dir = (out / "latest").resolve()
    _, summary = read_run(run_dir)
    return [
        {**cell, "histogram": read_histogram(run_dir, cell["name"])} for cell in summary["cells"]
    ]


def clock_cell(out: Path, offset_ms: float, delay_ms: float, duration: float) -> dict:
    from pushpull.harness.procs import start_server
    from pushpull.harness.proxy import Proxy

    folder = out / f"clock{offset_ms:+g}ms-delay{delay_ms:g}ms"
    folder.mkdir(parents=True)
    server, url = start_server(
        transports.get(CLOCK_TRANSPORT).server, "127.0.0.1", 0, 10, 0, folder, None,
        extra=["--clock-offset-ms", str(offset_ms)],
    )  # fmt: skip
    try:
        with Proxy(url, delay_s=delay_ms / 1000) as proxy:
            (cell,) = bench(
                folder, "--target", proxy.url, "--transports", CLOCK_TRANSPORT, "--clients", "10",
                "--duration", str(duration), "--grace", "0.5",
            )  # fmt: skip
    finally:
        server.stop()
    return cell


def clock_checks(out: Path, duration: float) -> list[dict]:
    cells = {
        (offset, delay): clock_cell(out, offset, delay, duration)
        for delay in DELAYS_MS
        for offset in CLOCK_OFFSETS_MS
    }
    base = cells[(0, 0)]["latency_us"]["p50"]
    checks = []
    for (offset, delay), cell in cells.items():
        clock, p50 = cell["clock_offset_us"], cell["latency_us"]["p50"]
        error_us = clock["offset"] - offset * 1000
        added_us = p50 - base
        checks.append(
            {
                "check": f"server clock {offset:+d} ms, {delay} ms added each way",
                "measured": f"offset {clock['offset'] / 1000:+.2f} ms (error {error_us / 1000:+.2f}"
                f" ms, uncertainty {clock['uncertainty'] / 1000:.2f} ms); p50 {p50 / 1000:.2f} ms,"
                f" {added_us / 1000:+.2f} ms against no delay and no offset",
                "expected": f"offset within {OFFSET_TOLERANCE_US / 1000:g} ms; "
                f"p50 {delay:+d} ms within {DELAY_TOLERANCE_US / 1000:g} ms; nothing lost",
                "ok": abs(error_us) <= OFFSET_TOLERANCE_US
                and abs(added_us - delay * 1000) <= DELAY_TOLERANCE_US
                and cell["lost"] == 0
                and cell["received"] > 0,
                "figures": {
                    "offset_set_ms": offset, "delay_ms": delay, "clock_offset_us": clock,
                    "latency_us": cell["latency_us"], "received": cell["received"],
                    "lost": cell["lost"],
                },
            }
        )  # fmt: skip
    return checks


# --- 3. polling theory ------------------------------------------------------------------------


def uniform_distance(histogram, interval_us: float) -> float:
    """Kolmogorov-Smirnov distance between a latency histogram and uniform on [0, T]."""
    total, seen, distance = histogram.get_total_count(), 0, 0.0
    for item in histogram.get_recorded_iterator():
        below = seen / total
        seen += item.count_at_value_iterated_to
        uniform = min(1.0, item.value_iterated_to / interval_us)
        distance = max(distance, abs(below - uniform), abs(seen / total - uniform))
    return distance


def poll_checks(out: Path, duration: float) -> list[dict]:
    cells = bench(
        out / "polls", "--transports", ",".join(POLLS), "--clients", "50",
        "--rate", ",".join(str(r) for r in POLL_RATES), "--poll-interval", str(POLL_INTERVAL_S),
        "--duration", str(duration), "--grace", "1",
    )  # fmt: skip
    checks = []
    for cell in cells:
        transport, rate = cell["transport"], cell["rate"]
        expected = 1 / (rate * POLL_INTERVAL_S) if periodic(transport) else 1.0
        tolerance = REQUESTS_TOLERANCE[periodic(transport)]
        measured = cell["requests_per_delivery"]
        checks.append(
            {
                "check": f"{transport} at {rate:g} events/s asks "
                + (f"1 / (rate x {POLL_INTERVAL_S:g} s)" if periodic(transport) else "once")
                + " per delivery",
                "measured": f"{measured:.3f} requests per delivery; lost {cell['lost']} of "
                f"{cell['expected']}",
                "expected": f"{expected:.3f} within {tolerance:.0%}; nothing lost",
                "ok": abs(measured - expected) <= tolerance * expected and cell["lost"] == 0,
                "figures": {
                    "requests_per_delivery": measured, "expected": expected,
                    "lost": cell["lost"], "owed": cell["expected"],
                },
            }
        )  # fmt: skip
        if periodic(transport):
            distance = uniform_distance(cell["histogram"], POLL_INTERVAL_S * 1e6)
            checks.append(
                {
                    "check": f"{transport} at {rate:g} events/s: latency uniform on "
                    f"[0, {POLL_INTERVAL_S:g} s]",
                    "measured": f"Kolmogorov-Smirnov distance {distance:.3f} over "
                    f"{cell['received']} deliveries (p50 {cell['latency_us']['p50'] / 1000:.1f} ms)",
                    "expected": f"<= {UNIFORM_KS_LIMIT:g}",
                    "ok": distance <= UNIFORM_KS_LIMIT,
                    "figures": {"ks_distance": distance, "latency_us": cell["latency_us"]},
                }
            )
    return checks


# --- 4. the networks' theory ------------------------------------------------------------------

NETWORK_DURATION_S = 10.0  # 14 cells: the window of each
NETWORK_RTT_MS = 100  # the fixed delay: 50 ms each way, no jitter, no rate
NETWORK_CLIENTS = 50
# clients connect 40 ms apart, so that no connect waits behind another's at the server: at the
# default 200/s, 50 Socket.IO connects on loopback queued to a p50 of 31 ms (9 ms one at a time),
# and the first-connect check measures the handshake's round trips, not that queue
NETWORK_SPAWN_RATE = 25
PUSH_TOLERANCE_MS = 3.0  # measured p50 - (loopback p50 + d), either way
# a first connect's p50 against loopback's + n round trips, as a share of one trip: what is
# checked is the count of round trips; the connect's own processing moved by up to 16 ms between
# loopback and network cells of one run (50 clients, 100 ms round trips)
CONNECT_TOLERANCE = 0.20
PERIODIC_TOLERANCE = 0.10  # a short poll's p50 against I/2 + d, of I
BACKLOG_RTT_MS = 200  # a round trip longer than the gap between events (rate 7/s: 143 ms)
BACKLOG_RATE = 7.0  # 2d / gap = 1.4: not a whole number, so the poll cycle drifts over the ticks
BACKLOG_TOLERANCE = 0.10  # of the prediction
BANDWIDTH_KBIT = 1000  # a slow downlink (no delay): each delivery takes its bytes' time on it
BANDWIDTH_PAYLOAD = 8000  # bytes of padding per event: 64 ms at 1 Mbit/s
BANDWIDTH_TOLERANCE = 0.05  # of the transmission time


def network_checks(out: Path, duration: float) -> list[dict]:
    """Every transport over a fixed one-way delay d (and no jitter) against loopback, in one
    run: push, and a long poll held when the event comes, arrive d later (p50 = loopback p50 +
    d); a short poll's wait is uniform over its interval, then d: p50 = I/2 + d; requests per
    delivery do not change. Then long-poll where the round trip 2d outlasts the gap between
    events: each answer leaves as the next poll arrives, every 2d, so an event waits uniformly
    over [0, 2d) at the server and d on the way: p50 = 2d, with 1 / (2d x rate) requests per
    delivery (docs/network.md derives both)."""
    d = NETWORK_RTT_MS / 2
    cells = bench(
        out / "network", "--transports", ",".join(transports.NAMES),
        "--clients", str(NETWORK_CLIENTS), "--rate", "2", "--poll-interval", str(POLL_INTERVAL_S),
        "--network", f"loopback,rtt={NETWORK_RTT_MS}ms", "--duration", str(duration),
        "--grace", "1", "--spawn-rate", str(NETWORK_SPAWN_RATE),
    )  # fmt: skip
    loop = {c["transport"]: c for c in cells if c["network"] is None}
    checks = []
    for cell in (c for c in cells if c["network"] is not None):
        checks.append(delay_check(cell, loop.get(cell["transport"]), d))
        checks.append(connect_check(cell, loop.get(cell["transport"]), 2 * d))
    checks += backlog_checks(out, duration)
    checks += bandwidth_checks(out, duration)
    return checks


def delay_check(cell: dict, base: dict | None, d: float) -> dict:
    transport = cell["transport"]
    p50 = cell["latency_us"]["p50"] / 1000
    if periodic(transport):
        interval_ms = POLL_INTERVAL_S * 1000
        expected, tolerance = interval_ms / 2 + d, PERIODIC_TOLERANCE * interval_ms
        how = f"I/2 + d = {interval_ms / 2:g} + {d:g} ms"
    else:
        expected, tolerance = base["latency_us"]["p50"] / 1000 + d, PUSH_TOLERANCE_MS
        how = f"loopback p50 + d = {base['latency_us']['p50'] / 1000:.2f} + {d:g} ms"
    requests = cell.get("requests_per_delivery")
    base_requests = base.get("requests_per_delivery") if base else None
    same_requests = (
        requests is None
        or base_requests is None
        or abs(requests - base_requests) <= 0.05 * base_requests + 0.01
    )
    return {
        "check": f"{transport} over rtt={NETWORK_RTT_MS}ms (d = {d:g} ms each way): p50",
        "measured": f"p50 {p50:.2f} ms; lost {cell['lost']} of {cell['expected']}"
        + (f"; {requests:.3f} requests/delivery (loopback {base_requests:.3f})" if requests and base_requests else ""),
        "expected": f"{how} = {expected:.2f} ms within {tolerance:g} ms; requests unchanged",
        "ok": abs(p50 - expected) <= tolerance and cell["lost"] == 0 and same_requests,
        "figures": {"p50_ms": p50, "predicted_ms": expected, "requests_per_delivery": requests,
                    "loopback_requests_per_delivery": base_requests},
    }  # fmt: skip


def connect_check(cell: dict, base: dict | None, rtt: float) -> dict:
    """A new client's first connect (begun -> its welcome or baseline answer) waits the round
    trips of its transport's handshake (the registry's `connect_round_trips`) on top of what
    the same connect takes on loopback."""
    trips = transports.get(cell["transport"]).connect_round_trips
    measured = cell["first_connect_us"]["p50"] / 1000
    base_ms = base["first_connect_us"]["p50"] / 1000
    expected = base_ms + len(trips) * rtt
    tolerance = CONNECT_TOLERANCE * rtt
    return {
        "check": f"{cell['transport']} over rtt={rtt:g}ms: first connect to welcome, p50",
        "measured": f"p50 {measured:.1f} ms (loopback {base_ms:.2f} ms), "
        f"{cell['first_connect_us']['count']} clients",
        "expected": f"loopback + {len(trips)} round trips ({', '.join(trips)}) = "
        f"{expected:.1f} ms within {tolerance:g} ms",
        "ok": abs(measured - expected) <= tolerance,
        "figures": {"p50_ms": measured, "predicted_ms": expected, "round_trips": len(trips)},
    }


def bandwidth_checks(out: Path, duration: float) -> list[dict]:
    """Every transport with an 8000-byte payload over a 1 Mbit/s downlink (no delay) against
    loopback: a delivery is late by its bytes' transmission time, what the server wrote per
    delivery (the transport's framing and headers included) x 8 / the rate."""
    cells = bench(
        out / "network-bandwidth", "--transports", ",".join(transports.NAMES),
        "--clients", str(NETWORK_CLIENTS), "--rate", "2", "--poll-interval", str(POLL_INTERVAL_S),
        "--payload-bytes", str(BANDWIDTH_PAYLOAD), "--network", f"loopback,down={BANDWIDTH_KBIT}kbit",
        "--duration", str(duration), "--grace", "1",
    )  # fmt: skip
    loop = {c["transport"]: c for c in cells if c["network"] is None}
    checks = []
    for cell in (c for c in cells if c["network"] is not None):
        transport, base = cell["transport"], loop[cell["transport"]]
        p50, base_p50 = cell["latency_us"]["p50"] / 1000, base["latency_us"]["p50"] / 1000
        sent = cell["bytes_out_per_delivery"]
        transmit = sent * 8 / BANDWIDTH_KBIT  # bits over kbit/s: ms
        tolerance = BANDWIDTH_TOLERANCE * transmit
        if periodic(transport):  # its loopback p50 is a uniform wait's: noisier than the rest
            tolerance += PERIODIC_TOLERANCE * POLL_INTERVAL_S * 1000
        checks.append({
            "check": f"{transport}, {BANDWIDTH_PAYLOAD} B payload over down={BANDWIDTH_KBIT}kbit: p50",
            "measured": f"p50 {p50:.1f} ms (loopback {base_p50:.1f} ms), {sent:.0f} B written per "
            f"delivery; lost {cell['lost']} of {cell['expected']}",
            "expected": f"loopback p50 + {sent:.0f} B x 8 / {BANDWIDTH_KBIT} kbit/s = "
            f"{base_p50 + transmit:.1f} ms within {tolerance:.1f} ms; nothing lost",
            "ok": abs(p50 - base_p50 - transmit) <= tolerance and cell["lost"] == 0,
            "figures": {"p50_ms": p50, "predicted_ms": base_p50 + transmit, "transmit_ms": transmit},
        })  # fmt: skip
    return checks


def backlog_checks(out: Path, duration: float) -> list[dict]:
    d = BACKLOG_RTT_MS / 2
    polls = [t for t in POLLS if not periodic(t)]
    cells = bench(
        out / "network-backlog", "--transports", ",".join(polls),
        "--clients", str(NETWORK_CLIENTS), "--rate", f"{BACKLOG_RATE:g}",
        "--network", f"rtt={BACKLOG_RTT_MS}ms", "--duration", str(duration), "--grace", "1",
    )  # fmt: skip
    checks = []
    for cell in cells:
        p50 = cell["latency_us"]["p50"] / 1000
        predicted = 2 * d
        requests, predicted_requests = cell["requests_per_delivery"], 1000 / (2 * d * BACKLOG_RATE)
        ok = (
            abs(p50 - predicted) <= BACKLOG_TOLERANCE * predicted
            and abs(requests - predicted_requests) <= BACKLOG_TOLERANCE * predicted_requests
            and cell["lost"] == 0
        )
        checks.append({
            "check": f"{cell['transport']} at {BACKLOG_RATE:g} events/s over rtt={BACKLOG_RTT_MS}ms "
            f"(a gap of {1000 / BACKLOG_RATE:.0f} ms, shorter than the round trip): p50 and requests",
            "measured": f"p50 {p50:.1f} ms, {requests:.3f} requests/delivery; lost {cell['lost']} of {cell['expected']}",
            "expected": f"p50 = 2d = {predicted:g} ms, 1 / (2d x rate) = {predicted_requests:.3f} "
            f"requests/delivery, each within {BACKLOG_TOLERANCE:.0%}; nothing lost (push: d = {d:g} ms)",
            "ok": ok,
            "figures": {"p50_ms": p50, "predicted_ms": predicted, "requests_per_delivery": requests,
                        "predicted_requests": predicted_requests},
        })  # fmt: skip
    return checks


# --- the run ----------------------------------------------------------------------------------


VERDICTS = {True: "yes", False: "**no**", None: "(shown)"}
MARKS = {True: "ok ", False: "NO ", None: "-- "}


def markdown(result: dict) -> str:
    lines = [
        "# pushpull validate",
        "",
        f"{result['created_utc']}, {result['machine']}, {result['minutes']:.1f} minutes. "
        f"{sum(c['ok'] is True for c in result['checks'])} of "
        f"{sum(c['ok'] is not None for c in result['checks'])} checks hold "
        f"({sum(c['ok'] is None for c in result['checks'])} shown without a verdict).",
        "",
        "| check | measured | expected | holds |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {c['check']} | {c['measured']} | {c['expected']} | {VERDICTS[c['ok']]} |"
        for c in result["checks"]
    ]
    return "\n".join(lines) + "\n"


def machine() -> str:
    from pushpull.core.host import cpu_model

    return f"{os.cpu_count()} cores ({cpu_model()})"


def run_validate(out: Path, trials: int, duration: float) -> int:
    """Run every check; 0 when all hold, 1 otherwise (the figures are written either way)."""
    started = time.monotonic()
    folder = out / (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-validate")
    folder.mkdir(parents=True)
    result: dict = {
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "arguments": {"trials": trials, "duration": duration},
        "checks": [],
    }

    def save() -> None:
        result["minutes"] = (time.monotonic() - started) / 60
        (folder / "validate.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        (folder / "validate.md").write_text(markdown(result))

    for step, part in (
        ("intervals", lambda: interval_checks(trials)),
        ("delay and clock", lambda: clock_checks(folder, duration)),
        ("polling theory", lambda: poll_checks(folder, duration)),
        ("network theory", lambda: network_checks(folder, min(duration, NETWORK_DURATION_S))),
    ):
        print(f"pushpull validate: {step} ...", flush=True)
        checks = part()
        result["checks"] += checks
        save()  # what was checked stays, whatever comes next
        for check in checks:
            print(f"  {MARKS[check['ok']]} {check['check']}: {check['measured']}")
    judged = [c for c in result["checks"] if c["ok"] is not None]
    failed = [c for c in judged if not c["ok"]]
    print(
        f"pushpull validate: {len(judged) - len(failed)} of {len(judged)} checks hold "
        f"({result['minutes']:.1f} min); {folder / 'validate.md'}"
    )
    return 1 if failed else 0
