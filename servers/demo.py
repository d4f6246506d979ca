"""The demo server behind `make demo`: one process, one event log, every transport.

The push (Flask-SocketIO), plain WebSocket and REST apps are built on one shared `EventLog` and
one `Counters`, and a small WSGI router sends each request to the app that speaks its transport,
so a message is published once (one seq) and reaches every pane of the page at the same moment:

    /socket.io/...   -> servers.push       (Socket.IO over websocket, and its long-polling)
    /ws              -> servers.websocket  (plain WebSocket)
    /, /demo/...     -> the page, its static files, socket.io-client, GET /demo/config and
                        POST /demo/rate {"rate": R} (restarts the ticker at R events/s, 0 to 50)
    everything else  -> servers.longpoll   (/events, /stream, /messages, /healthz, /stats,
                                            /time, /published)

The page lists one pane per transport from `--transports` (a JSON list of {name, label, color}
given by `pushpull demo`, which reads the registry: servers never import the harness).

    python -m servers.demo --port 8000 --rate 1 \\
        --transports '[{"name": "sse", "label": "Server-Sent Events", "color": "#009E73"}]' \\
        --socketio-client node_modules/socket.io-client/dist
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path

from flask import Flask, Response, jsonify, send_from_directory

from servers import longpoll, push, websocket
from servers.arguments import rate_value, server_arguments
from servers.events import EventLog, Ticker
from servers.routes import BadRequest, flask_app, json_error, parse_json_object
from servers.serve import run
from servers.stats import Counters

PROG = "servers.demo"
STATIC = Path(__file__).resolve().parent / "demo_static"
MAX_DEMO_RATE = 50.0
SOCKETIO_CLIENT_FILES = ("socket.io.min.js", "socket.io.min.js.map")
COLOR = re.compile(r"#[0-9A-Fa-f]{6}")


def demo_rate(value: object) -> float:
    """A ticker rate from the page: a number of events per second, 0 to MAX_DEMO_RATE."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest("rate must be a number of events per second")
    if not 0 <= value <= MAX_DEMO_RATE:
        raise BadRequest(f"rate must be between 0 and {MAX_DEMO_RATE:g} events/s, got {value:g}")
    return float(value)


def page_app(
    transports: list[dict], socketio_client: Path, ticker: Ticker, counters: Counters
) -> Flask:
    """The page, its static files, socket.io-client (served from node_modules), the pane list
    and the ticker's rate."""
    return flask_app(
        __name__,
        counters,
        lambda app: add_page_routes(app, transports, socketio_client, ticker),
        static_folder=str(STATIC),
        static_url_path="/demo/static",
    )


def add_page_routes(
    app: Flask, transports: list[dict], socketio_client: Path, ticker: Ticker
) -> None:
    @app.get("/")
    def index() -> Response:
        response = send_from_directory(STATIC, "index.html")
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.get("/demo/vendor/<name>")
    def vendor(name: str) -> Response:
        if name not in SOCKETIO_CLIENT_FILES:
            return json_error(404, f"no vendored file {name}")
        return send_from_directory(socketio_client, name)

    @app.get("/demo/config")
    def config() -> Response:
        return jsonify(transports=transports, rate=ticker.rate, rate_max=MAX_DEMO_RATE)

    @app.post("/demo/rate")
    def set_rate() -> Response:
        rate = demo_rate(parse_json_object().get("rate"))
        ticker.set_rate(rate)
        return jsonify(rate=rate)


def router(push_app: Callable, ws_app: Callable, rest_app: Callable, page: Callable) -> Callable:
    """One WSGI app for all: each request goes, path unchanged, to the app of its transport."""

    def wsgi(environ, start_response):
        path = environ.get("PATH_INFO") or "/"
        if path == "/socket.io" or path.startswith("/socket.io/"):
            app = push_app
        elif path == "/ws":
            app = ws_app
        elif path == "/" or path.startswith("/demo/"):
            app = page
        else:
            app = rest_app
        return app(environ, start_response)

    return wsgi


def transports_value(text: str) -> list[dict]:
    """--transports: a JSON list of {"name", "label", "color"} objects (the registry's order)."""
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not JSON (a list of {name, label, color})") from None
    if not isinstance(value, list) or not value:
        raise argparse.ArgumentTypeError("must be a non-empty JSON list")
    panes = []
    for item in value:
        if not isinstance(item, dict) or not all(
            isinstance(item.get(key), str) and item[key] for key in ("name", "label", "color")
        ):
            raise argparse.ArgumentTypeError(f"{item!r} is not a {{name, label, color}} object")
        if not COLOR.fullmatch(item["color"]):
            raise argparse.ArgumentTypeError(f"colour {item['color']!r} is not #RRGGBB")
        panes.append({key: item[key] for key in ("name", "label", "color", "role") if key in item})
    return panes


def demo_rate_value(text: str) -> float:
    return rate_value(text, MAX_DEMO_RATE)


def socketio_client_dir(text: str) -> Path:
    path = Path(text)
    if not (path / SOCKETIO_CLIENT_FILES[0]).is_file():
        raise argparse.ArgumentTypeError(
            f"{text!r} holds no {SOCKETIO_CLIENT_FILES[0]} (run `make setup` to install "
            "socket.io-client)"
        )
    return path.resolve()


def demo_arguments() -> argparse.ArgumentParser:
    """The common arguments, --port 8000 and --rate bounded for the page, and the panes."""
    parser = server_arguments(PROG, "The demo page and every transport on one event log.")
    parser.set_defaults(port=8000)
    rate = parser._option_string_actions["--rate"]  # the common --rate, bounded for the page
    rate.type, rate.default = demo_rate_value, 1.0
    rate.help = (
        f"ticks per second at start, 0 to {MAX_DEMO_RATE:g}; the page changes it (default 1)"
    )
    parser.add_argument(
        "--transports",
        type=transports_value,
        required=True,
        help='the panes, in order: a JSON list of {"name", "label", "color"}',
    )
    parser.add_argument(
        "--socketio-client",
        type=socketio_client_dir,
        required=True,
        metavar="DIR",
        help="the dist folder of the npm package socket.io-client (served to the page)",
    )
    return parser


def demo_app(args: argparse.Namespace, log: EventLog, counters: Counters, ticker: Ticker):
    """The push, plain WebSocket and REST apps on one event log, and the page, behind the router
    (the ticker publishes, at a rate the page may change)."""
    push_app = push.create_app(log, counters, origins=args.allow_origin)
    ws_app = websocket.create_app(log, counters, origins=args.allow_origin)
    rest = longpoll.create_app(log, counters)
    page = page_app(args.transports, args.socketio_client, ticker, counters)
    return router(push_app, ws_app, rest, page)


def main(argv: list[str] | None = None) -> None:
    parser = demo_arguments()
    args = parser.parse_args(argv)
    if getattr(args, "message_queue", None):
        parser.error("--message-queue: the demo is one process on one event log")
    run(PROG, args, lambda log, counters, _queue, ticker: demo_app(args, log, counters, ticker))


if __name__ == "__main__":
    main()
