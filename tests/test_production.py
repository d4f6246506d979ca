"""Deployed as in production (docs/production.md): every transport over TLS, its certificate
verified against the run's CA (and refused when another CA signed it), nginx in front of every
transport, sticky sessions across two processes, clients from several source addresses, and the
bad flags of all that in one line each. Real servers, real nginx, real certificates."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from pushpull.core import tls, transports
from pushpull.harness import certs
from pushpull.harness.nginx import find_nginx, start_nginx
from pushpull.harness.proxy import Proxy
from pushpull.harness.verify import verify
from tests.conftest import REDIS_URL, SESSION, TEST_KEY_PREFIX, needs, pushpull, running_server
from tests.test_cli import assert_one_line_error, in_process

needs_nginx = needs("nginx")


@pytest.fixture(scope="module")
def run_ca(tmp_path_factory):
    """A CA made as a run makes it, and this process trusting it alone (as the harness does)."""
    made = certs.make(tmp_path_factory.mktemp("tls"), [])
    tls.trust(made.ca)
    yield made
    tls.trust(None)


def tls_server(spec, files, rate=20.0, *extra):
    return running_server(
        spec.server, rate, "--tls-cert", files.cert, "--tls-key", files.key, *extra
    )


def get(url: str) -> dict:
    with tls.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("transport", transports.NAMES)
def test_protocol_over_tls(transport, run_ca):
    """The protocol test's core over https/wss: verify passes, events arrive in order, the
    server says it serves TLS, and a plain-HTTP client gets no answer but a failed handshake."""
    spec = transports.get(transport)
    with tls_server(spec, run_ca) as (url, pid):
        assert url.startswith("https://")
        assert verify(spec, url, pid) == []
        client = spec.probe_factory()(url)
        try:
            events = client.receive(3)
        finally:
            client.close()
        assert [e["seq"] for e in events] == list(range(client.baseline + 1, client.baseline + 4))
        with pytest.raises(OSError):
            urllib.request.urlopen(url.replace("https://", "http://") + "/healthz", timeout=5)
        stats = get(url + "/stats")
        assert stats["tls"] is True and stats["tls_handshakes_failed"] >= 1


@pytest.mark.parametrize("transport", ["socketio", "websocket", "longpoll"])
def test_tls_byte_counts_hold_the_records(transport, run_ca):
    """Over TLS the server counts the wire's bytes (TCP_INFO), TLS records included: what a
    proxy saw cross toward the client, plus at most what the two /stats reads cost."""
    spec = transports.get(transport)
    with tls_server(spec, run_ca, 0) as (url, _pid), Proxy(url) as client_side:
        with Proxy(url) as stats_side:
            stats_url = stats_side.url.replace("http://", "https://")
            before = get(stats_url + "/stats")
            client = spec.probe_factory()(client_side.url.replace("http://", "https://"))
            try:
                client.send({"text": "one delivery", "t_send": time.time_ns()})
                (event,) = client.receive(1)
                assert event["kind"] == "chat"
            finally:
                client.close()
            client_side.wait_closed()
            after = get(stats_url + "/stats")
            stats_side.wait_closed()
    written = after["bytes_written"] - before["bytes_written"]
    assert client_side.bytes_down > 1500  # the handshake: its certificate alone is over 1 KB
    assert client_side.bytes_down <= written <= client_side.bytes_down + stats_side.bytes_down


def test_a_certificate_from_another_ca_fails_in_one_line(tmp_path, run_ca):
    """The servers' certificate is signed by one CA, the clients trust another: the cell
    fails at the verify step with one line naming the verification's reason; and a lean
    load-generator client refuses it the same way."""
    other = certs.make(tmp_path / "other", [])
    result = pushpull(
        "bench", "--tls", "on", "--tls-cert", run_ca.cert, "--tls-key", run_ca.key,
        "--tls-ca", other.ca, "--transports", "websocket", "--clients", "2", "--duration", "1",
        "--grace", "0.5", "--drain", "0.5", "--idle", "0", "--out", str(tmp_path / "runs"),
        "--no-plot", timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    output = (result.stdout + result.stderr).splitlines()
    failed = [line for line in output if "certificate verify failed" in line]
    assert len(failed) == 1, output
    assert "unable to get local issuer certificate" in failed[0]
    from loadtests.leanhttp import LeanHTTP
    from loadtests.tls import TLSFailed

    with tls_server(transports.get("longpoll"), run_ca, 0) as (url, _pid):
        tls.trust(other.ca)
        try:
            with pytest.raises(TLSFailed, match="certificate verify failed: unable to get local"):
                LeanHTTP(url, timeout=5).request("GET", "/healthz")
        finally:
            tls.trust(run_ca.ca)


@needs_nginx
@pytest.mark.parametrize(
    "transport, secure",
    [(name, True) for name in transports.NAMES] + [("socketio", False), ("longpoll", False)],
)
def test_nginx_in_front_of_every_transport(transport, secure, run_ca, tmp_path):
    """The generated configuration carries every transport (upgrades, unbuffered streams and
    polls) with TLS ending at nginx, and over plain HTTP for one upgrade and one held poll
    (the configuration differs only in `listen ... ssl` and its certificate lines): verify
    passes through it."""
    spec = transports.get(transport)
    with running_server(spec.server, 20) as (url, pid):
        nginx, proxied, info = start_nginx(
            [url], "127.0.0.1", tmp_path, None, run_ca if secure else None, {pid}
        )
        try:
            assert proxied.startswith("https://" if secure else "http://")
            assert verify(spec, proxied, pid) == []
            assert info["version"][0].isdigit() and info["tls"] is secure
        finally:
            nginx.stop()
        assert not nginx.alive()


def engineio_session(url: str) -> list[tuple[int, str]]:
    """Open an Engine.IO long-polling session and speak in it: the answers (status, body) to
    the open, Socket.IO's CONNECT (a POST) and the next poll (a GET)."""
    answers = []

    def call(path: str, data: bytes | None = None) -> str:
        request = urllib.request.Request(url + path, data=data, method="POST" if data else "GET")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                answers.append((response.status, response.read().decode()))
        except urllib.error.HTTPError as exc:
            answers.append((exc.code, exc.read().decode()))
        return answers[-1][1]

    opened = call("/socket.io/?EIO=4&transport=polling")
    sid = json.loads(opened[1:])["sid"]
    call(f"/socket.io/?EIO=4&transport=polling&sid={sid}", b"40")
    if answers[-1][0] == 200:  # connected: the poll brings the CONNECT's answer
        call(f"/socket.io/?EIO=4&transport=polling&sid={sid}")
    return answers


@needs_nginx
@needs("Redis")
def test_socketio_polling_needs_sticky_sessions_behind_nginx(tmp_path):
    """Two Socket.IO processes on one Redis stream behind nginx: round robin sends the
    long-polling session's next request to the process that does not hold it, which Engine.IO
    refuses ("Invalid session"); ip_hash, what the generated configuration uses with several
    processes, keeps a client's requests on one process."""
    channel = (
        "--message-queue",
        REDIS_URL,
        "--queue-channel",
        f"{TEST_KEY_PREFIX}{SESSION}-sticky",
    )
    with (
        running_server("servers.push", 10, *channel) as (one, pid_one),
        running_server("servers.push", 0, *channel) as (two, pid_two),
    ):
        answers = {}
        for sticky in (False, True):
            nginx, url, _info = start_nginx(
                [one, two], "127.0.0.1", tmp_path / str(sticky), None, None, {pid_one, pid_two},
                sticky=sticky,
            )  # fmt: skip
            try:
                answers[sticky] = engineio_session(url)
            finally:
                nginx.stop()
    (open_status, _), (connect_status, refusal) = answers[False]
    assert open_status == 200 and connect_status == 400 and "Invalid session" in refusal
    assert [status for status, _ in answers[True]] == [200, 200, 200]
    assert answers[True][2][1].startswith("40"), "the CONNECT's answer came back in the poll"


@pytest.mark.slow
@needs_nginx
@needs("Redis")
def test_production_stack_end_to_end(tmp_path):
    """nginx with TLS in front of two processes on Redis, the clients spread over source
    addresses by default: nothing lost, both processes serve clients, every client verified
    the certificate, nginx's figures beside the servers'."""
    result = pushpull(
        "bench", "--tls", "on", "--proxy", "nginx", "--server-procs", "2",
        "--message-queue", REDIS_URL, "--transports", "socketio-polling",
        "--clients", "8", "--duration", "2", "--grace", "0.5", "--drain", "0.5", "--idle", "0",
        "--out", str(tmp_path), "--no-plot", timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    run = next(tmp_path.glob("2*"))
    summary = json.loads((run / "summary.json").read_text())
    assert len(summary["cells"]) == 1 and not summary["failed"]
    for cell in summary["cells"]:
        assert cell["tls"] and cell["proxy"] == "nginx" and cell["lost"] == 0
        figures = cell["proxy_figures"]
        assert figures["sticky"] == "ip_hash" and figures["cpu_us_per_delivery"] > 0
        assert figures["edge_bytes_per_delivery"] > 0
        stats = json.loads((run / cell["name"] / "server-stats.json").read_text())
        split = [p["clients"] for p in stats["processes"]["window_end"]]
        assert sum(split) == 8 and min(split) > 0, split
        assert cell["server_errors"]["count"] == 0 and cell["proxy_errors"]["count"] == 0


def test_clients_come_from_several_source_addresses(tmp_path):
    """--source-addresses: the server sees each of them (and the harness's own 127.0.0.1)."""
    result = pushpull(
        "bench", "--transports", "websocket", "--clients", "6", "--source-addresses",
        "127.0.0.2-127.0.0.4", "--duration", "1", "--grace", "0.5", "--drain", "0.5",
        "--idle", "0", "--out", str(tmp_path), "--no-plot", timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    run = next(tmp_path.glob("2*"))
    (cell,) = json.loads((run / "summary.json").read_text())["cells"]
    stats = json.loads((run / cell["name"] / "server-stats.json").read_text())
    assert stats["window_end"]["peer_addresses"] == 4  # 127.0.0.2-4 and the harness's


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--tls", "maybe"], ["--tls", "'maybe'", "off or on"]),
        (["--tls", "on", "--tls-cert", "/nonexistent.pem", "--tls-key", "/k", "--tls-ca", "/c"],
         ["--tls-cert", "/nonexistent.pem", "no such file"]),
        (["--tls", "on", "--tls-cert", "README.md"], ["--tls-key", "missing"]),
        (["--proxy", "haproxy"], ["--proxy", "'haproxy'", "none, nginx"]),
        (["--source-addresses", "10.0.0.1-10.0.0.5"], ["--source-addresses", "10.0.0.1", "loopback"]),
        (["--source-addresses", "127.0.0.9-127.0.0.2"], ["--source-addresses", "ends below"]),
        (["--source-addresses", "127.0.0.x"], ["--source-addresses", "not an address"]),
        (["--target", "https://127.0.0.1:9", "--proxy", "nginx"], ["--proxy", "--target"]),
    ],
)  # fmt: skip
def test_production_flags_reject_bad_input(tmp_path, capsys, args, needles):
    result = in_process(capsys, "bench", "--out", str(tmp_path), *args)
    assert_one_line_error(result, *needles)
    assert not any(tmp_path.iterdir())


def test_proxy_nginx_without_nginx_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PUSHPULL_NGINX", str(tmp_path / "no-nginx-here"))
    assert find_nginx() is None
    result = in_process(capsys, "bench", "--out", str(tmp_path / "runs"), "--proxy", "nginx")
    assert_one_line_error(result, "--proxy nginx", "not installed", "apt-get install nginx")


def test_a_server_given_half_a_certificate_says_so(run_ca):
    import subprocess
    import sys

    from tests.conftest import ROOT

    done = subprocess.run(
        [sys.executable, "-m", "servers.websocket", "--port", "0", "--tls-cert", run_ca.cert],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "servers.websocket: error: --tls-cert needs --tls-key (a certificate and its private key)"
    )


def test_tls_through_the_network_emulator_adds_its_handshake_round_trip(tmp_path):
    """The emulator relays TCP, so https stays https through it (it once announced http, and
    every TLS client failed); TLS 1.3's handshake is one more round trip per connection."""
    result = pushpull(
        "bench", "--tls", "on", "--network", "rtt=40ms", "--transports", "websocket",
        "--clients", "2", "--duration", "1", "--grace", "0.5", "--drain", "0.5", "--idle", "0",
        "--out", str(tmp_path), "--no-plot", timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (cell,) = json.loads((next(tmp_path.glob("2*")) / "summary.json").read_text())["cells"]
    trips = len(transports.get("websocket").connect_round_trips) + 1  # + the TLS handshake
    assert cell["tls"] and cell["lost"] == 0
    assert trips * 40 <= cell["first_connect_us"]["p50"] / 1000 <= trips * 40 + 30
