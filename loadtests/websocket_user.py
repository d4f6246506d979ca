"""The plain WebSocket transport's load-generator user: pushpull's lean client (leanws.py) on the
process's Reactor. A chat message is one text frame. Reconnecting is not resuming: like a real
WebSocket client without an application-level replay, a dropped client starts a new connection
and is owed only what follows its new welcome, so it ends its user (counted as an error).
"""

from __future__ import annotations

from locust import task
from locust.exception import StopUser

from loadtests.leanws import LeanWebSocket
from loadtests.users import PushPullUser


class WebSocketUser(PushPullUser):
    connect_name = "websocket connect"

    def connect(self) -> None:
        self.client = LeanWebSocket(self.host, self.on_event, timeout=30)
        self.client.connect()
        self.environment.pushpull_reactor.add(self.client)

    def send_chat(self, message: dict) -> None:
        self.client.emit_chat(message)

    @task
    def listen(self) -> None:
        self.client.closed.wait()  # set when the server ends the connection
        self.recorder.errors += 1
        self.ended()
        raise StopUser()

    def disconnect(self) -> None:
        self.environment.pushpull_reactor.discard(self.client)
        self.client.close()
