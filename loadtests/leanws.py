"""A lean plain-WebSocket client for the load generator (`GET /ws`, docs/protocol.md): the
generic websocket connection of loadtests/ws.py, read by the process's Reactor; each text frame
is one JSON object, the welcome first, then one event per frame.

    client = LeanWebSocket("http://127.0.0.1:5003", on_event=lambda name, data, t_recv_ns: ...)
    client.connect()      # returns once the welcome arrived
    reactor.add(client)
"""

from __future__ import annotations

import json
from collections.abc import Callable

from loadtests.ws import WebSocketConnection
from pushpull.core.events import parse_event

OnEvent = Callable[[str, object, int], None]


class LeanWebSocket(WebSocketConnection):
    def __init__(self, url: str, on_event: OnEvent, timeout: float = 30.0, path: str = "/ws"):
        super().__init__(url, path, timeout)
        self.on_event = on_event
        self.welcomed = False

    def connect(self) -> None:
        self.open()
        self.receive_until(lambda: self.welcomed, "welcome frame")

    def on_text(self, text: str, t_recv: int) -> bool:
        if text.startswith('{"seq":'):  # an event: the server sends the log's JSON as it is
            self.on_event("response", parse_event(text), t_recv)
            return True
        message = json.loads(text)
        kind = message.get("type")
        if kind == "welcome":
            self.welcomed = True
            self.on_event("welcome", message, t_recv)
        elif kind == "error":
            self.on_event("error", message, t_recv)
        return True

    def emit_chat(self, message: dict) -> None:
        self.send_text(json.dumps(message))
