"""The transport registry: every transport pushpull measures is declared here once, and everything
else (the CLI's choices and default lists, the Makefile's lists, the server to start, Locust's
`--transport` choices and user classes, the verify step, chart colours and labels, the findings'
baseline, the protocol test's parameters, the smoke sweep, the demo's panes, the README's
transport table) is derived from these entries.

Adding a transport is (docs/architecture.md, "Adding a transport"): its server module in
`servers/` (or an existing server), its load-generator user class in `loadtests/` (or an existing
one with other options), one `Transport` entry below naming a probe of pushpull/harness/probes.py
with its options, its section in docs/protocol.md and its row in the README's table
(`markdown_table()`). A pane in the demo also needs its browser client in
servers/demo_static/demo.js (and a new server's routes in servers/demo.py); `demo=False` leaves
it out of the page.

This module imports nothing beyond the standard library: the harness, the analysis and the
Locust process all read it. Client and probe classes are named by import path ("module:Class")
and imported only by the process that uses them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

PUSH, POLL = "push", "poll"
# How a client of each kind waits before reconnecting after its server dropped it (the storm):
# what the real client library does by default (loadtests/backoff.py implements each).
BACKOFFS = {
    "socket.io-client": "1 s doubling to 5 s, each +-50% at random (socket.io-client's defaults)",
    "reconnecting-websocket": "1-5 s at random per client, x1.3 per attempt to 10 s "
    "(the npm reconnecting-websocket's defaults; the browser's WebSocket has none)",
    "EventSource": "3 s every attempt, no jitter (Chromium's default reconnection time)",
}
DIMENSIONS = ("poll_interval", "client")  # the per-transport sweep dimensions
DEFAULT_SETS = ("bench", "storm", "churn", "gallery", "noise")  # see Transport.defaults


class UnknownTransport(ValueError):
    """A transport name that is not in the registry: never a silent fallback."""


@dataclass(frozen=True)
class ClientVariant:
    """One load-generator client for a transport: `tag` marks it in run-folder names (the
    default client has none), `path` is its Locust user class as "module:Class"."""

    path: str
    tag: str = ""
    what: str = ""


@dataclass(frozen=True)
class Transport:
    name: str
    label: str  # for charts, tables and findings
    color: str  # one colour everywhere (Okabe-Ito, colour-blind safe)
    role: str  # PUSH (the server sends when it publishes) or POLL (the client asks)
    server: str  # the module that serves it: `python -m <server> --port ...`
    server_text: str  # what that server is, in words (README, `pushpull transports`)
    does: str  # what one client does, in words
    clients: dict[str, ClientVariant]  # client kind -> variant; the first is the default
    probe: str  # "module:Class" of the blocking protocol client used by verify and the tests
    probe_options: dict = field(default_factory=dict)
    dimensions: tuple[str, ...] = ()  # which of DIMENSIONS apply ("client" when >1 client)
    counts_requests: bool = True  # whether HTTP requests per delivery mean something
    baseline: bool = False  # the push transport the findings compare every other one against
    resumes: bool = True  # a client coming back gets what it missed, by the protocol's design
    backoff: str = "socket.io-client"  # a key of BACKOFFS: its reconnect policy after a drop
    hold_s: float | None = None  # a poll's `timeout`: how long the server holds it (None: no polls)
    # the round trips a new client waits before its welcome (or baseline answer), in order: the
    # theory of `first_connect_us` (connect time = len(...) x the round trip + loopback's)
    connect_round_trips: tuple[str, ...] = ()
    # Which of the suite's default runs include it (DEFAULT_SETS): `pushpull bench` and `make
    # bench` without --transports, the storm, the churn run, the README's gallery, the noise band.
    defaults: frozenset[str] = frozenset()
    demo: bool = True  # a pane in `make demo` (its browser client: servers/demo_static/demo.js)

    @property
    def periodic(self) -> bool:
        """Whether its clients poll on a period (`--poll-interval`): short-poll."""
        return "poll_interval" in self.dimensions

    @property
    def default_client(self) -> str:
        return next(iter(self.clients))

    def client_path(self, kind: str | None) -> str:
        return self.clients[kind or self.default_client].path

    def probe_factory(self):
        """A callable url -> connected probe (see pushpull/harness/probes.py)."""
        cls = resolve(self.probe)
        return lambda url: cls(url, **self.probe_options)

    @property
    def server_name(self) -> str:
        """The name the server gives in /healthz: its module's last part."""
        return self.server.rsplit(".", 1)[1]


SOCKETIO_LEAN = ClientVariant(
    "loadtests.socketio_users:SocketIOUser", "", "pushpull's lean client on the shared reactor"
)
SOCKETIO_REFERENCE = ClientVariant(
    "loadtests.socketio_users:PythonSocketIOUser",
    "psio",
    "python-socketio's Client (the reference; a greenlet per message)",
)

REGISTRY: tuple[Transport, ...] = (
    Transport(
        name="socketio",
        label="Socket.IO (websocket push)",
        color="#0072B2",  # blue
        role=PUSH,
        server="servers.push",
        server_text="Flask-SocketIO (websocket through simple-websocket)",
        does="holds a websocket; events are pushed as Socket.IO `response` events",
        clients={"lean": SOCKETIO_LEAN, "python-socketio": SOCKETIO_REFERENCE},
        probe="pushpull.harness.probes:SocketIOProbe",
        probe_options={"engineio_transport": "websocket"},
        dimensions=("client",),
        counts_requests=False,
        baseline=True,
        resumes=False,
        defaults=frozenset({"bench", "storm", "churn", "gallery", "noise"}),
        connect_round_trips=(
            "TCP",
            "HTTP upgrade (Engine.IO open follows the 101)",
            "Socket.IO CONNECT",
        ),
    ),
    Transport(
        name="websocket",
        label="plain WebSocket (push)",
        color="#56B4E9",  # sky blue
        role=PUSH,
        server="servers.websocket",
        server_text="Flask + flask-sock (simple-websocket), `GET /ws`",
        does="holds a websocket; every event is one JSON text frame, no Socket.IO framing",
        clients={"lean": ClientVariant("loadtests.websocket_user:WebSocketUser")},
        probe="pushpull.harness.probes:WebSocketProbe",
        counts_requests=False,
        resumes=False,
        backoff="reconnecting-websocket",
        defaults=frozenset({"bench", "churn", "gallery"}),
        connect_round_trips=("TCP", "HTTP upgrade (the welcome follows the 101)"),
    ),
    Transport(
        name="sse",
        label="Server-Sent Events",
        color="#009E73",  # bluish green
        role=PUSH,
        server="servers.longpoll",
        server_text="Flask REST, `GET /stream`",
        does="one streamed response (Server-Sent Events), `Last-Event-ID` resume",
        clients={"lean": ClientVariant("loadtests.http_users:SSEUser")},
        probe="pushpull.harness.probes:SSEProbe",
        backoff="EventSource",
        defaults=frozenset({"storm", "churn", "gallery"}),
        connect_round_trips=("TCP", "GET /stream (the welcome is its first event)"),
    ),
    Transport(
        name="longpoll",
        label="long-poll",
        color="#D55E00",  # vermillion
        role=POLL,
        server="servers.longpoll",
        server_text="Flask REST, `GET /events?after=SEQ&timeout=20`",
        does="a request held until something new exists",
        clients={"lean": ClientVariant("loadtests.http_users:LongPollUser")},
        probe="pushpull.harness.probes:PollProbe",
        probe_options={"hold_s": 5.0},
        hold_s=20.0,
        defaults=frozenset({"bench", "storm", "churn", "gallery", "noise"}),
        connect_round_trips=("TCP", "GET /events (the baseline)"),
    ),
    Transport(
        name="shortpoll",
        label="short-poll",
        color="#E69F00",  # orange
        role=POLL,
        server="servers.longpoll",
        server_text="the same with `timeout=0`",
        does="a request every `--poll-interval` s from an evenly spread phase",
        clients={"lean": ClientVariant("loadtests.http_users:ShortPollUser")},
        probe="pushpull.harness.probes:PollProbe",
        probe_options={"hold_s": 0.0},
        dimensions=("poll_interval",),
        hold_s=0.0,
        defaults=frozenset({"bench", "gallery", "noise"}),
        connect_round_trips=("TCP", "GET /events (the baseline)"),
    ),
    Transport(
        name="socketio-polling",
        label="Socket.IO (its long-polling)",
        color="#CC79A7",  # reddish purple
        role=POLL,
        server="servers.push",
        server_text="Flask-SocketIO, Engine.IO long-polling only",
        does="a held GET per batch of packets, POSTs to send",
        clients={"lean": ClientVariant("loadtests.socketio_users:SocketIOPollingUser")},
        probe="pushpull.harness.probes:SocketIOProbe",
        probe_options={"engineio_transport": "polling"},
        resumes=False,
        connect_round_trips=(
            "TCP",
            "GET: Engine.IO open",
            "TCP (the POST's own connection)",
            "POST: Socket.IO CONNECT",
            "GET: the CONNECT answer and the welcome",
        ),
    ),
)
TRANSPORTS: dict[str, Transport] = {t.name: t for t in REGISTRY}
NAMES: tuple[str, ...] = tuple(TRANSPORTS)
CLIENT_KINDS: tuple[str, ...] = tuple(dict.fromkeys(k for t in REGISTRY for k in t.clients))


def get(name: str) -> Transport:
    """The registry entry of `name`; an unknown name raises UnknownTransport naming the choices."""
    try:
        return TRANSPORTS[name]
    except KeyError:
        raise UnknownTransport(
            f"unknown transport {name!r} (allowed: {', '.join(NAMES)})"
        ) from None


def demo_names() -> list[str]:
    """The transports with a pane in the demo page, in the registry's order."""
    return [t.name for t in REGISTRY if t.demo]


def default_names(which: str | None = None) -> list[str]:
    """The transports of one of DEFAULT_SETS, in the registry's order (None: every transport)."""
    if which is not None and which not in DEFAULT_SETS:
        raise ValueError(f"unknown default set {which!r} (allowed: {', '.join(DEFAULT_SETS)})")
    return [t.name for t in REGISTRY if which is None or which in t.defaults]


def baseline() -> Transport:
    return next(t for t in REGISTRY if t.baseline)


def rank(name: str) -> int:
    """Sort key: the registry's order (an unknown name is an error, not a last place)."""
    return NAMES.index(get(name).name)


def resolve(path: str):
    """'package.module:Name' -> the object."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def table_rows() -> list[list[str]]:
    return [[t.name, t.role, t.server, t.does] for t in REGISTRY]


def text_table() -> str:
    """`pushpull transports`: the registry as aligned columns."""
    rows = [["transport", "role", "server", "what its client does"], *table_rows()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[3])
    return "\n".join(lines)


def markdown_table() -> str:
    """The README's transport table (tests check the README carries exactly this)."""
    lines = ["| transport | role | server | what the client does |", "|---|---|---|---|"]
    lines += [f"| `{t.name}` | {t.role} | {t.server_text} | {t.does} |" for t in REGISTRY]
    return "\n".join(lines) + "\n"
