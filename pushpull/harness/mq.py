"""The harness's side of `--message-queue`: the queue URL checked (and shown without its
credentials), and Redis's own version and CPU time, read with `INFO` (the queue's share of the
servers' cost per delivery). The servers' side is servers/queue.py; they meet over the URL."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

SCHEMES = ("redis", "rediss", "unix")
START_REDIS = (
    "start one (redis-server, from your system's packages, listens on 127.0.0.1:6379) "
    "or leave out --message-queue"
)


class QueueUnavailable(Exception):
    """The queue URL is malformed or no Redis answers there: one line."""


def redacted(url: str) -> str:
    """`url` with any user name and password taken out."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def redact_text(text: str) -> str:
    """A command-line word with a queue URL's credentials taken out (for the manifest's argv)."""
    if "://" not in text:
        return text
    key, sep, value = text.rpartition("=") if text.startswith("--") else ("", "", text)
    return key + sep + ",".join(redacted(part) for part in value.split(","))


class Redis:
    """A connection to the queue's Redis for `INFO`."""

    def __init__(self, url: str) -> None:
        import redis

        if urlsplit(url).scheme not in SCHEMES:
            raise QueueUnavailable(
                f"{redacted(url)!r} is not a Redis URL (expected redis://HOST:PORT/DB, "
                "e.g. redis://127.0.0.1:6379/0)"
            )
        try:
            self.client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
            self.version = self.client.info("server")["redis_version"]
        except ValueError as exc:
            raise QueueUnavailable(f"{redacted(url)!r}: {exc}") from None
        except redis.RedisError as exc:
            raise QueueUnavailable(
                f"no Redis answers at {redacted(url)} ({str(exc).split('. ', 1)[0]}); {START_REDIS}"
            ) from None
        self.url = url

    def cpu_s(self) -> float:
        """Redis's CPU time so far (user + system, all its threads), in seconds."""
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def forget(self, channel: str) -> None:
        """Delete one cell's keys (its seq, stream and publisher lease)."""
        self.client.delete(f"{channel}:seq", f"{channel}:events", f"{channel}:publisher")

    def close(self) -> None:
        self.client.close()
