"""The sweep's configuration: plain dataclasses (the whole sweep, `BenchConfig`, and one measured
point, `Cell`), built once from the command line (pushpull/cli/options.py, from the values parsed
by pushpull/cli/values.py) and then passed down explicitly. A bad value anywhere is a
`UsageError`: one line naming the flag, what was wrong and what is allowed."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pushpull.core import networks, transports, variants
from pushpull.harness.mq import redacted

SCENARIOS = ("broadcast", "chat")


class UsageError(Exception):
    """Bad input: printed as one line, exit status 2."""


@dataclass(frozen=True)
class Cell:
    """One measured point: a transport at a client count and rate (and poll interval...). In the
    chat scenario `rate` is each client's send rate and the server publishes no ticks. Its
    variants are described once, in pushpull/core/variants.py."""

    transport: str
    clients: int
    rate: float
    poll_interval: float | None
    client: str | None = None  # a non-default load-generator client of the transport
    loadgen_procs: int = 1
    repeat: int = 1  # 1..N when each cell is measured N times
    scenario: str = "broadcast"
    payload_bytes: int = 0
    loadgen_workers: int = 0  # Locust workers joining from elsewhere (pushpull worker)
    server_procs: int = 1  # server processes sharing one event stream through the queue
    message_queue: str | None = None  # the queue's URL (shown and recorded without credentials)
    churn_every: float = 0.0  # mean seconds between one client's disconnects (0: none)
    churn_downtime: float = 1.0  # seconds a client stays away
    resume: bool | None = None  # push clients ask for a replay (None: resumes by design / no churn)
    storm: bool = False  # every connection dropped at once mid-window (`pushpull storm`)
    network: str | None = None  # a --network item (pushpull/core/networks.py); None: loopback
    tls: bool = False  # https and wss (--tls on); ends at nginx when there is one
    proxy: str | None = None  # a reverse proxy in front of the servers (--proxy nginx)

    @property
    def network_profile(self) -> dict | None:
        return networks.parse(self.network) if self.network is not None else None

    def as_dict(self) -> dict:
        data = asdict(self)
        if self.message_queue is not None:
            data["message_queue"] = redacted(self.message_queue)
        return data

    @property
    def name(self) -> str:
        """Folder name, e.g. 'shortpoll-c100-r2-i0.5', 'socketio-c1000-r2-psio-p2'."""
        return variants.name(self.as_dict())

    def label(self) -> str:
        return variants.label(self.as_dict())

    @property
    def spec(self) -> transports.Transport:
        return transports.get(self.transport)


@dataclass
class BenchConfig:
    clients: list[int]
    transports: list[str]
    duration: float = 15.0
    rates: list[float] = field(default_factory=lambda: [2.0])
    poll_intervals: list[float] = field(default_factory=lambda: [0.5])
    out: Path = Path("results")
    host: str = "127.0.0.1"
    port: int = 0
    spawn_rate: float = 200.0
    grace: float = 2.0
    drain: float | None = None  # seconds after the window; None: drain_s's default
    idle_s: float = 0.5  # the server's idle CPU measured this long before Locust starts; 0: not
    client_kinds: list[str] = field(default_factory=lambda: ["lean"])
    loadgen_procs: list[int] = field(default_factory=lambda: [1])
    repeat: int = 1
    scenario: str = "broadcast"
    send_rates: list[float] = field(default_factory=lambda: [0.2])
    payload_bytes: list[int] = field(default_factory=lambda: [0])
    allow_concurrent: bool = False  # measure even while another pushpull run measures
    server_procs: list[int] = field(default_factory=lambda: [1])
    message_queues: list[str | None] = field(default_factory=lambda: [None])
    queue_info: list[dict] = field(default_factory=list)  # queues: URL (redacted), Redis version
    loadgen_workers: int = 0  # Locust workers that join each cell (`pushpull worker`)
    master_host: str = "127.0.0.1"  # where Locust's master listens for them
    master_port: int = 5557
    workers_wait_s: float = 60.0  # how long a cell waits for all of them
    target: str | None = None  # measure this server instead of starting one (--target URL)
    churn_every: list[float] = field(default_factory=lambda: [0.0])
    churn_downtime: float = 1.0
    resume: list[bool] = field(default_factory=lambda: [False])
    storm_at_s: float | None = None  # seconds into the window when every connection is dropped
    networks: list[str | None] = field(default_factory=lambda: [None])  # None: loopback
    tls: list[bool] = field(default_factory=lambda: [False])  # --tls off,on
    tls_files: object = None  # certs.TLSFiles: the user's, or the run's own once it starts
    proxies: list[str | None] = field(default_factory=lambda: [None])  # --proxy none,nginx
    source_addresses: list[str] = field(default_factory=list)  # the clients' loopback addresses

    def cells(self) -> list[Cell]:
        """Every combination, transport-major so one server kind runs its cells together."""
        cells = []
        rates = self.send_rates if self.scenario == "chat" else self.rates
        for transport, clients, rate, procs, pad, servers, queue, churn in itertools.product(
            self.transports,
            self.clients,
            rates,
            self.loadgen_procs,
            self.payload_bytes,
            self.server_procs,
            self.message_queues,
            self.churn_every,
        ):
            if servers > 1 and queue is None:
                continue  # several processes share one stream only through a queue
            spec = transports.get(transport)
            intervals = self.poll_intervals if spec.periodic else [None]
            kinds = list(
                dict.fromkeys(
                    None if kind == spec.default_client else kind
                    for kind in self.client_kinds
                    if kind in spec.clients
                )
            ) or [None]
            # Resume is a choice only for clients that come back and lack it by design.
            comes_back = churn or self.storm_at_s is not None
            resumes = self.resume if comes_back and not spec.resumes else [None]
            cells.extend(
                Cell(
                    transport, clients, rate, interval, kind, procs, 1, self.scenario, pad,
                    self.loadgen_workers, servers, queue, churn,
                    self.churn_downtime if churn else 1.0, resume, self.storm_at_s is not None,
                    network, secure, proxy,
                )
                for interval, kind, resume, network, proxy, secure in itertools.product(
                    intervals, kinds, resumes, self.networks, self.proxies, self.tls
                )
            )  # fmt: skip
        # Repeats interleave (a b c a b c), so slow drifts of a shared machine spread evenly.
        return [replace(cell, repeat=k) for k in range(1, self.repeat + 1) for cell in cells]

    def polled_intervals(self) -> list[float]:
        """The short-poll intervals in use: none unless a chosen transport polls on a period."""
        if any(transports.get(t).periodic for t in self.transports):
            return self.poll_intervals
        return []

    def loadgen_processes(self, cell: Cell) -> int:
        """How many Locust processes measure the cell (and write a process file each)."""
        return cell.loadgen_workers or cell.loadgen_procs

    def drain_s(self, cell: Cell) -> float:
        """Time after the window for the last events in flight to arrive: --drain, or by default
        2 s, or 3 short-poll intervals where that is longer."""
        if self.drain is not None:
            return self.drain
        return max(2.0, 3 * (cell.poll_interval or 0))

    def estimated_cell_s(self, cell: Cell) -> float:
        startup = 4.0  # server start + verify + Locust start + teardown, measured on a 2-core box
        return (
            startup
            + cell.clients / self.spawn_rate
            + self.grace
            + self.duration
            + self.drain_s(cell)
        )

    def to_json(self) -> dict:
        data = asdict(self)
        data["out"] = str(self.out)
        data["tls_files"] = None if self.tls_files is None else self.tls_files.as_dict()
        data["message_queues"] = [q if q is None else redacted(q) for q in self.message_queues]
        return data
