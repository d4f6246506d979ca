"""Starting the network emulator for a cell (pushpull/harness/relay.py) and reading its CPU.

It runs as a child process like every other (pinned with the load generator, dying with the
harness), in front of every server of the cell: one listener per server, on the address the
servers bind, so Locust workers on other hosts reach the servers through it as local clients do.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pushpull.core.cputime import cpu_seconds
from pushpull.harness.procs import HarnessError, Managed, wait_for_announce

RELAY = "pushpull.harness.relay"


def start_relay(
    profile: dict,
    urls: list[str],
    host: str,
    cell_dir: Path,
    cpus: dict,
    deadline_s: float = 20,
    port: int = 0,
) -> tuple[Managed, list[str]]:
    """The emulator in front of `urls`, listening on `host` (the first listener on `port`, 0:
    a free one), its log in cell_dir/network.log, once it has announced itself: the process
    and the URLs the clients connect to, one per target."""
    command = [sys.executable, "-m", RELAY, "--host", host, "--network", json.dumps(profile)]
    command += ["--port", str(port)]
    for url in urls:
        command += ["--target", url.split("://", 1)[1].rstrip("/")]
    relay = Managed("network emulator", command, cell_dir / "network.log", cpus.get("loadgen"))
    try:
        listening = wait_for_announce(relay, deadline_s)["listening"]
        if not listening:
            raise HarnessError(f"the network emulator announced no listener: {relay.log_tail()}")
    except BaseException:
        relay.stop()
        raise
    # it relays TCP: what the clients speak through it is their target's (https stays https)
    schemes = [url.split("://", 1)[0] for url in urls]
    return relay, [f"{scheme}://{u.split('://', 1)[1]}" for scheme, u in zip(schemes, listening)]


def process_cpu(relay: Managed | None) -> float | None:
    """The emulator's CPU seconds so far (the kernel's count, as for the servers), or None."""
    if relay is None:
        return None
    return cpu_seconds(relay.pid)[0]
