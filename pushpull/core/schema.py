"""The result schema, written down once as types: a cell of summary.json is a `CellSummary`.
docs/results.md explains every key; `pushpull report` and `pushpull compare` read this version
and the ones before it (see `upgrade_cell`).

Version history:
    1  first version (the load-generator client was `socketio_client`, for socketio only)
    2  `client` replaces `socketio_client` (null = the transport's default client); `role`
    3  `server_procs`, `message_queue`, `queue`, `queue_cpu_us_per_delivery`, `queue_cpu_share`
       (several server processes on a Redis queue; the server's CPU includes Redis's)
    4  churn: `churn_every`, `churn_downtime`, `resume`, `reconnects`, `gap_owed`, `gap_lost`,
       `gap_lost_share`, `connect_us`, `catchup_us`, `caught_up`, `catchup_latency_us`;
       `storm`, `recovery` (every connection dropped at once: recovery times and curves);
       `latency_ci_us` (95% intervals of p50/p90/p99/p99.9, a bootstrap over events)
    5  `server_errors`, `loadgen_errors`: tracebacks and error lines in the cell's server and
       Locust logs ({count, processes: {log: {count, first}}}; null for a target's server)
    6  `network` (the emulated network's profile, null on loopback), `network_cpu_us_per_delivery`
       and `network_cpu_percent` (the emulator's own CPU, apart from the server's and Locust's),
       `network_errors` (its log, scanned as the servers' are)
    7  `first_connect_us`: each client's first connect, begun -> its welcome (or its poll's
       baseline answer), the round trips of the transport's handshake (null before 7)
    8  `tls` (https and wss), `proxy` (nginx in front, or null), `proxy_figures` (nginx's
       version, config, CPU per delivery and client-edge bytes per delivery), `proxy_errors`,
       `descriptors_exhausted` (the process that ran out of file descriptors, or null)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TypedDict

SCHEMA_VERSION = 8
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8)


class LatencySummary(TypedDict):
    count: int
    min: int | None
    p50: int | None
    p90: int | None
    p99: int | None
    p999: int | None
    max: int | None
    mean: float | None


class Tail(TypedDict):
    p50: int | None
    p99: int | None
    max: int | None


class ClockOffset(TypedDict):
    offset: float | None
    uncertainty: float | None
    per_process: list[dict]


@dataclass
class CellSummary:
    transport: str
    role: str  # "push" or "poll", from the transport registry
    clients: int
    rate: float
    poll_interval: float | None
    client: str | None
    repeat: int
    scenario: str
    payload_bytes: int
    sent: int
    duration_s: float
    name: str
    window: dict
    clients_connected: int
    latency_us: LatencySummary
    latency_from_schedule_us: LatencySummary
    warmup_latency_us: LatencySummary
    published: int
    expected: int
    received: int
    lost: int
    duplicates: int
    reordered: int
    errors: int
    requests: int | None
    requests_per_delivery: float | None
    empty_poll_share: float | None
    bytes_per_delivery: float | None
    bytes_out_per_delivery: float | None
    server_cpu_us_per_delivery: float | None
    server_cpu_percent: float | None
    server_rss_bytes: int | None
    server_rss_per_client_bytes: float | None
    loadgen_cpu_percent: float
    loadgen_cpu_percent_per_process: list[float | None]
    loadgen_cpu_us_per_delivery: float | None
    loadgen_procs: int
    loadgen_loop_lag_us: Tail
    client_bound: bool
    client_bound_reasons: list[str]
    clock_offset_us: ClockOffset
    publisher_lag_us: Tail
    server_cpu_source: str | None = None  # schedstat (ns), ticks (10 ms) or the target's /stats
    server_idle_cpu_percent: float | None = None  # with no client, same rate and placement
    server_marginal_cpu_us_per_delivery: float | None = None  # idle baseline subtracted
    loadgen_workers: int = 0  # Locust workers that joined from elsewhere (schema 3)
    loadgen_processes: list[dict] | None = None  # each: host, cores, CPU, clock offset, bound
    server_procs: int = 1  # server processes sharing one event stream (schema 3)
    message_queue: str | None = None  # the queue's URL without credentials
    queue: dict | None = None  # {"redis_version": ...}
    queue_cpu_us_per_delivery: float | None = None  # Redis's CPU, included in the server's
    queue_cpu_share: float | None = None  # of server_cpu_us_per_delivery
    target: str | None = None  # a server the harness did not start (--target)
    unavailable: dict | None = None  # {figure: why it is null}, for a target's missing endpoints
    contention: list[str] | None = None  # where the server side shared cores on this machine
    churn_every: float = 0.0  # mean seconds between one client's disconnects (0: no churn)
    churn_downtime: float = 1.0  # seconds a client stayed away
    resume: bool | None = None  # push clients asked for a replay (null: resumes by design)
    reconnects: int = 0  # churn reconnects begun in the window
    gap_owed: int | None = None  # window events published while a client was away, summed
    gap_lost: int | None = None  # of those, never received
    gap_lost_share: float | None = None  # gap_lost / gap_owed
    connect_us: Tail | None = None  # reconnect begun -> welcome (or first answer)
    catchup_us: Tail | None = None  # reconnect begun -> every missed event received
    caught_up: int = 0  # reconnects that got every missed event
    catchup_latency_us: LatencySummary | None = None  # of missed events received on return
    latency_ci_us: dict | None = None  # 95% interval of each percentile, over events
    storm: bool = False  # `pushpull storm`: every connection dropped at once mid-window
    recovery: dict | None = None  # after that drop: times, curves, CPU (docs/results.md)
    server_errors: dict | None = None  # tracebacks and error lines in the servers' logs (5)
    loadgen_errors: dict | None = None  # the same in Locust's log
    network: dict | None = None  # the emulated network's profile (6; null: loopback, none)
    network_cpu_us_per_delivery: float | None = None  # the emulator's CPU, its own figure (6)
    network_cpu_percent: float | None = None  # of one core, in the window (6)
    network_errors: dict | None = None  # tracebacks and error lines in the emulator's log (6)
    first_connect_us: LatencySummary | None = None  # connect begun -> welcome, per client (7)
    tls: bool = False  # https and wss, the certificate verified by every client (8)
    proxy: str | None = None  # "nginx" in front of the servers, or null (8)
    proxy_figures: dict | None = None  # nginx: version, config, CPU and edge bytes (8)
    proxy_errors: dict | None = None  # error lines in nginx's error log (8)
    descriptors_exhausted: str | None = None  # who ran out of file descriptors (8)

    def to_json(self) -> dict:
        return asdict(self)


def upgrade_cell(cell: dict, version: int) -> dict:
    """A cell of an older summary.json in the current shape (what analysis reads)."""
    if version == 1:
        cell = dict(cell)
        kind = cell.pop("socketio_client", None)
        cell["client"] = None if kind in (None, "lean") else kind
        cell.setdefault("role", None)
    if version < 3:
        cell = {"server_procs": 1, "message_queue": None, **cell}
    if version < 4:
        cell = {"churn_every": 0.0, "churn_downtime": 1.0, "resume": None, "reconnects": 0, **cell}
    if version < 5:
        cell = {"server_errors": None, "loadgen_errors": None, **cell}
    if version < 6:
        cell = {
            "network": None,
            "network_cpu_us_per_delivery": None,
            "network_cpu_percent": None,
            **cell,
        }
    if version < 7:
        cell = {"first_connect_us": None, **cell}
    if version < 8:
        cell = {
            "tls": False,
            "proxy": None,
            "proxy_figures": None,
            "proxy_errors": None,
            "descriptors_exhausted": None,
            **cell,
        }
    return cell
