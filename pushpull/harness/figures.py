"""Every figure of a cell's summary (pushpull/core/schema.py), from the merged load-generator
files, the server snapshots and /published: deliveries and loss, latency and its intervals,
cost per delivery, whether the load generator was the bottleneck, churn, and whether the
server's publisher stopped (which voids the cell)."""

from __future__ import annotations

from pushpull.core.histograms import PERCENTILES
from pushpull.core.intervals import latency_intervals
from pushpull.core.records import expected_deliveries, gap_figures
from pushpull.core.schema import CellSummary, LatencySummary
from pushpull.harness.config import BenchConfig, Cell
from pushpull.harness.mq import redacted
from pushpull.harness.snapshots import Snapshot, idle_cpu_share


def tick_rate(cell: Cell) -> float:
    """The server's publish rate: --rate in broadcast; none in chat, where clients send."""
    return 0.0 if cell.scenario == "chat" else cell.rate


def latency_summary(histogram) -> LatencySummary:
    count = histogram.get_total_count()
    if count == 0:
        return {
            "count": 0,
            "min": None,
            **{k: None for k in PERCENTILES},
            "max": None,
            "mean": None,
        }
    return {
        "count": count,
        "min": histogram.get_min_value(),
        **{key: histogram.get_value_at_percentile(p) for key, p in PERCENTILES.items()},
        "max": histogram.get_max_value(),
        "mean": round(histogram.get_mean_value(), 1),
    }


# A point where the load generator is saturated measures the client, not the server.
CLIENT_BOUND_CPU_PERCENT = 80.0  # any Locust process above this share of one core


CLIENT_BOUND_LOOP_LAG_US = 10_000  # or its 10 ms sleeps woke this late at p99


def process_cpu_s(cpu: dict) -> float:
    """A load-generator process's CPU seconds in the window: nanosecond accounting when it
    has it (total_s), else user + system ticks."""
    return cpu["total_s"] if cpu.get("total_s") is not None else cpu["user_s"] + cpu["system_s"]


def process_cpu_percent(process: dict) -> float | None:
    cpu = process["cpu"]
    if not cpu or cpu["wall_s"] <= 0:
        return None
    return round(100 * process_cpu_s(cpu) / cpu["wall_s"], 1)


def bound_reasons(per_process: list[float | None], loop_lag: dict) -> list[str]:
    reasons = []
    busiest = max((p for p in per_process if p is not None), default=0.0)
    if busiest >= CLIENT_BOUND_CPU_PERCENT:
        reasons.append(
            f"a Locust process used {busiest:.0f}% of a core (limit {CLIENT_BOUND_CPU_PERCENT:.0f}%)"
        )
    if (loop_lag["p99"] or 0) >= CLIENT_BOUND_LOOP_LAG_US:
        reasons.append(
            f"Locust's event loop lagged {loop_lag['p99'] / 1000:.1f} ms at p99 (limit {CLIENT_BOUND_LOOP_LAG_US / 1000:.0f} ms)"
        )
    return reasons


def process_summary(process: dict) -> dict:
    """One load-generator process (a Locust worker): where it ran, its clock offset to the
    server, and whether it was the bottleneck, by the same rule as the cell's."""
    cpu = process_cpu_percent(process)
    lag = process.get("loop_lag_p99_us")
    clock = process["clock"]
    reasons = bound_reasons([cpu], {"p99": lag})
    return {
        "pid": process["pid"],
        **(process.get("host") or {"name": None, "cores": None, "cpu_model": None}),
        "clock_offset_us": None if clock["offset_ns"] is None else clock["offset_ns"] / 1000,
        "clock_uncertainty_us": None
        if clock["uncertainty_ns"] is None
        else clock["uncertainty_ns"] / 1000,
        "cpu_percent": cpu,
        "loop_lag_p99_us": lag,
        "client_bound": bool(reasons),
        "client_bound_reasons": reasons,
    }


def clock_offset(processes: list[dict]) -> dict:
    """The load generators' measured offsets to the server clock and the corrections applied
    (us); `offset` and `uncertainty` are those of the process with the largest offset."""
    clocks = [
        {key.removesuffix("_ns"): None if v is None else v / 1000 for key, v in p["clock"].items()}
        for p in processes
    ]
    worst = max(
        clocks, key=lambda c: abs(c["offset"]), default={"offset": None, "uncertainty": None}
    )
    return {"offset": worst["offset"], "uncertainty": worst["uncertainty"], "per_process": clocks}


def per(value: float | None, count: int, scale: float = 1.0) -> float | None:
    return None if value is None or count <= 0 else round(value * scale / count, 3)


def summarize(
    config: BenchConfig,
    cell: Cell,
    window: dict,
    merged: dict,
    published: dict | None,
    idle: Snapshot,
    start: Snapshot,
    end: Snapshot,
    queue: dict | None = None,
    unavailable: dict[str, str] | None = None,
    idle_start: Snapshot | None = None,
    idle_end: Snapshot | None = None,
) -> dict:
    """The cell's figures; those in `unavailable` (a target's missing endpoints) are null."""
    unavailable = unavailable or {}
    clock = clock_offset(merged["processes"])
    if "clock_offset_us" in unavailable:
        clock = {"offset": None, "uncertainty": None, "per_process": clock["per_process"]}
    return CellSummary(
        **cell_identity(config, cell, window),
        **delivery_figures(merged, published),
        **server_cost(cell, merged, idle, start, end, idle_start, idle_end),
        **loadgen_figures(cell, merged),
        clock_offset_us=clock,
        queue=queue,
        publisher_lag_us=publisher_lag(published),
        target=config.target,
        unavailable=unavailable or None,
        **churn_figures(cell, merged, published),
    ).to_json()


def cell_identity(config: BenchConfig, cell: Cell, window: dict) -> dict:
    """What was measured: the cell's point in the sweep and its window."""
    return {
        "transport": cell.transport,
        "role": cell.spec.role,
        "clients": cell.clients,
        "rate": cell.rate,
        "poll_interval": cell.poll_interval,
        "client": cell.client,
        "repeat": cell.repeat,
        "scenario": cell.scenario,
        "payload_bytes": cell.payload_bytes,
        "duration_s": config.duration,
        "name": cell.name,
        "window": {"start_ns": window["start_ns"], "end_ns": window["end_ns"]},
        "loadgen_procs": cell.loadgen_procs,
        "loadgen_workers": cell.loadgen_workers,
        "server_procs": cell.server_procs,
        "message_queue": None if cell.message_queue is None else redacted(cell.message_queue),
        "tls": cell.tls,
        "proxy": cell.proxy,
    }


def delivery_figures(merged: dict, published: dict | None) -> dict:
    """What was owed and what arrived, and how late (per recipient)."""
    received = merged["received"]
    expected = None
    if published is not None:
        expected = expected_deliveries(
            merged["segments"], published["first_seq"], published["last_seq"]
        )
    hist = merged["histograms"]
    return {
        "sent": merged["sent"],
        "clients_connected": merged["clients_at_window_start"],
        "latency_us": latency_summary(hist["latency"]),
        "latency_ci_us": latency_intervals(merged["per_event"]),
        "latency_from_schedule_us": latency_summary(hist["from_schedule"]),
        "warmup_latency_us": latency_summary(hist["warmup"]),
        "first_connect_us": latency_summary(hist["first_connect"]),
        "published": published["count"] if published is not None else None,
        "expected": expected,
        "received": received,
        "lost": expected - received if expected is not None else None,
        "duplicates": merged["duplicates"],
        "reordered": merged["reordered"],
        "errors": merged["errors"],
    }


def server_cost(
    cell: Cell,
    merged: dict,
    idle: Snapshot,
    start: Snapshot,
    end: Snapshot,
    idle_start: Snapshot | None,
    idle_end: Snapshot | None,
) -> dict:
    """The server side's cost in the window: requests, bytes, CPU (the queue's Redis included,
    and with the idle baseline subtracted), memory, per delivery."""
    received = merged["received"]
    wall_s = (end.t_ns - start.t_ns) / 1e9
    queue_cpu_s = None
    if end.queue_cpu_s is not None and start.queue_cpu_s is not None:
        queue_cpu_s = end.queue_cpu_s - start.queue_cpu_s
    server_cpu_s = None
    if end.cpu_s is not None and start.cpu_s is not None:  # the queue's CPU is the server's
        server_cpu_s = end.cpu_s - start.cpu_s + (queue_cpu_s or 0.0)
    stats = bool(end.stats)
    idle_cpu = idle_cpu_share(idle_start, idle_end)  # CPU seconds per second, no clients
    marginal_cpu_s = None
    if idle_cpu is not None and server_cpu_s is not None:
        marginal_cpu_s = max(0.0, server_cpu_s - idle_cpu * wall_s)
    requests = end.total("requests") - start.total("requests") if stats else None
    bytes_out = end.total("bytes_written") - start.total("bytes_written") if stats else None
    bytes_in = end.total("bytes_read") - start.total("bytes_read") if stats else None
    polls = merged["polls"]
    counts_requests = cell.spec.counts_requests and requests is not None
    rss_growth = None
    if start.rss_bytes is not None and idle.rss_bytes is not None:
        rss_growth = start.rss_bytes - idle.rss_bytes
    return {
        "requests": requests if counts_requests else None,
        "requests_per_delivery": per(requests, received) if counts_requests else None,
        "empty_poll_share": per(merged["empty_polls"], polls) if polls else None,
        "bytes_per_delivery": per(bytes_out + bytes_in, received) if stats else None,
        "bytes_out_per_delivery": per(bytes_out, received),
        "server_cpu_us_per_delivery": per(server_cpu_s, received, 1e6),
        "server_cpu_percent": (
            round(100 * server_cpu_s / wall_s, 1)
            if server_cpu_s is not None and wall_s > 0
            else None
        ),
        "server_rss_bytes": end.rss_bytes,
        "server_rss_per_client_bytes": per(rss_growth, cell.clients),
        "server_cpu_source": end.cpu_source,
        "server_idle_cpu_percent": None if idle_cpu is None else round(100 * idle_cpu, 2),
        "server_marginal_cpu_us_per_delivery": per(marginal_cpu_s, received, 1e6),
        "queue_cpu_us_per_delivery": per(queue_cpu_s, received, 1e6),
        "queue_cpu_share": (
            round(queue_cpu_s / server_cpu_s, 3)
            if queue_cpu_s is not None and server_cpu_s
            else None
        ),
    }


def loadgen_figures(cell: Cell, merged: dict) -> dict:
    """The load generator's own cost, and whether it was the bottleneck (then the figures
    describe the client, not the server)."""
    per_process = [process_cpu_percent(p) for p in merged["processes"]]
    loadgen_cpu_s = sum(process_cpu_s(p["cpu"]) for p in merged["processes"] if p["cpu"])
    loop_lag = latency_summary(merged["histograms"]["loop_lag"])
    reasons = bound_reasons(per_process, loop_lag)
    return {
        "loadgen_cpu_percent": round(sum(p for p in per_process if p is not None), 1),
        "loadgen_cpu_percent_per_process": per_process,
        "loadgen_cpu_us_per_delivery": per(loadgen_cpu_s, merged["received"], 1e6),
        "loadgen_processes": [process_summary(p) for p in merged["processes"]],
        "loadgen_loop_lag_us": {k: loop_lag[k] for k in ("p50", "p99", "max")},
        "client_bound": bool(reasons),
        "client_bound_reasons": reasons,
    }


def publisher_lag(published: dict | None) -> dict:
    """How late the server's publisher ticked against its schedule (us)."""
    lags = sorted(published["publisher_lag_us"]) if published is not None else []
    return {
        "p50": lags[len(lags) // 2] if lags else None,
        "p99": lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else None,
        "max": lags[-1] if lags else None,
    }


def churn_figures(cell: Cell, merged: dict, published: dict | None) -> dict:
    """What clients that came and went lost and how fast they were back (docs/results.md)."""
    figures: dict = {
        "churn_every": cell.churn_every,
        "churn_downtime": cell.churn_downtime,
        "resume": cell.resume,
        "storm": cell.storm,
        "reconnects": merged["reconnects"],
    }
    if not (cell.churn_every or cell.storm):
        return figures
    owed = lost = None
    if published is not None:
        owed, lost = gap_figures(merged["gaps"], published["first_seq"], published["last_seq"])
    hist = merged["histograms"]
    connect, catchup = latency_summary(hist["connect"]), latency_summary(hist["caught_up"])
    return figures | {
        "gap_owed": owed,
        "gap_lost": lost,
        "gap_lost_share": round(lost / owed, 4) if owed else None,
        "connect_us": {k: connect[k] for k in ("p50", "p99", "max")},
        "catchup_us": {k: catchup[k] for k in ("p50", "p99", "max")},
        "caught_up": catchup["count"],
        "catchup_latency_us": latency_summary(hist["catchup"]),
    }


def publisher_stalled(
    cell: Cell, duration_s: float, published: dict | None, last_quarter: dict | None
) -> str | None:
    """Why the cell is void because the server stopped publishing (its publisher died or hung),
    or None. In broadcast: fewer than half the ticks due in the window were published, or none
    in its last quarter when at least two were due there. A publisher that stops stops every
    client's stream, so the cell's figures would describe a broken server."""
    rate = tick_rate(cell)
    if published is None or rate <= 0 or rate * duration_s < 2:
        return None
    due = rate * duration_s
    if published["count"] < due / 2:
        return (
            f"the server's publisher stopped (or fell far behind): {published['count']} of the "
            f"{due:g} ticks due in the {duration_s:g} s window were published"
        )
    if last_quarter is not None and due / 4 >= 2 and last_quarter["count"] == 0:
        return (
            f"the server's publisher stopped: none of the {due / 4:g} ticks due in the last "
            f"{duration_s / 4:g} s of the window was published"
        )
    return None


def server_error_text(errors: dict | None) -> str:
    """'; server.log: <first error line> (+N more)', or '' when the servers logged none."""
    if not errors or not errors["count"]:
        return ""
    for name, found in errors["processes"].items():
        if found["count"]:
            more = errors["count"] - 1
            return f"; {name}: {found['first'][0]}" + (f" (+{more} more)" if more else "")
    return ""


def proxy_figures(
    info: dict | None,
    cpu_s: list[float | None],
    edge: list,
    start: Snapshot,
    end: Snapshot,
    merged: dict,
) -> dict | None:
    """nginx's own cost in the window, on the server side of the ledger (beside the server
    processes' and Redis's, never inside them): its CPU per delivery and share of one core;
    and the bytes per delivery at its client edge (TLS records included where TLS ends
    there), which the servers' own counts, taken behind nginx, do not see."""
    if info is None:
        return None
    cpu_us, cpu_percent = own_cost(cpu_s, start, end, merged)
    edge_in = edge_out = None
    if len(edge) == 2 and None not in edge:
        edge_in = per(edge[1][0] - edge[0][0], merged["received"])
        edge_out = per(edge[1][1] - edge[0][1], merged["received"])
    return {
        **info,
        "cpu_us_per_delivery": cpu_us,
        "cpu_percent": cpu_percent,
        "edge_bytes_per_delivery": None if edge_in is None else round(edge_in + edge_out, 3),
        "edge_bytes_out_per_delivery": edge_out,
    }


def network_figures(
    cpu_s: list[float | None], start: Snapshot, end: Snapshot, merged: dict
) -> dict:
    """The network emulator's own cost in the window, never inside the server's or the load
    generator's: its CPU per delivery and its share of one core."""
    cpu_us, cpu_percent = own_cost(cpu_s, start, end, merged)
    return {"network_cpu_us_per_delivery": cpu_us, "network_cpu_percent": cpu_percent}


def own_cost(
    cpu_s: list[float | None], start: Snapshot, end: Snapshot, merged: dict
) -> tuple[float | None, float | None]:
    """A helper process's CPU per delivery (us) and share of one core (%) in the window, from
    its CPU seconds at the window's edges; (None, None) where either is missing."""
    if len(cpu_s) != 2 or None in cpu_s:
        return None, None
    used = cpu_s[1] - cpu_s[0]
    wall_s = (end.t_ns - start.t_ns) / 1e9
    return per(used, merged["received"], 1e6), round(100 * used / wall_s, 1) if wall_s > 0 else None
