"""What a server counts about itself and reports in GET /stats: requests, events sent, bytes
each way, clients, slow clients dropped, and the process's CPU time, memory and file limit."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from servers.events import EventLog
from servers.queue import Queue


@dataclass
class Counters:
    """Plain counters, bumped by the server's own code paths and read by GET /stats."""

    requests: int = 0
    events_sent: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    clients: int = 0
    dropped_slow_clients: int = 0  # disconnected because their unsent backlog passed the bound
    tls_handshakes_failed: int = 0  # clients whose TLS handshake failed (e.g. refused our CA)
    peer_addresses: set = field(default_factory=set)  # the addresses connections came from
    started_ns: int = field(default_factory=time.time_ns)
    # Over TLS the bytes on the wire are the kernel's (TCP_INFO, TLS records included):
    # wire() -> (bytes_read, bytes_written); the counts above then hold plaintext and are unused.
    wire: Callable[[], tuple[int, int]] | None = None

    def bytes_each_way(self) -> tuple[int, int]:
        return self.wire() if self.wire is not None else (self.bytes_read, self.bytes_written)


def rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def server_stats(name: str, log: EventLog, counters: Counters, queue: Queue | None) -> dict:
    """The body of GET /stats (docs/protocol.md), in its documented order."""
    cpu = os.times()
    bytes_read, bytes_written = counters.bytes_each_way()
    return {
        "server": name,
        "pid": os.getpid(),
        "uptime_s": (time.time_ns() - counters.started_ns) / 1e9,
        "published": log.last_seq,
        "last_seq": log.last_seq,
        "clients": counters.clients,
        "requests": counters.requests,
        "events_sent": counters.events_sent,
        "cpu_user_s": cpu.user,
        "cpu_system_s": cpu.system,
        "rss_bytes": rss_bytes(),
        "bytes_read": bytes_read,
        "bytes_written": bytes_written,
        "dropped_slow_clients": counters.dropped_slow_clients,
        "tls": counters.wire is not None,
        "tls_handshakes_failed": counters.tls_handshakes_failed,
        "peer_addresses": len(counters.peer_addresses),
        "rlimit_nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "queue": queue.info() if queue is not None else None,
    }
