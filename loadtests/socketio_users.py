"""The Socket.IO transports' load-generator users: websocket push through pushpull's lean client
on the process's Reactor (or python-socketio's Client, the reference), and Socket.IO's own
long-polling transport. Which class serves which transport is said by the registry
(pushpull/core/transports.py).
"""

from __future__ import annotations

import time

import gevent
import socketio
from locust import task
from locust.exception import StopUser

from loadtests.leansio import LeanSocketIO, LeanSocketIOPolling
from loadtests.users import OneClientUser, PushPullUser, ReactorPushUser, wait_until_joined
from pushpull.core import tls


class SocketIOUser(ReactorPushUser):
    """A Socket.IO client on the websocket transport: pushpull's lean client (leansio.py). The
    process's Reactor reads all connections on one greenlet, stamping each event as its bytes
    arrive; this user's greenlet only connects, waits and closes."""

    connect_name = "socket.io connect"

    def make_client(self, after: int | None = None) -> LeanSocketIO:
        auth = None if after is None else {"after": after}
        client = LeanSocketIO(self.host, self.on_event, timeout=30, auth=auth)
        client.connect()
        return client

    def send_chat(self, message: dict) -> None:
        self.client.emit("message", message)


class SocketIOPollingUser(OneClientUser):
    """Socket.IO restricted to its long-polling transport (lean client, leansio.py): one held
    GET at a time on a greenlet of the client's own, POSTs for pongs and chat messages."""

    connect_name = "socket.io (polling) connect"

    def make_client(self, after: int | None = None) -> LeanSocketIOPolling:
        client = LeanSocketIOPolling(
            self.host,
            self.on_event,
            timeout=30,
            on_poll=lambda sent, answered: self.recorder.note_poll(self.tracker, sent, answered),
            auth=None if after is None else {"after": after},
        )
        client.connect()
        return client

    def watch(self) -> None:
        gevent.spawn(self.client.run)  # returns when the session ends (leaving ends it too)

    def rejoined(self) -> None:
        wait_until_joined(self.tracker, self.client.closed, "socket.io (polling)")

    def send_chat(self, message: dict) -> None:
        self.client.emit("message", message)


class PythonSocketIOUser(PushPullUser):
    """A Socket.IO client on the websocket transport using python-socketio's Client: the
    reference implementation (and the naive load generator: a greenlet per received message)."""

    connect_name = "socket.io connect"
    supports_churn = False

    def connect(self) -> None:
        self.sio = socketio.Client(reconnection=False, **tls.socketio_options(self.host))
        self.sio.on("welcome", lambda data: self.on_event("welcome", data, time.time_ns()))
        self.sio.on("response", lambda data: self.on_event("response", data, time.time_ns()))
        self.sio.on("disconnect", self.on_disconnect)
        self.sio.connect(self.host, transports=["websocket"], wait_timeout=30)

    def on_disconnect(self, reason=None) -> None:
        if self.counted:  # the server ended it (on_stop clears `counted` before disconnecting)
            self.recorder.errors += 1
            self.ended()

    def send_chat(self, message: dict) -> None:
        self.sio.emit("message", message)

    @task
    def listen(self) -> None:
        gevent.sleep(60)  # deliveries arrive on the client's own greenlets
        if not self.counted:
            raise StopUser()

    def disconnect(self) -> None:
        self.sio.disconnect()
