"""Several server processes serving one event stream, through Redis (`--message-queue URL`).

What every process shares, under the key prefix `--queue-channel` (default `pushpull`):

- `<channel>:seq`, the one sequence: every event, wherever it is published, takes the next seq
  from Redis (INCR), so a seq means the same event on every process.
- `<channel>:publisher`, a lease (SET NX PX, renewed every second): the process holding it runs
  the tick publisher, so ticks are published once however many processes run, and another
  process takes over within a few seconds when it dies. Started by hand twice, two servers
  therefore publish one stream.
- The fan-out:
  - the Socket.IO server uses Flask-SocketIO's own message queue (python-socketio's
    RedisManager, on the pub/sub channel `<channel>:socketio`): an event is emitted once, on the
    process that published it, and every process sends it to its own clients (servers/push.py);
  - the REST server (long-poll, short-poll, SSE) and the plain WebSocket server share a Redis
    Stream, `<channel>:events` (`StreamBus`). A Stream and not pub/sub, because these servers
    answer *resumes* (`after`, `Last-Event-ID`): they need the events in seq order (one Lua
    script takes the seq and appends the event atomically, so stream order is seq order on every
    reader) and a reader that reconnects, or a process that starts late, must read what it missed
    from its last stream id instead of losing it (pub/sub drops whatever is sent while a
    subscriber is away). The stream is trimmed (MAXLEN ~) to the servers' retention.

Redis's own CPU is read by the harness (`INFO cpu`); each process reports its queue in /stats.
Nothing here knows about the harness: servers and harness meet only over docs/protocol.md.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from urllib.parse import urlsplit, urlunsplit

import gevent

from servers.clock import now_ns

SCHEMES = ("redis", "rediss", "unix")
LEASE_MS = 3000  # the publisher's lease; renewed every LEASE_MS / 3

# KEYS: seq, stream. ARGV: the event's JSON after its seq, the stream's MAXLEN, t_pub, t_sched
# (-1 for chat). The seq and the append are one atomic step: stream order is seq order.
APPEND = """
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
           's', seq, 'p', ARGV[3], 'c', ARGV[4], 'e', '{"seq":' .. seq .. ARGV[1])
return seq
"""

# KEYS: the lease. ARGV: this process's id, the lease in ms. Renew it if held, take it if free.
LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""


def first_sentence(exc: Exception) -> str:
    """Redis's refusals can run to a paragraph: its first sentence, for a one-line error."""
    text = str(exc)
    return text.split(". ", 1)[0] if len(text) > 120 else text


class QueueError(Exception):
    """The message queue cannot be used: one line for the server's exit message."""


def redacted(url: str) -> str:
    """The URL without credentials (what may be shown and recorded)."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def check_url(url: str) -> str:
    """A queue URL the Redis client accepts, or QueueError naming what is wrong."""
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise QueueError(
            f"{redacted(url)!r} is not a Redis URL (expected redis://HOST:PORT/DB, "
            "e.g. redis://127.0.0.1:6379/0)"
        )
    try:
        urlsplit(url).port  # noqa: B018 - raises on a bad port
        import redis

        redis.connection.parse_url(url)
    except ValueError as exc:
        raise QueueError(f"{redacted(url)!r}: {exc}") from None
    return url


class Queue:
    """The connection to Redis and the keys of one stream of events."""

    def __init__(self, url: str, channel: str) -> None:
        import redis

        self.url, self.channel = check_url(url), channel
        self.redis = redis.Redis.from_url(url, socket_connect_timeout=5)
        try:
            info = self.redis.info("server")
        except redis.RedisError as exc:
            raise QueueError(
                f"cannot reach Redis at {redacted(url)} ({first_sentence(exc)}); start one (redis-server, from "
                "your system's packages) or leave out --message-queue"
            ) from None
        self.redis_version = info.get("redis_version")
        self.seq_key = f"{channel}:seq"
        self.stream_key = f"{channel}:events"
        self.lease_key = f"{channel}:publisher"
        self.socketio_channel = f"{channel}:socketio"
        self.id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.leading = False
        self._lease = self.redis.register_script(LEASE)

    def last_seq(self) -> int:
        return int(self.redis.get(self.seq_key) or 0)

    def next_seq(self) -> int:
        return int(self.redis.incr(self.seq_key))

    def hold_lease(self) -> None:
        """Forever: hold (or wait for) the publisher's lease; `leading` says whether we do."""
        while True:
            try:
                self.leading = bool(self._lease(keys=[self.lease_key], args=[self.id, LEASE_MS]))
            except Exception as exc:  # noqa: BLE001 - Redis away: stop publishing, keep trying
                if self.leading:
                    sys.stderr.write(f"queue: lost Redis ({exc}); not publishing\n")
                self.leading = False
            gevent.sleep(LEASE_MS / 3000)

    def info(self) -> dict:
        """For /stats: which queue, and whether this process publishes the ticks."""
        return {"url": redacted(self.url), "channel": self.channel, "publisher": self.leading}


def make_event(seq: int, t_pub: int, kind: str, data: dict, t_sched: int | None) -> dict:
    """An event as docs/protocol.md defines it (a chat message's t_sched is its t_pub)."""
    t_sched = t_pub if t_sched is None else t_sched
    return {"seq": seq, "t_pub": t_pub, "t_sched": t_sched, "kind": kind, "data": data}


def event_text(event: dict, data_json: str) -> str:
    """An event's JSON exactly as clients receive it, its data encoded once by the caller."""
    tail = event_tail(event["t_pub"], event["t_sched"], event["kind"], data_json)
    return f'{{"seq":{event["seq"]}' + tail


def log_schedule(event: dict) -> int:
    """What /published keeps as an event's schedule: a tick's t_sched, -1 for a chat message."""
    return event["t_sched"] if event["kind"] == "tick" else -1


def event_tail(t_pub: int, t_sched: int, kind: str, data_json: str) -> str:
    """An event's JSON after `{"seq":N` (so the seq can be filled in where it is taken)."""
    return f',"t_pub":{t_pub},"t_sched":{t_sched},"kind":{json.dumps(kind)},"data":{data_json}}}'


class StreamBus:
    """An EventLog's publish and apply through a Redis Stream: `publish` appends (taking the
    seq), and every process, the publishing one included, applies the events it reads from the
    stream, in stream (= seq) order."""

    BATCH = 512

    def __init__(self, queue: Queue, log, retained: int) -> None:
        self.queue, self.log, self.retained = queue, log, retained
        self._append = queue.redis.register_script(APPEND)
        self._last_id = "0-0"

    def publish(self, kind: str, data: dict, t_sched: int | None, data_json: str) -> dict:
        event = make_event(0, now_ns(), kind, data, t_sched)
        tail = event_tail(event["t_pub"], event["t_sched"], kind, data_json)
        event["seq"] = int(
            self._append(
                keys=[self.queue.seq_key, self.queue.stream_key],
                args=[tail, self.retained, event["t_pub"], log_schedule(event)],
            )
        )
        return event

    def start(self) -> list[gevent.Greenlet]:
        """Catch up with what the stream retains (a resume is then valid here too), then read."""
        backlog = self.queue.redis.xrevrange(self.queue.stream_key, count=self.retained)
        backlog.reverse()
        self._apply_entries(backlog)
        if not backlog:
            self.log.last_seq = self.queue.last_seq()
        return [gevent.spawn(self._read)]

    def _read(self) -> None:
        retry_s = 0.1
        while True:
            try:
                answer = self.queue.redis.xread(
                    {self.queue.stream_key: self._last_id}, count=self.BATCH, block=0
                )
                retry_s = 0.1
            except Exception as exc:  # noqa: BLE001 - Redis away: say so once, retry with backoff
                sys.stderr.write(f"queue: reading {self.queue.stream_key} failed ({exc})\n")
                gevent.sleep(retry_s)
                retry_s = min(retry_s * 2, 5.0)
                continue
            for _stream, entries in answer:
                self._apply_entries(entries)

    def _apply_entries(self, entries: list) -> None:
        for entry_id, fields in entries:
            self._last_id = entry_id
            seq = int(fields[b"s"])
            if seq <= self.log.last_seq:
                continue  # already applied (read again after a reconnect)
            self.log.apply(seq, int(fields[b"p"]), int(fields[b"c"]), fields[b"e"].decode())
