"""The plain WebSocket transport's load-generator user: pushpull's lean client (leanws.py) on the
process's Reactor. A chat message is one text frame. A dropped client ends its user (see
users.ReactorPushUser); with churn (--churn-every) it comes back, resuming with `?after=SEQ`
when --resume is on.
"""

from __future__ import annotations

from loadtests.leanws import LeanWebSocket
from loadtests.users import ReactorPushUser


class WebSocketUser(ReactorPushUser):
    connect_name = "websocket connect"

    def make_client(self, after: int | None = None) -> LeanWebSocket:
        path = "/ws" if after is None else f"/ws?after={after}"
        client = LeanWebSocket(self.host, self.on_event, timeout=30, path=path)
        client.connect()
        return client

    def send_chat(self, message: dict) -> None:
        self.client.emit_chat(message)
