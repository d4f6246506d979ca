"""`pushpull demo` in a real browser: the page served by a real `pushpull demo` process, opened in
headless Chromium over CDP. A chat message sent from the page's chat box reaches every pane,
every pane receives the server's ticks, the push panes' p50 is below the short-poll pane's, chat
markup shows as text, the panes reconnect when the server restarts, and the console stays clean.
A busy port and a missing socket.io-client are one line each."""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from pushpull.core import transports
from pushpull.harness import demo
from tests.cdp import Chromium
from tests.conftest import ROOT, needs, pushpull

NAMES = transports.demo_names()  # the panes: every transport with a browser client
PUSH = [t.name for t in transports.REGISTRY if t.role == transports.PUSH and t.demo]
needs_browser = needs("Chromium", "socket.io-client")


PANES = "Array.from(document.querySelectorAll('.pane'))"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def refused(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "healthz", timeout=2).close()
    except OSError:
        return True
    return False


@pytest.fixture(scope="module")
def demo_url():
    """`pushpull demo` as a user runs it, at 5 ticks/s; stopped with Ctrl-C (SIGINT) at the end,
    which must leave nothing serving."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pushpull.cli", "demo", "--port", str(free_port()), "--rate", "5"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("pushpull demo: open http://127.0.0.1:"), (
            line + process.stderr.read()
        )
        url = line.split()[3]
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            status = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert status == 0 and "Traceback" not in process.stderr.read()
    assert refused(url), "the demo server outlived `pushpull demo`"


@pytest.fixture(scope="module")
def page(demo_url, tmp_path_factory):
    with Chromium(tmp_path_factory.mktemp("chromium") / "profile", 1280, 900) as browser:
        browser.navigate(demo_url)
        browser.wait_for(
            f"{PANES}.length === {len(NAMES)} && "
            f"{PANES}.every(p => p.dataset.status === 'connected')",
            timeout=15,
            what="every pane connected",
        )
        yield browser


def send_chat(browser: Chromium, text: str) -> None:
    browser.evaluate(
        "(() => { document.getElementById('chat-text').value = " + json.dumps(text) + ";"
        " document.querySelector('#chat button').click(); })()"
    )


def chat_in_every_pane(text: str) -> str:
    return (
        f"{PANES}.every(p => Array.from(p.querySelectorAll('.messages .chat .text'))"
        f".some(s => s.textContent === {json.dumps(text)}))"
    )


def panes_state(browser: Chromium) -> dict[str, dict]:
    return browser.evaluate(
        f"Object.fromEntries({PANES}.map(p => [p.dataset.transport, {{"
        "received: Number(p.dataset.received), p50: parseFloat(p.dataset.p50Ms),"
        " p99: parseFloat(p.dataset.p99Ms), requests: Number(p.dataset.requests)}]))"
    )


@needs_browser
def test_chat_reaches_every_pane_and_push_beats_short_poll(page, tmp_path):
    assert page.evaluate(f"{PANES}.map(p => p.dataset.transport)") == NAMES, "registry order"
    text = f"hello from the browser test {time.time_ns()}"
    send_chat(page, text)
    page.wait_for(chat_in_every_pane(text), timeout=5, what="the chat message in every pane")
    assert page.evaluate("document.getElementById('chat-text').value") == "", "sent once"
    page.wait_for(
        f"{PANES}.every(p => Number(p.dataset.received) >= 15)",
        timeout=15,
        what="15 events in every pane",
    )
    state = panes_state(page)
    page.screenshot(tmp_path / "demo.png")
    for name, figures in state.items():
        assert figures["requests"] >= 1, name
        assert 0 <= figures["p50"] <= figures["p99"] < 5_000, (name, figures)
    for name in PUSH:
        assert state[name]["p50"] < state["shortpoll"]["p50"], state
    # short-polling asks about twice a second whatever happens; Socket.IO's websocket once
    assert state["shortpoll"]["requests"] > state["socketio"]["requests"], state
    assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.console_errors() == []


@needs_browser
def test_chat_markup_shows_as_text(page):
    text = '<b>x</b><img src=x onerror="window.__pwned = 1">'
    send_chat(page, text)
    page.wait_for(chat_in_every_pane(text), timeout=5, what="the markup, as text, in every pane")
    assert page.evaluate("window.__pwned === undefined")
    assert page.evaluate("document.querySelectorAll('.pane b, .pane img').length") == 0
    assert page.console_errors() == []


@needs_browser
def test_rate_is_set_from_the_page_and_bounded(page):
    page.evaluate(
        "(() => { const r = document.getElementById('rate'); r.value = '99';"
        " r.dispatchEvent(new Event('change')); })()"
    )
    error = page.wait_for("document.getElementById('control-error').textContent", timeout=5)
    assert "between 0 and 50" in error
    page.evaluate(
        "(() => { const r = document.getElementById('rate'); r.value = '5';"
        " r.dispatchEvent(new Event('change')); })()"
    )
    page.wait_for("document.getElementById('control-error').textContent === ''", timeout=5)
    url = page.evaluate("location.origin")
    with urllib.request.urlopen(url + "/demo/config") as response:
        assert json.loads(response.read())["rate"] == 5


@needs_browser
def test_panes_reconnect_when_the_server_restarts(tmp_path):
    """A restarted server: every pane says it is reconnecting, then receives the new server's
    events (whose seqs start again from 1)."""
    port = free_port()
    command = demo.server_command("127.0.0.1", port, 5.0)

    def start() -> subprocess.Popen:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().startswith('{"listening"')
        return process

    server = start()
    try:
        with Chromium(tmp_path / "profile", 1280, 900) as browser:
            browser.navigate(f"http://127.0.0.1:{port}/")
            browser.wait_for(
                f"{PANES}.length && {PANES}.every(p => Number(p.dataset.received) >= 3)",
                timeout=15,
                what="events in every pane",
            )
            server.terminate()
            server.wait(timeout=10)
            browser.wait_for(
                f"{PANES}.every(p => p.dataset.status === 'reconnecting' &&"
                " p.querySelector('.status').textContent === 'reconnecting…')",
                timeout=10,
                what="every pane says it is reconnecting",
            )
            before = panes_state(browser)
            server = start()
            browser.wait_for(
                f"{PANES}.every(p => p.dataset.status === 'connected')",
                timeout=20,
                what="every pane reconnected",
            )
            browser.wait_for(
                f"{PANES}.every(p => Number(p.dataset.received) >= "
                f"{json.dumps({n: s['received'] for n, s in before.items()})}"
                "[p.dataset.transport] + 3)",
                timeout=10,
                what="every pane receives the new server's events",
            )
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_busy_port_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = pushpull("demo", "--port", str(port), timeout=60)
    assert result.returncode == 1, result
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"127.0.0.1:{port} is already in use" in result.stderr
    assert result.stdout == ""


def test_a_missing_socketio_client_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(demo, "SOCKETIO_CLIENT", tmp_path / "node_modules" / "socket.io-client")
    monkeypatch.setattr(demo, "ROOT", tmp_path)
    status = demo.main(argparse.Namespace(host="127.0.0.1", port=free_port(), rate=1.0))
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1
    assert "socket.io-client is not installed" in err and "make setup" in err


def test_demo_port_is_checked_before_anything_starts():
    result = pushpull("demo", "--port", "70000")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "--port" in result.stderr and "Traceback" not in result.stderr


@needs_browser
def test_the_demo_over_a_network_shows_each_pane_late_by_it(tmp_path):
    """`pushpull demo --network rtt=100ms`: the page and every pane behind 50 ms each way, so
    every pane's p50 (measured in the browser, on the server's clock) grows by at least the
    one-way delay, and short-poll by more; Ctrl-C stops the emulator with the server."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pushpull.cli", "demo", "--port", str(port), "--rate", "5",
         "--network", "rtt=100ms"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline()
        assert line.startswith(f"pushpull demo: open http://127.0.0.1:{port}/"), (
            line + process.stderr.read()
        )
        assert "over rtt=100ms (100 ms)" in line, line
        with Chromium(tmp_path / "profile", 1280, 900) as browser:
            browser.navigate(line.split()[3])
            browser.wait_for(
                f"{PANES}.length === {len(NAMES)} && "
                f"{PANES}.every(p => Number(p.dataset.received) >= 10)",
                timeout=30,
                what="10 events in every pane",
            )
            state = panes_state(browser)
    finally:
        process.send_signal(signal.SIGINT)
        status = process.wait(timeout=15)
    assert status == 0 and "Traceback" not in process.stderr.read()
    for name, figures in state.items():
        assert 50 <= figures["p50"] < 1_000, (name, figures)
    assert refused(f"http://127.0.0.1:{port}/"), "the emulator outlived `pushpull demo`"


@needs("Chromium", "socket.io-client", "certutil")
def test_the_demo_over_tls_in_a_browser_that_trusts_its_ca(tmp_path):
    """`pushpull demo --tls on`: the page and every pane over https and wss, with a certificate
    from a CA made for the demo; Chromium trusts that CA (imported into its NSS store, as a user
    would import it), not every certificate: each pane connects and receives events."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pushpull.cli", "demo", "--port", str(port), "--rate", "5",
         "--tls", "on"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline()
        assert line.startswith(f"pushpull demo: open https://127.0.0.1:{port}/"), (
            line + process.stderr.read()
        )
        ca_line = process.stdout.readline()
        assert ca_line.startswith("pushpull demo: TLS: the certificate's CA is "), ca_line
        ca = ca_line.split()[-1]
        nssdb = tmp_path / "home" / ".pki" / "nssdb"
        nssdb.mkdir(parents=True)
        certutil = ["certutil", "-d", f"sql:{nssdb}"]
        subprocess.run([*certutil, "-N", "--empty-password"], check=True, timeout=30)
        subprocess.run(
            [*certutil, "-A", "-t", "C,,", "-n", "pushpull demo CA", "-i", ca],
            check=True, timeout=30,
        )  # fmt: skip
        with Chromium(tmp_path / "profile", 1280, 900, home=tmp_path / "home") as browser:
            browser.navigate(line.split()[3])
            browser.wait_for(
                f"{PANES}.length === {len(NAMES)} && "
                f"{PANES}.every(p => Number(p.dataset.received) >= 3)",
                timeout=30,
                what="3 events in every pane, over TLS",
            )
            assert browser.evaluate("location.protocol") == "https:"
    finally:
        process.send_signal(signal.SIGINT)
        status = process.wait(timeout=15)
    assert status == 0 and "Traceback" not in process.stderr.read()
