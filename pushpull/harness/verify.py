"""Check that a running server speaks docs/protocol.md before anything is measured on it.

Each check returns a list of problems (empty when the server is fine), in the manner of
TechEmpower's verify mode; the sweep refuses to measure a server with problems. The transport's
own check is its registry entry's probe (pushpull/harness/probes.py), the same client the protocol test
uses: connect and get a welcome, send a chat message, see it come back as an event.
"""

from __future__ import annotations

import secrets
import time

from pushpull.core.transports import Transport, resolve
from pushpull.harness.probes import ProbeError, call
from pushpull.harness.procs import get_json

EVENT_FIELDS = {"seq": int, "t_pub": int, "t_sched": int, "kind": str, "data": dict}
STATS_FIELDS = (
    "published",
    "last_seq",
    "clients",
    "requests",
    "events_sent",
    "cpu_user_s",
    "rss_bytes",
    "bytes_written",
    "bytes_read",
)


def event_problems(event: object, where: str) -> list[str]:
    if not isinstance(event, dict):
        return [f"{where}: event is not a JSON object: {event!r}"]
    problems = []
    for name, kind in EVENT_FIELDS.items():
        if not isinstance(event.get(name), kind):
            problems.append(
                f"{where}: field {name!r} missing or not {kind.__name__}: {event.get(name)!r}"
            )
    t_pub = event.get("t_pub")
    if isinstance(t_pub, int) and abs(t_pub - time.time_ns()) > 60e9:
        problems.append(f"{where}: t_pub {t_pub} is not epoch nanoseconds near now")
    return problems


def common_problems(url: str, server_name: str, pid: int) -> list[str]:
    problems = []
    health = get_json(url + "/healthz")
    if (
        health.get("status") != "ok"
        or health.get("server") != server_name
        or health.get("pid") != pid
    ):
        problems.append(
            f"/healthz: expected status ok, server {server_name}, pid {pid}; got {health}"
        )
    stats = get_json(url + "/stats")
    problems += [f"/stats: missing {name!r}" for name in STATS_FIELDS if name not in stats]
    published = get_json(url + "/published?since=0")
    if not isinstance(published.get("count"), int) or "publisher_lag_us" not in published:
        problems.append(f"/published: expected count and publisher_lag_us, got {published}")
    status, body = call(url + "/published?since=soon")
    if status != 400 or "error" not in body:
        problems.append(
            f"/published?since=soon: expected 400 with a JSON error, got {status} {body}"
        )
    return problems


def chat_message() -> dict:
    """The verify step's chat message. It is recognised when it comes back by its random
    marker, not by equality of the whole message: a server whose numbers are doubles (any
    JavaScript server) hands back its `t_send`, integer ns near 1.8e18 and so beyond 2^53,
    a few hundred ns off (docs/protocol.md, "Numbers beyond 2^53"), which is correct."""
    return {"probe": "verify", "marker": secrets.token_hex(8), "t_send": time.time_ns()}


def is_echo(event: dict, message: dict, seq: int | None) -> bool:
    """Whether `event` carries `message` back: its marker, and the acknowledged seq if any."""
    data = event.get("data")
    return (
        isinstance(data, dict)
        and data.get("marker") == message["marker"]
        and (seq is None or event.get("seq") == seq)
    )


def echo_changes(data: dict, message: dict) -> str | None:
    """What a server changed in the chat message it handed back (None: nothing). `t_send` may
    come back up to 1 us off (latency's unit): a double's rounding moves it by up to 256 ns."""
    t_send, echoed = message["t_send"], data.get("t_send")
    if not isinstance(echoed, int) or isinstance(echoed, bool) or abs(echoed - t_send) > 1000:
        return f"t_send {t_send} came back as {echoed!r}"
    rest = {key: value for key, value in data.items() if key != "t_send"}
    if rest != {key: value for key, value in message.items() if key != "t_send"}:
        return f"sent {message}, got {data}"
    return None


def chat_round_trip(transport: Transport, url: str) -> list[str]:
    """Connect, send a chat message, and find it among the events that follow."""
    where = transport.name
    probe = transport.probe_factory()(url)
    try:
        message = chat_message()
        seq = probe.send(message)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            (event,) = probe.receive(1)
            if event.get("seq", 0) <= probe.baseline:
                return [
                    f"{where}: event {event.get('seq')} is not after the baseline {probe.baseline}"
                ]
            if is_echo(event, message, seq):
                problems = event_problems(event, where)
                if event.get("kind") != "chat":
                    problems.append(f"{where}: the chat message came back as {event}")
                if changed := echo_changes(event["data"], message):
                    problems.append(f"{where}: the chat message came back changed: {changed}")
                return problems
        return [f"{where}: the chat message never came back as an event"]
    finally:
        probe.close()


# What a server the harness did not start may lack, and the figures each part feeds.
OPTIONAL_ENDPOINTS = {
    "/healthz": (("status",), "readiness only"),
    "/stats": (STATS_FIELDS, "requests, bytes, server CPU and memory per delivery"),
    "/time": (("t_ns",), "the clock offset (without it the clocks are assumed equal)"),
    "/published": (("count", "first_seq", "last_seq", "publisher_lag_us"),
                   "published, expected and lost deliveries, publisher lag"),
}  # fmt: skip


def missing_endpoints(url: str) -> dict[str, str]:
    """The optional endpoints a target lacks, each with what is wrong: {path: reason}."""
    missing = {}
    for path, (fields, _feeds) in OPTIONAL_ENDPOINTS.items():
        try:
            status, body = call(url + path)
        except (OSError, ValueError) as exc:
            missing[path] = f"{type(exc).__name__}: {exc}"
            continue
        if status != 200:
            missing[path] = f"answers {status}"
        elif "raw" in body and len(body) == 1:
            missing[path] = "answers with no JSON object"
        elif absent := [name for name in fields if name not in body]:
            missing[path] = f"lacks {', '.join(absent)}"
    return missing


def verify_target(transport: Transport, url: str) -> tuple[list[str], dict[str, str]]:
    """A server the harness did not start: (problems with the client-facing protocol, which
    stop the measurement; optional endpoints it lacks, whose figures will be null)."""
    try:
        missing = missing_endpoints(url)
        problems = resolve(transport.probe).checks(url)
    except (OSError, ValueError) as exc:
        return [f"{url}: {type(exc).__name__}: {exc}"], {}
    problems += round_trip_problems(transport, url)
    return problems, missing


def round_trip_problems(transport: Transport, url: str) -> list[str]:
    try:
        return chat_round_trip(transport, url)
    except ProbeError as exc:
        return [str(exc)]
    except Exception as exc:  # noqa: BLE001 - any failure to speak the protocol is a problem
        return [f"{transport.name}: {type(exc).__name__}: {exc}"]


def verify(transport: Transport, url: str, pid: int) -> list[str]:
    """All problems of the server at `url` for `transport`; [] means it may be measured."""
    try:
        problems = common_problems(url, transport.server_name, pid)
        problems += resolve(transport.probe).checks(url)
    except (OSError, ValueError) as exc:
        return [f"{url}: {type(exc).__name__}: {exc}"]
    return problems + round_trip_problems(transport, url)
