"""Checks before anything starts that reach outside the process: each message queue's Redis
answers, the output folder can be written. Each failure is a `UsageError` in one line."""

from __future__ import annotations

import os
from pathlib import Path

from pushpull.harness.config import UsageError
from pushpull.harness.mq import redacted


def check_queues(queues: list[str | None]) -> list[dict]:
    """Each queue's Redis, reached once before anything starts: its URL (without credentials)
    and version, for the manifest; UsageError in one line when none answers."""
    from pushpull.harness.mq import QueueUnavailable, Redis

    info = []
    for url in queues:
        if url is None:
            continue
        try:
            redis = Redis(url)
        except QueueUnavailable as exc:
            raise UsageError(f"--message-queue: {exc}") from None
        info.append({"url": redacted(url), "redis_version": redis.version})
        redis.close()
    return info


def check_out_dir(text: str) -> Path:
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out: {text} exists and is not a folder")
    parent = path if path.exists() else path.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise UsageError(f"--out: {text} is not writable")
    return path
