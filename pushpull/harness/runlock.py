"""One measuring run per machine: two sweeps at once would measure each other. A run holds an
exclusive lock (flock, released by the kernel when the process ends, even on kill -9) on a file
that names it; a second run refuses in one line naming the first, unless --allow-concurrent,
in which case both say so in their manifests and summaries.

    lock = RunLock.acquire(allow_concurrent=False)   # raises ConcurrentRun
    lock.describe(run_dir, command)
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from pushpull.harness.procs import HarnessError

LOCK_PATH = Path(os.environ.get("PUSHPULL_LOCK", "/tmp/pushpull-run.lock"))


class ConcurrentRun(HarnessError):
    """Another pushpull run is measuring on this machine."""


class RunLock:
    def __init__(self, handle, holder: dict | None) -> None:
        self.handle = handle  # None when running concurrently without the lock
        self.concurrent_with = holder  # the run that held the lock, when allowed to overlap

    @classmethod
    def acquire(cls, allow_concurrent: bool, path: Path = LOCK_PATH) -> RunLock:
        handle = open(path, "a+")  # noqa: SIM115 - held for the life of the run
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(path)
            handle.close()
            if not allow_concurrent:
                raise ConcurrentRun(
                    f"another pushpull run is measuring on this machine (pid {holder.get('pid')}, "
                    f"{holder.get('command')} into {holder.get('run_dir')}); two at once would "
                    "measure each other (--allow-concurrent runs anyway and records it)"
                ) from None
            return cls(None, holder)
        return cls(handle, None)

    def describe(self, run_dir: Path, command: str) -> None:
        """Name this run in the lock file, for a second run's message."""
        if self.handle is None:
            return
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(
            json.dumps({"pid": os.getpid(), "command": command, "run_dir": str(run_dir)})
        )
        self.handle.flush()

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing the descriptor releases the flock
            self.handle = None


def read_holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
