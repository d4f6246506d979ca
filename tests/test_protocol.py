"""docs/protocol.md, checked against every transport with one parametrized test."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import socketio

from tests.conftest import SERVER_OF, running_server

TRANSPORTS = list(SERVER_OF)


def call(url: str, method: str = "GET", body: dict | None = None, timeout: float = 10):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class SocketIOClient:
    """python-socketio's client, on the websocket or on the long-polling transport."""

    def __init__(self, url: str, transport: str = "websocket"):
        self.client = socketio.SimpleClient()
        self.client.connect(url, transports=[transport], wait_timeout=10)
        name, welcome = self.client.receive(timeout=5)
        assert name == "welcome", f"first event must be welcome, got {name}"
        self.welcome = welcome
        self.baseline = welcome["last_seq"]

    def send(self, message: dict) -> int:
        return self.client.call("message", message, timeout=5)["seq"]

    def receive(self, count: int) -> list[dict]:
        events = []
        while len(events) < count:
            name, event = self.client.receive(timeout=5)
            assert name == "response", f"deliveries arrive as `response`, got {name}"
            events.append(event)
        return events

    def close(self):
        self.client.disconnect()


class PollClient:
    """Long-poll (timeout > 0) or short-poll (timeout 0, polled every 50 ms)."""

    def __init__(self, url: str, timeout: float):
        self.url, self.timeout = url, timeout
        status, body = call(url + "/events")
        assert status == 200 and body["events"] == []
        self.baseline = self.cursor = body["last_seq"]

    def send(self, message: dict) -> int:
        status, body = call(self.url + "/messages", "POST", message)
        assert status == 201
        return body["seq"]

    def receive(self, count: int) -> list[dict]:
        events: list[dict] = []
        deadline = time.monotonic() + 10
        while len(events) < count and time.monotonic() < deadline:
            status, body = call(f"{self.url}/events?after={self.cursor}&timeout={self.timeout:g}")
            assert status == 200 and isinstance(body["last_seq"], int)
            events += body["events"]
            if body["events"]:
                self.cursor = body["events"][-1]["seq"]
            elif self.timeout == 0:
                time.sleep(0.05)
        return events

    def close(self):
        pass


class SSEClient:
    """GET /stream read line by line with http.client (standard library, blocking)."""

    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url)
        self.url = url
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        self.connection.request("GET", "/stream", headers={"Accept": "text/event-stream"})
        response = self.connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type").startswith("text/event-stream")
        self.messages = sse_events(response)
        name, data, _ = next(self.messages)
        assert name == "welcome", f"first SSE event must be welcome, got {name}"
        self.baseline = json.loads(data)["last_seq"]

    def send(self, message: dict) -> int:
        status, body = call(self.url + "/messages", "POST", message)
        assert status == 201
        return body["seq"]

    def receive(self, count: int) -> list[dict]:
        events = []
        while len(events) < count:
            name, data, event_id = next(self.messages)
            assert name == "message"
            event = json.loads(data)
            assert event_id == str(event["seq"]), "every event carries its seq as the SSE id"
            events.append(event)
        return events

    def close(self):
        self.connection.close()


def sse_events(response):
    name, data, event_id = "message", [], None
    for raw in response:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield name, "\n".join(data), event_id
            name, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                event_id = value


def connect(transport: str, url: str):
    if transport == "socketio":
        return SocketIOClient(url)
    if transport == "socketio-polling":
        return SocketIOClient(url, "polling")
    if transport == "sse":
        return SSEClient(url)
    return PollClient(url, timeout=5 if transport == "longpoll" else 0)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_protocol(transport):
    module = SERVER_OF[transport]
    with running_server(module, rate=20) as (url, pid):
        status, health = call(url + "/healthz")
        assert status == 200
        assert health == {
            "status": "ok",
            "server": module.split(".")[1],
            "pid": pid,
            "last_seq": health["last_seq"],
        }

        client = connect(transport, url)
        try:
            # Ticks: every seq after the baseline, in order, with publish and schedule times.
            ticks = client.receive(5)
            assert [e["seq"] for e in ticks] == list(
                range(client.baseline + 1, client.baseline + 6)
            )
            now = time.time_ns()
            for event in ticks:
                assert set(event) == {"seq", "t_pub", "t_sched", "kind", "data"}
                assert event["kind"] == "tick" and event["data"] == {}
                assert now - 5e9 < event["t_pub"] <= now
                assert 0 <= event["t_pub"] - event["t_sched"] < 1e9  # never early, on schedule
            periods = [b["t_sched"] - a["t_sched"] for a, b in zip(ticks, ticks[1:])]
            assert all(p == periods[0] for p in periods) and abs(periods[0] - 50e6) < 1e3

            # Chat: a message comes back to its sender as a `chat` event, in the same seq space.
            t_send = time.time_ns()
            seq = client.send({"text": "hello", "t_send": t_send})
            chat = next(e for e in client.receive(seq - ticks[-1]["seq"]) if e["seq"] == seq)
            assert chat["kind"] == "chat"
            assert chat["data"] == {"text": "hello", "t_send": t_send}
            assert chat["t_sched"] == t_send and chat["t_pub"] >= t_send
        finally:
            client.close()

        status, stats = call(url + "/stats")
        assert status == 200 and stats["pid"] == pid and stats["published"] >= seq
        assert stats["events_sent"] >= 6 and stats["bytes_written"] > 0 and stats["requests"] >= 1
        status, published = call(
            url + f"/published?since={ticks[0]['t_pub']}&until={chat['t_pub']}"
        )
        assert published["first_seq"] == ticks[0]["seq"] and published["last_seq"] == seq
        assert published["count"] == seq - ticks[0]["seq"] + 1
        assert len(published["publisher_lag_us"]) == published["count"] - 1  # chat has no schedule

        for bad in ("/published?since=x", "/published?until=-5"):
            status, body = call(url + bad)
            assert status == 400 and "error" in body, bad


@pytest.mark.parametrize(
    "query",
    ["after=abc", "after=-1", "after=1&timeout=61", "after=1&timeout=nan", "after=1&timeout=x"],
)
def test_rest_rejects_bad_parameters(query):
    with running_server("servers.longpoll") as (url, _pid):
        status, body = call(f"{url}/events?{query}")
        assert status == 400 and isinstance(body["error"], str) and body["error"]


def test_rest_bounds_bodies_and_answers_json_errors():
    with running_server("servers.longpoll") as (url, _pid):
        status, body = call(url + "/messages", "POST", {"pad": "x" * 70_000})
        assert status == 413 and "error" in body
        request = urllib.request.Request(url + "/messages", data=b"[1, 2]", method="POST")
        request.add_header("Content-Type", "application/json")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=5)
        assert err.value.code == 400 and "error" in json.loads(err.value.read())
        status, body = call(url + "/nowhere")
        assert status == 404 and "error" in body


def test_sse_resumes_after_last_event_id():
    with running_server("servers.longpoll", rate=20) as (url, _pid):
        first = SSEClient(url)
        seen = first.receive(5)
        first.close()
        time.sleep(0.3)  # events published meanwhile must be sent on resume
        parts = urllib.parse.urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        resume = seen[-1]["seq"]
        connection.request("GET", "/stream", headers={"Last-Event-ID": str(resume)})
        messages = sse_events(connection.getresponse())
        name, data, _ = next(messages)
        assert name == "welcome" and json.loads(data)["last_seq"] == resume
        seqs = [json.loads(next(messages)[1])["seq"] for _ in range(8)]
        assert seqs == list(range(resume + 1, resume + 9)), "nothing missed across the reconnect"
        connection.close()
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        connection.request("GET", "/stream", headers={"Last-Event-ID": "soon"})
        response = connection.getresponse()
        assert response.status == 400 and "error" in json.loads(response.read())
        connection.close()


def test_long_poll_holds_until_an_event_or_the_timeout():
    with running_server("servers.longpoll", rate=0) as (url, _pid):
        _, body = call(url + "/events")
        started = time.monotonic()
        status, held = call(f"{url}/events?after={body['last_seq']}&timeout=0.5")
        assert status == 200 and held["events"] == []
        assert 0.45 < time.monotonic() - started < 3
        started = time.monotonic()
        _, instant = call(f"{url}/events?after={body['last_seq']}&timeout=0")
        assert instant["events"] == [] and time.monotonic() - started < 0.5
