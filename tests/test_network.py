"""The emulated networks (docs/network.md): the `--network` parser, the emulator itself on real
sockets (bytes through unchanged, each direction's delay, the handshake's round trip, a rate),
and one cell per transport over a fixed delay, whose p50 must move by that delay."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest

from pushpull.core import networks, transports
from tests.conftest import QUICK_CELL, log_problems, pushpull

# --- the parser --------------------------------------------------------------------------------


def test_specs_and_built_ins_parse_to_every_parameter():
    lte = networks.parse("LTE")
    assert lte["rtt_ms"] == 70 and lte["up_delay_ms"] == lte["down_delay_ms"] == 35
    assert lte["down_kbit"] == lte["up_kbit"] == 12_000 and "WebPageTest" in lte["source"]
    assert networks.parse("loopback") is None
    spec = networks.parse("rtt=80ms/jitter=10ms/down=10mbit/up=2mbit/loss=1%")
    assert spec == {
        "name": "rtt=80ms/jitter=10ms/down=10mbit/up=2mbit/loss=1%", "rtt_ms": 80.0,
        "up_delay_ms": 40.0, "down_delay_ms": 40.0, "jitter_ms": 10.0, "down_kbit": 10_000.0,
        "up_kbit": 2_000.0, "loss_pct": 1.0,
    }  # fmt: skip
    skewed = networks.parse("up-delay=10ms/down-delay=0.03s")
    assert (skewed["rtt_ms"], skewed["up_delay_ms"], skewed["down_delay_ms"]) == (40, 10, 30)
    assert networks.parse("rtt=100ms/up-delay=20ms")["down_delay_ms"] == 80
    assert networks.parse("down=500kbit")["rtt_ms"] == 0 and networks.slug(spec) != ""
    for name in networks.BUILTINS:
        profile = networks.parse(name)
        assert profile["rtt_ms"] > 0 and profile["source"], name


@pytest.mark.parametrize(
    "spec, needles",
    [
        ("rtt=-5ms", ["rtt=-5ms", "negative", "80ms"]),
        ("loss=150%", ["loss=150%", "out of range", "100"]),
        ("rtt=fast", ["rtt='fast'", "a time with its unit"]),
        ("rtt=100", ["rtt='100'", "a time with its unit"]),
        ("down=10", ["down='10'", "a rate with its unit", "10mbit"]),
        ("wifi", ["'wifi' is not a network", "loopback", "lte", "rtt"]),
        ("rtt=10ms/delay=5ms", ["unknown key 'delay'", "up-delay"]),
        ("rtt=10ms/up-delay=20ms/down-delay=5ms", ["is not rtt"]),
        ("down=0mbit", ["out of range", "above 0"]),
    ],
)
def test_a_bad_network_is_one_line_naming_the_key(spec, needles):
    result = pushpull("bench", "--network", f"loopback,{spec}", "--clients", "2", timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("pushpull bench: error: --network: "), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_pushpull_networks_lists_every_profile_with_its_source():
    result = pushpull("networks", timeout=30)
    assert result.returncode == 0, result.stderr
    for name in ("loopback", *networks.BUILTINS):
        assert any(line.split()[0] == name for line in result.stdout.splitlines()), name
    assert result.stdout.count("WebPageTest") >= 5 and "RFC 2488" in result.stdout


# --- the emulator ------------------------------------------------------------------------------


@contextmanager
def echo_server(in_two_writes: bool = False):
    """A TCP echo server on a free port: what it reads it writes back (in two writes a moment
    apart, as a server sends headers then body, if asked), and half-closes after."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)

    def serve_one(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while data := conn.recv(65536):
                if in_two_writes and len(data) > 10:
                    conn.sendall(data[:10])
                    time.sleep(0.002)
                    data = data[10:]
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


@contextmanager
def relay(port: int, spec: str):
    process = subprocess.Popen(
        [sys.executable, "-m", "pushpull.harness.relay", "--target", f"127.0.0.1:{port}",
         "--network", json.dumps(networks.parse(spec)), "--seed", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        announce = json.loads(process.stdout.readline())
        yield int(announce["listening"][0].rsplit(":", 1)[1])
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
        assert process.returncode == 0 and stderr == "", stderr


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the stream ended early"
        data += chunk
    return data


def test_the_emulator_passes_every_byte_unchanged_late_by_its_round_trip():
    """2 MB of random bytes each way through 20 ms + 20 ms, in chunks of every size: what comes
    back is what went, in order, to the byte; a small echo takes the round trip (40 ms) and not
    much more; the first answer after connecting waits two (the handshake's and the echo's); the
    end of the stream passes on."""
    with echo_server() as port, relay(port, "rtt=40ms") as relayed:
        started = time.monotonic()
        sock = connect(relayed)
        sock.sendall(b"x")
        assert read_exactly(sock, 1) == b"x"
        first_ms = (time.monotonic() - started) * 1000
        rtts = []
        for _ in range(15):
            sent = time.monotonic()
            sock.sendall(b"ping")
            assert read_exactly(sock, 4) == b"ping"
            rtts.append((time.monotonic() - sent) * 1000)
        payload = os.urandom(2_000_000)
        received = bytearray()
        reader = threading.Thread(
            target=lambda: received.extend(read_exactly(sock, len(payload))), daemon=True
        )
        reader.start()
        offset, size = 0, 1
        while offset < len(payload):  # chunks of 1 byte to 64 kB
            sock.sendall(payload[offset : offset + size])
            offset, size = offset + size, size * 7 % 65521 + 1
        reader.join(timeout=30)
        assert bytes(received) == payload
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b"", "the half-close passed on"
        sock.close()
    rtts.sort()
    assert 40 <= rtts[len(rtts) // 2] < 50, rtts
    assert 80 <= first_ms < 110, first_ms


def test_a_rate_limit_takes_each_byte_its_transmission_time():
    """100 kB echoed over 1 Mbit/s each way: at least 0.8 s up and 0.8 s down (the token
    bucket), far longer than the same bytes on a link without a rate."""
    with echo_server() as port, relay(port, "rtt=2ms/down=1mbit/up=1mbit") as relayed:
        sock = connect(relayed)
        payload = os.urandom(100_000)
        sent = time.monotonic()
        sock.sendall(payload)
        assert read_exactly(sock, len(payload)) == payload
        took = time.monotonic() - sent
        sock.close()
    assert 0.8 <= took < 2.5, took


def test_many_connections_each_get_their_own_round_trip():
    """20 connections in lock step over rtt=100ms with both directions rate-limited (3G's
    rates), each echoing as soon as its answer comes (as long polls do): every round trip is
    the emulated one. (One timer left armed early once slept the relay through 150 ms, and
    long-poll over 3G came out at 590 ms where theory says 152.)"""
    spec = "rtt=100ms/down=1600kbit/up=768kbit"
    with echo_server(in_two_writes=True) as port, relay(port, spec) as relayed:
        socks = [connect(relayed) for _ in range(20)]
        times: list[list[float]] = [[] for _ in socks]

        def ping_pong(k: int) -> None:
            for _ in range(6):
                sent = time.monotonic()
                socks[k].sendall(b"p" * 228)
                read_exactly(socks[k], 228)
                times[k].append((time.monotonic() - sent) * 1000)

        threads = [threading.Thread(target=ping_pong, args=(k,)) for k in range(len(socks))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        for sock in socks:
            sock.close()
    rounds = sorted(t for each in times for t in each[1:])  # the first includes the handshake
    assert len(rounds) == 20 * 5
    assert 100 <= rounds[0] and rounds[len(rounds) // 2] < 110 and rounds[-1] < 130, rounds


# --- one cell per transport over a fixed delay ------------------------------------------------

DELAY_MS = 20  # each way


def test_every_transport_moves_by_the_delay(reference_run, tmp_path):
    """Every transport at 4 clients over rtt=40ms, beside the reference run's loopback cells of
    the same flags: push and long polls arrive one one-way delay later (a held poll answered as
    the event is published pays only the way back), short polls within [d, I + d]; a new
    client's welcome comes its handshake's round trips later (the registry's count); nothing is
    lost; the emulator's CPU is a figure of its own; no error in any log."""
    out = tmp_path / "net"
    result = pushpull(
        "bench", "--clients", "4", "--transports", ",".join(transports.NAMES), "--duration", "2",
        "--rate", "4", "--poll-interval", "0.2", "--network", f"rtt={2 * DELAY_MS}ms", *QUICK_CELL,
        "--out", str(out), "--no-plot", timeout=400,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    cells = json.loads(((out / "latest").resolve() / "summary.json").read_text())["cells"]
    loop = json.loads((reference_run.path / "summary.json").read_text())["cells"]
    base = {c["transport"]: c["latency_us"]["p50"] for c in loop if c["clients"] == 4}
    connect = {c["transport"]: c["first_connect_us"]["p50"] for c in loop if c["clients"] == 4}
    assert sorted(c["transport"] for c in cells) == sorted(transports.NAMES)
    for cell in cells:
        assert cell["network"]["rtt_ms"] == 2 * DELAY_MS, cell["network"]
        assert cell["lost"] == 0 and cell["received"] == cell["expected"] > 0, cell
        assert 0 < cell["network_cpu_us_per_delivery"] < 10_000, cell
        p50_ms = cell["latency_us"]["p50"] / 1000
        if "poll_interval" in transports.get(cell["transport"]).dimensions:
            interval_ms = cell["poll_interval"] * 1000
            assert DELAY_MS <= p50_ms <= interval_ms + DELAY_MS + 5, (cell["name"], p50_ms)
        else:
            moved = p50_ms - base[cell["transport"]] / 1000
            assert DELAY_MS - 1 <= moved <= DELAY_MS + 4, (cell["name"], moved)
        # a new client waits its handshake's round trips (3 for Socket.IO, 5 for its polling):
        # never less than those (the emulator delays every byte), and at most those on top of
        # its loopback connect (taken in another run, at another moment of a shared machine: a
        # difference of the two varied by a few ms, so the floor is the round trips themselves)
        trips = len(transports.get(cell["transport"]).connect_round_trips) * 2 * DELAY_MS
        waited_ms = cell["first_connect_us"]["p50"] / 1000
        loopback_ms = connect[cell["transport"]] / 1000
        assert cell["first_connect_us"]["count"] == 4, cell["first_connect_us"]
        assert trips <= waited_ms <= trips + loopback_ms + 8, (cell["name"], waited_ms, trips)
    assert not log_problems(cells), log_problems(cells)
