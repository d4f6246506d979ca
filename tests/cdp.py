"""Debian's Chromium, headless, driven over the DevTools protocol (CDP) through websocket-client
(installed with python-socketio[client]): what the report and demo tests look at pages with.

    with Chromium(tmp_path / "profile") as browser:
        browser.navigate("http://127.0.0.1:8000/")
        browser.wait_for("document.querySelectorAll('.pane').length === 6")
        browser.screenshot(tmp_path / "page.png")
        assert not browser.console_errors()
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from itertools import count
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    """One headless Chromium with one page; `call` sends a CDP command and returns its result,
    keeping the events that arrive meanwhile (console messages, exceptions) in `events`."""

    def __init__(
        self, profile: Path, width: int = 1280, height: int = 1600, home: Path | None = None
    ) -> None:
        """`home`: the HOME Chromium runs with (its NSS certificate store is home/.pki/nssdb)."""
        assert CHROMIUM is not None, "Chromium is not installed"
        self.profile = profile
        self.home = home
        self.size = (width, height)
        self.events: list[dict] = []
        self._ids = count(1)
        self.process: subprocess.Popen | None = None
        self.ws = None

    def __enter__(self) -> Chromium:
        import websocket  # websocket-client, installed with python-socketio[client]

        width, height = self.size
        self.process = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-quic", f"--user-data-dir={self.profile}",
             "--remote-debugging-port=0", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=None if self.home is None else {**os.environ, "HOME": str(self.home)},
        )  # fmt: skip
        try:
            port_file = self.profile / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not port_file.exists() or not port_file.read_text().strip():
                assert time.monotonic() < deadline, "Chromium did not open its debugging port"
                time.sleep(0.1)
            port = port_file.read_text().split()[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json") as response:
                page = next(t for t in json.loads(response.read()) if t["type"] == "page")
            self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
            self.call("Page.enable")
            self.call("Runtime.enable")
            self.call("Log.enable")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        if self.ws is not None:
            self.ws.close()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def call(self, method: str, **params) -> dict:
        ident = next(self._ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == ident:
                assert "error" not in message, message
                return message["result"]
            self.events.append(message)

    def navigate(self, url: str) -> None:
        """Open `url` and wait for its load event."""
        seen = len(self.events)
        self.call("Page.navigate", url=url)
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events[seen:]):
            self.events.append(json.loads(self.ws.recv()))

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 10.0, what: str = ""):
        """Evaluate `expression` every 0.1 s until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"not within {timeout:g} s: {what or expression}"
            time.sleep(0.1)

    def screenshot(self, path: Path, full_page: bool = False) -> bytes:
        shot = base64.b64decode(
            self.call("Page.captureScreenshot", format="png", captureBeyondViewport=full_page)[
                "data"
            ]
        )
        path.write_bytes(shot)
        return shot

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and the browser's own error log entries (a failed
        request, a refused connection) seen so far, one line each."""
        errors = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                args = params.get("args", [])
                errors.append("console: " + " ".join(str(a.get("value", a)) for a in args))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                text = details.get("exception", {}).get("description") or details.get("text")
                errors.append(f"exception: {text}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                errors.append(
                    f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}"
                )
        return errors
