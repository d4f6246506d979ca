"""Findings written from a run's numbers (never fixed text): what the measurements say, one
sentence each, comparing every transport with the registry's push baseline at the same load
(pushpull/core/transports.py), and each poll transport's latency with the baseline's."""

from __future__ import annotations

from collections import defaultdict

from analysis.churn import churn_notes
from analysis.network import network_notes
from analysis.storm import storm_notes
from analysis.style import label, transport_order
from pushpull.core import transports, variants

CLOSE_ENOUGH = 1.5  # "polling is close to push" when its median is within this factor


def ms(us: float | None) -> str:
    if us is None:
        return "-"
    return f"{us / 1000:.1f} ms" if us < 100_000 else f"{us / 1000:.0f} ms"


def times(a: float | None, b: float | None) -> str | None:
    if not a or not b:
        return None
    ratio = a / b
    return f"{ratio:.1f}x" if ratio < 10 else f"{ratio:.0f}x"


def group_key(cell: dict) -> tuple:
    network = (cell.get("network") or {}).get("name", "")
    return (cell.get("scenario", "broadcast"), cell["rate"], cell.get("payload_bytes", 0), network)


def describe_group(key: tuple) -> str:
    scenario, rate, payload, network = key
    cell = {"scenario": scenario, "rate": rate, "payload_bytes": payload}
    words = [variants.load_words(cell), *variants.words(cell, {"payload_bytes"})]
    return ", ".join(words + ([f"over {network}"] if network else []))


def has_interval(transport: str) -> bool:
    return transports.get(transport).periodic


def findings(cells: list[dict], capacity: dict | None = None) -> list[str]:
    notes: list[str] = []
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for cell in cells:
        if cell["latency_us"]["count"]:
            groups[group_key(cell)].append(cell)
    several = len(groups) > 1
    for key in sorted(groups):
        where = f" ({describe_group(key)})" if several else ""
        by_clients: dict[int, dict[str, dict]] = defaultdict(dict)
        for cell in groups[key]:
            by_clients[cell["clients"]].setdefault(cell["transport"], cell)
        for clients in sorted(by_clients):
            notes += compare_with_push(clients, by_clients[clients], where)
        notes += short_poll_notes(groups[key], where)
    notes += churn_notes(cells)
    notes += storm_notes(cells)
    notes += network_notes(cells)
    notes += completeness_notes(cells)
    notes += log_error_notes(cells)
    notes += rate_notes(cells)
    if capacity:
        notes += capacity_notes(capacity)
    return notes


def compare_with_push(clients: int, cells: dict[str, dict], where: str) -> list[str]:
    reference = transports.baseline()
    push = cells.get(reference.name)
    if push is None:
        return []
    notes = []
    for transport in transport_order(cells):
        if transport == reference.name or has_interval(transport):
            continue  # interval-driven polling has its own finding (short_poll_notes)
        other = cells[transport]
        p99 = times(other["latency_us"]["p99"], push["latency_us"]["p99"])
        cpu = times(other["server_cpu_us_per_delivery"], push["server_cpu_us_per_delivery"])
        text = (
            f"At {clients} clients{where}, the p99 of {label(transport)} is {p99} that of "
            f"{reference.label} ({ms(other['latency_us']['p99'])} vs {ms(push['latency_us']['p99'])})"
        )
        if cpu:
            text += (
                f", at {cpu} the server CPU per delivery "
                f"({other['server_cpu_us_per_delivery']:.0f} vs {push['server_cpu_us_per_delivery']:.0f} us)"
            )
        p50_ratio = (other["latency_us"]["p50"] or 0) / max(push["latency_us"]["p50"] or 1, 1)
        if transports.get(transport).role == transports.POLL and p50_ratio <= CLOSE_ENOUGH:
            text += (
                f"; at the median it is within {CLOSE_ENOUGH:g}x of push ({ms(other['latency_us']['p50'])} "
                f"vs {ms(push['latency_us']['p50'])}): with events this rare, polling is close enough on latency"
            )
        notes.append(text + ".")
    return notes


def short_poll_notes(cells: list[dict], where: str) -> list[str]:
    notes = []
    by_interval: dict[float, list[dict]] = defaultdict(list)
    for cell in cells:
        if has_interval(cell["transport"]) and cell["poll_interval"]:
            by_interval[(cell["transport"], cell["poll_interval"])].append(cell)
    for (transport, interval), group in sorted(by_interval.items()):
        medians = ", ".join(
            f"{ms(c['latency_us']['p50'])} at {c['clients']}"
            for c in sorted(group, key=lambda c: c["clients"])
        )
        rpd = [c["requests_per_delivery"] for c in group if c["requests_per_delivery"]]
        empty = [c["empty_poll_share"] for c in group if c["empty_poll_share"] is not None]
        text = (
            f"{label(transport).capitalize()} every {interval:g} s{where} delivered at a median of {medians} clients: "
            f"about half its interval ({interval * 500:.0f} ms) whatever the load"
        )
        if rpd:
            spread = (
                f"{min(rpd):.2f}"
                if f"{min(rpd):.2f}" == f"{max(rpd):.2f}"
                else f"{min(rpd):.2f}-{max(rpd):.2f}"
            )
            text += f", asking {spread} requests per delivered event"
        if empty:
            text += f" ({100 * max(empty):.0f}% of its polls came back empty)"
        notes.append(text + ".")
    return notes


def completeness_notes(cells: list[dict]) -> list[str]:
    lossy = [c for c in cells if c["lost"] or c["duplicates"] or c["reordered"] or c["errors"]]
    bound = [c for c in cells if c.get("client_bound")]
    notes = []
    if lossy:
        notes.append(
            "Incomplete deliveries: "
            + "; ".join(
                f"{c['name']} lost {c['lost']} of {c['expected']} and duplicated {c['duplicates']}"
                for c in lossy
            )
            + "."
        )
    else:
        delivered = sum(c["received"] for c in cells)
        notes.append(
            f"No transport lost, duplicated or reordered an event: {delivered:,} deliveries, all accounted for."
        )
    if bound:
        notes.append(
            f"{len(bound)} cell(s) were client-bound ({', '.join(c['name'] for c in bound)}): the load "
            "generator was the bottleneck there, so their latency is the client's as much as the server's."
        )
    return notes


LOG_ERRORS = (  # whose log, its key
    ("server", "server_errors"),
    ("Locust", "loadgen_errors"),
    ("network emulator", "network_errors"),
)


def log_error_notes(cells: list[dict]) -> list[str]:
    """What the servers' and Locust's logs held (schema 5: `server_errors`, `loadgen_errors`):
    one line per cell and log with errors, the first error named; or one line saying none."""
    scanned = [c for c in cells if any(c.get(key) for _, key in LOG_ERRORS)]
    if not scanned:
        return []
    notes = []
    for cell in scanned:
        for whose, key in LOG_ERRORS:
            for name, found in ((cell.get(key) or {}).get("processes") or {}).items():
                if found["count"]:
                    notes.append(
                        f"{cell['name']}: {found['count']} traceback(s) or error line(s) in the "
                        f"{whose} log {name}, the first: {found['first'][0]}"
                    )
    if not notes:
        notes.append(
            f"No traceback or error line in any server or Locust log ({len(scanned)} cell(s) read)."
        )
    return notes


def rate_notes(cells: list[dict]) -> list[str]:
    notes = []
    series: dict[tuple, dict[float, dict]] = defaultdict(dict)
    for cell in cells:
        if cell.get("scenario", "broadcast") == "broadcast" and cell["latency_us"]["count"]:
            series[(cell["transport"], cell["clients"], cell["poll_interval"])][cell["rate"]] = cell
    for (transport, clients, _interval), by_rate in sorted(
        series.items(), key=lambda kv: str(kv[0])
    ):
        spec = transports.get(transport)
        if not (spec.baseline or spec.role == transports.POLL) or len(by_rate) < 2:
            continue
        low, high = min(by_rate), max(by_rate)
        growth = times(by_rate[high]["latency_us"]["p99"], by_rate[low]["latency_us"]["p99"])
        notes.append(
            f"From {low:g} to {high:g} events/s at {clients} clients, {label(transport)}'s p99 went "
            f"from {ms(by_rate[low]['latency_us']['p99'])} to {ms(by_rate[high]['latency_us']['p99'])} ({growth})."
        )
    return notes


def range_words(result: dict) -> str:
    """', somewhere in [250, 275) by the range rule' when the search refined (repeats)."""
    low, high = result.get("capacity_range") or [None, None]
    counts = [m[0] for m in result.get("measurements") or []]
    if len(counts) == len(set(counts)) or (low is None and high is None):
        return ""  # no count measured twice: the step search alone
    if high is None:
        return f", held every time up to {low}"
    if low is None:
        return f", over the limit every time from {high}"
    return f", somewhere in [{low}, {high}) by the range rule"


def capacity_notes(capacity: dict) -> list[str]:
    parts = []
    for transport in transport_order(capacity["transports"]):
        result = capacity["transports"][transport]
        if result["capacity"] is None:
            parts.append(
                f"{label(transport)} none from {capacity['start']} clients up ({result['reason']})"
            )
        else:
            bound = "at least " if result["lower_bound"] else ""
            parts.append(
                f"{label(transport)} {bound}{result['capacity']} clients"
                f"{range_words(result)} ({result['reason']})"
            )
    return [f"Capacity with p99 under {capacity['slo_p99_ms']:g} ms: " + "; ".join(parts) + "."]
