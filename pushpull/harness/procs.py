"""Child processes of the harness: servers and Locust. Each runs in its own session (so Ctrl-C in
the terminal reaches only the harness, which then tears down in order), logs to a file in the
cell folder, dies with the harness (see child.py) and is stopped as a whole process group."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from pushpull.core import tls


class HarnessError(Exception):
    """A failure of the run (not of the user's input): one line, exit status 1."""


class OutputError(HarnessError):
    """The results cannot be written (a full disk, a read-only folder): the sweep stops."""


OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


def output_error(exc: OSError) -> OutputError | None:
    """An OSError of writing results, as one line naming the path; None for other OSErrors."""
    if exc.errno not in OUTPUT_ERRNOS:
        return None
    return OutputError(f"cannot write {exc.filename or 'the results'}: {exc.strerror}")


class Managed:
    """A child process group with its log file."""

    def __init__(
        self,
        name: str,
        command: list[str],
        log_path: Path,
        cpus: set[int] | None,
        cwd: Path | None = None,
    ):
        self.name = name
        self.log_path = log_path
        launcher = [sys.executable, "-m", "pushpull.core.child"]
        if cpus:
            launcher += ["--cpus", ",".join(str(c) for c in sorted(cpus))]
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(
            launcher + ["--", *command],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
        )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 1) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        useful = [line for line in text if line.strip() and not line.startswith(" ")]
        return " | ".join(useful[-lines:])

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM to the group, then SIGKILL after grace_s; always reaps. Interrupted while
        waiting (a second Ctrl-C), it kills the group at once and lets the interrupt go on."""
        try:
            if self.popen.poll() is None:
                self._signal_group(signal.SIGTERM)
                try:
                    self.popen.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    pass
        except KeyboardInterrupt:
            self._signal_group(signal.SIGKILL)
            self.popen.wait()
            self._log.close()
            raise
        self._signal_group(signal.SIGKILL)  # stragglers in the group (e.g. Locust workers)
        try:
            self.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:  # pragma: no cover - unkillable; nothing more to do
            pass
        self._log.close()

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def server_command(module: str, host: str, port: int, rate: float, *extra: str) -> list[str]:
    """`python -m servers.<name>` with the arguments every server takes (docs/protocol.md)."""
    return [
        sys.executable,
        "-m",
        module,
        "--host",
        host,
        "--port",
        str(port),
        "--rate",
        f"{rate:g}",
        *extra,
    ]


def start_server(
    module: str,
    host: str,
    port: int,
    rate: float,
    payload_bytes: int,
    cell_dir: Path,
    cpus: set[int] | None,
    deadline_s: float = 20.0,
    extra: list[str] | None = None,
    log_name: str = "server.log",
) -> tuple[Managed, str]:
    """Start a server module, wait for its announce line and for /healthz to name its own pid.
    Returns the process and its base URL."""
    command = server_command(module, host, port, rate, "--payload-bytes", str(payload_bytes))
    command += extra or []
    server = Managed(module, command, cell_dir / log_name, cpus)
    try:
        announce = wait_for_announce(server, deadline_s)
        url = announce["listening"]
        wait_ready(server, url, deadline_s)
    except BaseException:
        server.stop()
        raise
    return server, url


def wait_for_announce(server: Managed, deadline_s: float) -> dict:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for line in server.log_path.read_text(errors="replace").splitlines():
            if line.startswith('{"listening"'):
                return json.loads(line)
        if not server.alive():
            tail = server.log_tail() or f"exit status {server.popen.returncode}"
            raise HarnessError(f"server {server.name} failed to start: {tail}")
        time.sleep(0.05)
    raise HarnessError(f"server {server.name} did not start listening within {deadline_s:g} s")


def wait_ready(server: Managed, url: str, deadline_s: float) -> None:
    """Poll /healthz until it answers with this server's pid (never measure a stale server)."""
    deadline = time.monotonic() + deadline_s
    last = "no answer"
    while time.monotonic() < deadline:
        if not server.alive():
            raise HarnessError(f"server {server.name} exited while starting: {server.log_tail()}")
        try:
            health = get_json(url + "/healthz", timeout=2)
            if health.get("pid") == server.pid:
                return
            last = f"/healthz names pid {health.get('pid')}, not {server.pid} (a stale server on the port?)"
        except (OSError, ValueError) as exc:
            if refused := tls.refusal(exc):  # waiting longer will not change the certificate
                raise HarnessError(f"server {server.name} at {url}: {refused}") from None
            last = str(exc)
        time.sleep(0.05)
    raise HarnessError(
        f"server {server.name} at {url} was not ready within {deadline_s:g} s: {last}"
    )


def get_json(url: str, timeout: float = 5.0) -> dict:
    with tls.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def request_json(
    url: str, method: str = "GET", body: dict | None = None, timeout: float = 5.0
) -> tuple[int, dict]:
    """Status and JSON body, for error statuses too."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with tls.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        text = exc.read()
        try:
            return exc.code, json.loads(text)
        except ValueError:
            return exc.code, {"raw": text.decode(errors="replace")}


def exit_text(process: Managed) -> str:
    code = process.popen.returncode
    return f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"


def server_name(index: int, count: int) -> str:
    return "server" if count == 1 else f"server {index + 1} of {count}"


def sleep_until(
    t_ns: int, tick: Callable[[float], None], locust: Managed, servers: list[Managed], phase: str
) -> None:
    """Sleep until t_ns, noticing within half a second a server or Locust that died."""
    started = time.monotonic()
    named = [(server_name(k, len(servers)), server) for k, server in enumerate(servers)]
    while (left := (t_ns - time.time_ns()) / 1e9) > 0:
        for name, process in [*named, ("Locust", locust)]:
            if not process.alive():
                raise HarnessError(
                    f"{name} exited ({exit_text(process)}) {time.monotonic() - started:.0f} s "
                    f"into the {phase}: {process.log_tail() or 'no log line'}"
                )
        tick(left)
        time.sleep(min(left, 0.5))
