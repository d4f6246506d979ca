"""Start a command so that it dies with the harness and runs on chosen CPUs, then exec it.

    python -m pushpull.core.child [--cpus 0,1] -- COMMAND ARGS...

PR_SET_PDEATHSIG asks the kernel to send SIGTERM to the command if the harness dies, even by
SIGKILL, so a crashed sweep leaves no server or Locust process behind. Setting it here, after fork
and before exec, avoids subprocess's preexec_fn (unsafe when the harness has threads).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """Ask for SIGTERM when this process's parent dies; False if it already has (this process
    was handed to init before the request took effect). A fork does not inherit the request:
    Locust's --processes workers make it again (loadtests/hooks.py)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    return os.getppid() != 1


def main(argv: list[str]) -> None:
    cpus = None
    if argv[:1] == ["--cpus"]:
        cpus = {int(c) for c in argv[1].split(",")}
        argv = argv[2:]
    if argv[:1] != ["--"] or len(argv) < 2:
        sys.exit("usage: python -m pushpull.core.child [--cpus 0,1] -- COMMAND ARGS...")
    command = argv[1:]
    if not die_with_parent():
        sys.exit(1)
    if cpus:
        os.sched_setaffinity(0, cpus)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
