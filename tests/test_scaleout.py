"""Beyond one process and one machine: server processes sharing one stream through Redis, Locust
workers joining from elsewhere, a server the harness did not start (--target), and all three
across network namespaces standing in for hosts."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from pushpull.harness.probes import SocketIOProbe, call
from tests.conftest import (
    NAMESPACE_PREFIX,
    REDIS_URL,
    ROOT,
    SESSION,
    TEST_KEY_PREFIX,
    forget_redis_channel,
    needs,
    pushpull,
    running_server,
)
from tests.test_cli import assert_one_line_error
from tests.test_sweep import run_dir_of

pytestmark = pytest.mark.slow  # the full tier (make test-all)

needs_redis = needs("Redis")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@needs_redis
def test_two_server_processes_on_redis_for_every_transport_family(tmp_path):
    """The three families: Socket.IO (Flask-SocketIO's queue), plain WebSocket and REST (SSE;
    long-poll reads the same Redis Stream, tested by hand below): two processes, clients spread
    over both, every delivery accounted for, and the queue's CPU counted in the server's."""
    result = pushpull(
        "bench", "--transports", "socketio,websocket,sse", "--clients", "8",
        "--server-procs", "2", "--message-queue", REDIS_URL, "--rate", "10", "--duration", "2", "--grace", "0.5", "--drain", "0.5", "--idle", "0",
        "--no-plot", "--out", str(tmp_path), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    run = run_dir_of(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert [c["transport"] for c in summary["cells"]] == ["socketio", "websocket", "sse"]
    for cell in summary["cells"]:
        name = cell["name"]
        assert cell["server_procs"] == 2 and cell["message_queue"] == REDIS_URL, name
        assert cell["lost"] == 0 and cell["received"] == cell["expected"] > 0, name
        assert cell["duplicates"] == 0, name
        assert cell["queue_cpu_us_per_delivery"] is not None, name
        assert 0 <= cell["queue_cpu_share"] < 1, name  # Redis's part of the server side
        stats = json.loads((run / name / "server-stats.json").read_text())["processes"]
        sent = [
            end["events_sent"] - start["events_sent"]
            for start, end in zip(stats["window_start"], stats["window_end"])
        ]
        # the harness spreads clients in turn: 4 on each process, each sent half the events
        assert [end["clients"] for end in stats["window_end"]] == [4, 4], (name, stats)
        assert len(sent) == 2 and abs(sent[0] - sent[1]) <= 0.15 * sum(sent), (name, sent)
        # a process's counter may miss one event's fan-out at each window edge (it was in flight
        # when /stats was read): at most 2 events x 4 clients per process (CI saw 28 of 32 at 2/s)
        assert sum(sent) >= cell["received"] - 2 * 2 * 4, (name, sent, cell["received"])
        assert {s["queue"]["channel"] for s in stats["window_end"]} == {
            stats["window_end"][0]["queue"]["channel"]
        }
        assert sum(s["queue"]["publisher"] for s in stats["window_end"]) == 1, "one publisher"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["message_queue"][0]["redis_version"]


@needs_redis
def test_servers_started_by_hand_twice_share_one_stream():
    """`python -m servers.<name> --message-queue URL` twice, as a person would: one publisher,
    the same seqs on both, and a chat message posted to one reaches the clients of the other."""
    channel = f"{TEST_KEY_PREFIX}{SESSION}-{uuid.uuid4().hex[:8]}"  # swept if this run dies
    try:
        share_one_stream(channel)
    finally:
        forget_redis_channel(channel)


def share_one_stream(channel: str) -> None:
    queue = ["--message-queue", REDIS_URL, "--queue-channel", channel]
    with (
        running_server("servers.longpoll", 5, *queue) as (a, _),
        running_server("servers.longpoll", 5, *queue) as (b, _),
    ):
        time.sleep(1.0)
        _, from_a = call(f"{a}/events?after=0")
        _, from_b = call(f"{b}/events?after=0")
        seqs_a = [e["seq"] for e in from_a["events"]]
        assert seqs_a and seqs_a == list(range(1, len(seqs_a) + 1)), "one publisher, no gaps"
        # b's log begins where the stream was when b started (a may have ticked once before):
        # from there on, the same seqs name the same events on both, with no gap
        seqs_b = [e["seq"] for e in from_b["events"]]
        assert seqs_b and seqs_b == list(range(seqs_b[0], seqs_b[0] + len(seqs_b)))
        assert set(seqs_b) & set(seqs_a), (seqs_a, seqs_b)
        t_pub_a = {e["seq"]: e["t_pub"] for e in from_a["events"]}
        assert all(t_pub_a[e["seq"]] == e["t_pub"] for e in from_b["events"] if e["seq"] in t_pub_a)
        status, posted = call(f"{b}/messages", "POST", {"text": "via b"})
        assert status == 201
        _, answer = call(f"{a}/events?after={posted['seq'] - 1}&timeout=5", timeout=10)
        assert answer["events"][0]["data"] == {"text": "via b"}
    with (
        running_server("servers.push", 0, *queue[:2], "--queue-channel", channel + "-sio") as (
            a,
            _,
        ),
        running_server("servers.push", 0, *queue[:2], "--queue-channel", channel + "-sio") as (
            b,
            _,
        ),
    ):
        on_a, on_b = SocketIOProbe(a, "websocket"), SocketIOProbe(b, "websocket")
        try:
            seq = on_b.send({"text": "to everyone"})
            (event,) = on_a.receive(1)
            assert event["seq"] == seq and event["data"] == {"text": "to everyone"}
        finally:
            on_a.close()
            on_b.close()


def test_a_server_with_an_unusable_queue_says_so_in_one_line():
    for url, needle in (
        ("redis://127.0.0.1:1/0", "redis-server"),
        ("http://127.0.0.1:6379", "not a Redis URL"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "servers.websocket", "--port", "0", "--message-queue", url],
            cwd=ROOT, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert_one_line_error(result, "--message-queue", needle)


def test_a_worker_that_never_joins_fails_the_cell_saying_how_many_did(tmp_path):
    port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "pushpull.cli", "worker", "--master", f"127.0.0.1:{port}", "--once"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        result = pushpull(
            "bench", "--transports", "websocket", "--clients", "2", "--duration", "1",
            "--loadgen-workers", "2", "--master-port", str(port), "--workers-wait", "4",
            "--no-plot", "--out", str(tmp_path), timeout=120,
        )  # fmt: skip
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "1 of 2 Locust workers joined" in result.stderr, result.stderr
    failed = json.loads((run_dir_of(tmp_path) / "summary.json").read_text())["failed"]
    assert "1 of 2 Locust workers joined" in failed[0]["reason"]


def test_a_worker_that_leaves_mid_cell_fails_that_cell_and_the_sweep_goes_on(tmp_path):
    port = free_port()
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "pushpull.cli", "worker", "--master", f"127.0.0.1:{port}"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(2)
    ]
    bench = subprocess.Popen(
        [sys.executable, "-m", "pushpull.cli", "bench", "--transports", "websocket,sse",
         "--clients", "4", "--duration", "4", "--grace", "0.5", "--drain", "0.5", "--idle", "0", "--loadgen-workers", "2",
         "--master-port", str(port), "--workers-wait", "3", "--no-plot", "--out", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("*/websocket-*/window.json")):
            assert time.monotonic() < deadline and bench.poll() is None, (
                "the first cell never began"
            )
            time.sleep(0.2)
        time.sleep(1.5)  # inside the window
        workers[0].kill()  # the worker's Locust process dies with it
        out, err = bench.communicate(timeout=120)
    finally:
        for worker in workers:
            worker.kill()
            worker.wait(timeout=20)
        if bench.poll() is None:
            bench.kill()
    assert bench.returncode == 1 and "Traceback" not in err, err
    failed = json.loads((run_dir_of(tmp_path) / "summary.json").read_text())["failed"]
    assert [f["transport"] for f in failed] == ["websocket", "sse"], "the sweep went on"
    assert "1 of 2 Locust workers left during the cell" in failed[0]["reason"]
    assert "1 of 2 Locust workers joined" in failed[1]["reason"]


NO_STATS_SERVER = """
import sys
from servers import longpoll
from servers.arguments import server_arguments
from servers.events import EventLog
from servers.routes import json_error
from servers.serve import serve
from servers.stats import Counters

args = server_arguments("no-stats", "a longpoll server without /stats").parse_args()
log, counters = EventLog(), Counters()
app = longpoll.create_app(log, counters)
app.view_functions["stats"] = lambda: json_error(404, "no /stats here")
serve("no-stats", args, app, log, counters)
"""


def test_a_target_without_stats_gives_null_figures_with_the_reason(tmp_path):
    """A server started by hand, lacking /stats: measured, and what /stats would have fed is
    null with the reason, never invented."""
    process = subprocess.Popen(
        [sys.executable, "-c", NO_STATS_SERVER, "--port", "0", "--rate", "2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        url = json.loads(process.stdout.readline())["listening"]
        result = pushpull(
            "bench", "--target", url, "--transports", "longpoll", "--clients", "4",
            "--duration", "2", "--grace", "0.5", "--drain", "0.5", "--idle", "0", "--no-plot", "--out", str(tmp_path), timeout=120,
        )  # fmt: skip
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert result.returncode == 0, result.stderr + result.stdout
    run = run_dir_of(tmp_path)
    (cell,) = json.loads((run / "summary.json").read_text())["cells"]
    assert cell["target"] == url
    for figure in ("server_cpu_us_per_delivery", "requests", "bytes_per_delivery"):
        assert cell[figure] is None, figure
        assert "no /stats" in cell["unavailable"][figure] and "404" in cell["unavailable"][figure]
    assert cell["lost"] == 0 and cell["received"] == cell["expected"] > 0  # /published is there
    assert 0 < cell["latency_us"]["min"] <= cell["latency_us"]["p50"] < 100_000
    verify = (run / cell["name"] / "verify.txt").read_text()
    assert "missing: /stats (answers 404)" in verify and "/published" not in verify


# --- hosts made of network namespaces ------------------------------------------------------


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


def free_subnet() -> str:
    """A private /24 (10.200.0 - 10.249.249) that no route or address of this machine touches."""
    used = ip("-4", "route", "show", "table", "all").stdout + ip("-4", "addr").stdout
    for second in range(200, 250):
        for third in range(0, 250):
            subnet = f"10.{second}.{third}"
            if f"{subnet}." not in used and f"10.{second}.0.0/16" not in used:
                return subnet
    raise RuntimeError("no free 10.x private /24 on this machine")


@contextlib.contextmanager
def hosts(count: int):
    """`count` hosts: network namespaces on one bridge in a private /24 no route uses, the root
    namespace at .1 and the hosts at .2, .3, ...; all removed afterwards, and named after this
    test session (tests/conftest.py sweeps those of a session that died)."""
    subnet = free_subnet()
    prefix = f"{NAMESPACE_PREFIX}{SESSION}"
    bridge, names = f"{prefix}b", [f"{prefix}h{k}" for k in range(count)]
    try:
        ip("link", "add", bridge, "type", "bridge")
        ip("addr", "add", f"{subnet}.1/24", "dev", bridge)
        ip("link", "set", bridge, "up")
        for k, name in enumerate(names):
            ip("netns", "add", name)
            ip("link", "add", f"{name}v", "type", "veth", "peer", "name", "eth0", "netns", name)
            ip("link", "set", f"{name}v", "master", bridge, "up")
            ip("-n", name, "addr", "add", f"{subnet}.{k + 2}/24", "dev", "eth0")
            ip("-n", name, "link", "set", "eth0", "up")
            ip("-n", name, "link", "set", "lo", "up")
        yield subnet, names
    finally:
        for name in names:
            pids = ip("netns", "pids", name, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), 9)
            ip("link", "del", f"{name}v", check=False)
            ip("netns", "del", name, check=False)
        ip("link", "del", bridge, check=False)


def in_namespace(name: str, *command: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", name, *command], cwd=ROOT, **kwargs)


def wait_until_answers(url: str, deadline_s: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@needs("root", "ip")
def test_a_sweep_across_hosts_made_of_network_namespaces(tmp_path):
    """Host 1: Redis and a server on it; host 2: a Locust worker; the master (the harness) in
    the root namespace. A tiny sweep measures across them, with the worker's clock offset, over
    an emulated network: the emulator runs on the harness's host, in front of the target, and
    the worker's clients reach it there."""
    redis_server = shutil.which("redis-server")
    with hosts(2) as (subnet, (server_host, worker_host)):
        server_ip, master_ip = f"{subnet}.2", f"{subnet}.1"
        children = []
        try:
            queue = []
            if redis_server:
                children.append(
                    in_namespace(
                        server_host, redis_server, "--bind", "127.0.0.1", "--port", "6390",
                        "--save", "", "--appendonly", "no",
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )
                )  # fmt: skip
                queue = ["--message-queue", "redis://127.0.0.1:6390/0"]  # on the server's host
                time.sleep(0.5)
            children.append(
                in_namespace(
                    server_host, sys.executable, "-m", "servers.longpoll", "--host", server_ip,
                    "--port", "5000", "--rate", "2", *queue,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
            target = f"http://{server_ip}:5000"
            wait_until_answers(target)
            port = free_port()
            children.append(
                in_namespace(
                    worker_host, sys.executable, "-m", "pushpull.cli", "worker",
                    "--master", f"{master_ip}:{port}", "--once",
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
            result = pushpull(
                "bench", "--target", target, "--transports", "sse", "--clients", "6",
                "--network", "rtt=40ms", "--loadgen-workers", "1", "--master-host", master_ip, "--master-port", str(port),
                "--duration", "2", "--grace", "0.5", "--drain", "0.5", "--idle", "0", "--no-plot", "--out", str(tmp_path),
                timeout=180,
            )  # fmt: skip
        finally:
            for child in children:
                child.terminate()
            for child in children:
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
    assert result.returncode == 0, result.stderr + result.stdout
    run = run_dir_of(tmp_path)
    (cell,) = json.loads((run / "summary.json").read_text())["cells"]
    assert cell["lost"] == 0 and cell["received"] == cell["expected"] > 0
    # pushed over 20 ms each way (the veth pair adds tens of microseconds)
    assert 20_000 <= cell["latency_us"]["p50"] <= 30_000, cell["latency_us"]
    assert cell["network"]["rtt_ms"] == 40 and cell["network_cpu_us_per_delivery"] > 0
    manifest = json.loads((run / "manifest.json").read_text())
    (worker,) = manifest["loadgen_workers"][cell["name"]]
    # the namespaces share this machine's clock: the offset found is 0 within its uncertainty
    assert abs(worker["clock_offset_us"]) <= worker["clock_uncertainty_us"] + 1000, worker
    assert worker["cores"] and worker["name"]
    stats = json.loads((run / cell["name"] / "server-stats.json").read_text())["window_end"]
    assert (stats["queue"] is not None) == bool(redis_server)
    log = (run / cell["name"] / "locust.log").read_text()
    assert re.search(r"\b1 (?:of 1 |workers? )connected", log), log[-2000:]
