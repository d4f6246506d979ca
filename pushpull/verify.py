"""Check that a running server speaks docs/protocol.md before anything is measured on it.

Each check returns a list of problems (empty when the server is fine), in the manner of
TechEmpower's verify mode; the sweep refuses to measure a server with problems.
"""

from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlsplit

from pushpull.procs import get_json, request_json

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
    status, body = request_json(url + "/published?since=soon")
    if status != 400 or "error" not in body:
        problems.append(
            f"/published?since=soon: expected 400 with a JSON error, got {status} {body}"
        )
    return problems


def rest_problems(url: str) -> list[str]:
    problems = []
    status, body = request_json(url + "/events")
    if status != 200 or body.get("events") != [] or not isinstance(body.get("last_seq"), int):
        return [f"GET /events: expected 200 {{events: [], last_seq: N}}, got {status} {body}"]
    status, body = request_json(url + "/events?after=abc")
    if status != 400 or "error" not in body:
        problems.append(
            f"GET /events?after=abc: expected 400 with a JSON error, got {status} {body}"
        )
    status, body = request_json(
        url + "/messages", "POST", {"probe": "verify", "t_send": time.time_ns()}
    )
    if status != 201 or not isinstance(body.get("seq"), int):
        return problems + [f"POST /messages: expected 201 {{seq: N}}, got {status} {body}"]
    seq = body["seq"]
    status, body = request_json(url + f"/events?after={seq - 1}&timeout=1")
    events = body.get("events") or []
    if status != 200 or not events or events[0].get("seq") != seq:
        return problems + [
            f"GET /events?after={seq - 1}: expected the posted event {seq} first, got {status} {body}"
        ]
    problems += event_problems(events[0], "GET /events")
    if events[0].get("kind") != "chat" or events[0].get("data", {}).get("probe") != "verify":
        problems.append(f"GET /events: posted message came back as {events[0]}")
    return problems


def socketio_problems(url: str, transport: str = "websocket") -> list[str]:
    import socketio

    problems = []
    client = socketio.SimpleClient()
    try:
        client.connect(url, transports=[transport], wait_timeout=10)
        name, welcome = client.receive(timeout=5)
        if name != "welcome" or not isinstance(welcome.get("last_seq"), int):
            return [f"socket.io: expected `welcome` with last_seq first, got {name} {welcome}"]
        ack = client.call("message", {"probe": "verify", "t_send": time.time_ns()}, timeout=5)
        if not isinstance(ack, dict) or not isinstance(ack.get("seq"), int):
            return [f"socket.io: `message` acknowledgement should be {{seq: N}}, got {ack}"]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            name, event = client.receive(timeout=5)
            if name == "response" and event.get("seq") == ack["seq"]:
                problems += event_problems(event, "socket.io response")
                if event.get("kind") != "chat" or event.get("data", {}).get("probe") != "verify":
                    problems.append(f"socket.io: message came back as {event}")
                return problems
            if name != "response":
                problems.append(f"socket.io: unexpected event {name!r}")
        return problems + [f"socket.io: the broadcast of message {ack['seq']} never arrived"]
    except Exception as exc:  # noqa: BLE001 - every failure is a verification problem
        return problems + [f"socket.io: {type(exc).__name__}: {exc}"]
    finally:
        client.disconnect()


def sse_events(response) -> object:
    """(event name, data) of each SSE message on an http.client response (blocking reads)."""
    name, data = "message", []
    for raw in response:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))


def sse_problems(url: str) -> list[str]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        connection.request("GET", "/stream", headers={"Accept": "text/event-stream"})
        response = connection.getresponse()
        if response.status != 200 or not response.getheader("Content-Type", "").startswith(
            "text/event-stream"
        ):
            return [
                f"GET /stream: expected 200 text/event-stream, got {response.status} {response.getheader('Content-Type')}"
            ]
        events = sse_events(response)
        name, data = next(events)
        welcome = json.loads(data)
        if name != "welcome" or not isinstance(welcome.get("last_seq"), int):
            return [f"GET /stream: expected a `welcome` with last_seq first, got {name} {data}"]
        status, body = request_json(
            url + "/messages", "POST", {"probe": "verify", "t_send": time.time_ns()}
        )
        if status != 201:
            return [f"POST /messages: expected 201, got {status} {body}"]
        for name, data in events:
            event = json.loads(data)
            if event.get("seq") == body["seq"]:
                problems = event_problems(event, "GET /stream")
                if name != "message" or event.get("data", {}).get("probe") != "verify":
                    problems.append(f"GET /stream: posted message came back as {name} {event}")
                return problems
        return [f"GET /stream: the posted message {body['seq']} never arrived"]
    except (OSError, ValueError, StopIteration) as exc:
        return [f"GET /stream: {type(exc).__name__}: {exc}"]
    finally:
        connection.close()


def verify(transport: str, url: str, server_name: str, pid: int) -> list[str]:
    """All problems of the server at `url` for `transport`; [] means it may be measured."""
    checks = {
        "socketio": lambda: socketio_problems(url, "websocket"),
        "socketio-polling": lambda: socketio_problems(url, "polling"),
        "sse": lambda: sse_problems(url),
    }
    try:
        problems = common_problems(url, server_name, pid)
        problems += checks.get(transport, lambda: rest_problems(url))()
    except (OSError, ValueError) as exc:
        problems = [f"{url}: {type(exc).__name__}: {exc}"]
    return problems
