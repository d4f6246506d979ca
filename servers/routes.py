"""The Flask side every server shares: the app set-up (JSON errors, the body-size bound, the
--allow-origin list, every request counted), the routes every server answers (/healthz, /stats,
/time, /published) and the checks of a request's arguments, refused as a one-line 400."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from servers.clock import now_ns
from servers.events import EventLog
from servers.messages import MAX_BODY_BYTES
from servers.queue import Queue
from servers.stats import Counters, server_stats


class BadRequest(HTTPException):
    code = 400


def json_error(status: int, message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response


def http_error(exc: HTTPException) -> Response:
    return json_error(exc.code or 500, exc.description or exc.name)


def flask_app(
    import_name: str,
    counters: Counters,
    *route_groups: Callable[[Flask], object],
    origins: Iterable[str] = (),
    **options,
) -> Flask:
    """A Flask app set up as every server's: JSON errors, bodies of at most MAX_BODY_BYTES, JSON
    keys in the order written, `origins` (--allow-origin) in its config as ALLOWED_ORIGINS; then
    each of `route_groups(app)`; and last, outermost, every HTTP request counted (so that
    Engine.IO's polls and upgrades, answered by Flask-SocketIO's middleware, count too)."""
    app = Flask(import_name, **options)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["ALLOWED_ORIGINS"] = list(origins)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.register_error_handler(HTTPException, http_error)
    for add_routes in route_groups:
        add_routes(app)
    app.wsgi_app = counting(app.wsgi_app, counters)  # type: ignore[method-assign]
    return app


def server_app(
    import_name: str,
    name: str,
    log: EventLog,
    counters: Counters,
    queue: Queue | None,
    origins: Iterable[str],
    *route_groups: Callable[[Flask], object],
) -> Flask:
    """A measured server's app (`flask_app`): the common routes, then the server's own."""
    return flask_app(
        import_name,
        counters,
        lambda app: add_common_routes(app, name, log, counters, queue),
        *route_groups,
        origins=origins,
    )


def add_common_routes(
    app: Flask, name: str, log: EventLog, counters: Counters, queue: Queue | None = None
) -> None:
    """/healthz, /stats, /time and /published (docs/protocol.md)."""
    pid = os.getpid()

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok", server=name, pid=pid, last_seq=log.last_seq)

    @app.get("/stats")
    def stats() -> Response:
        return jsonify(server_stats(name, log, counters, queue))

    @app.get("/time")
    def server_time() -> Response:
        return jsonify(t_ns=now_ns())

    @app.get("/published")
    def published() -> Response:
        since = parse_int_arg("since", default=0, minimum=0)
        until = parse_int_arg("until", default=2**63 - 1, minimum=0)
        return jsonify(log.published_between(since, until))


def parse_int(raw: str | int, name: str, minimum: int) -> int:
    """An integer argument (a query's or a header's text, or a JSON integer), >= `minimum`."""
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise BadRequest(f"{name} must be >= {minimum}, got {value}")
    return value


def parse_int_arg(name: str, default: int | None, minimum: int) -> int | None:
    raw = request.args.get(name)
    return default if raw is None else parse_int(raw, name, minimum)


def parse_float_arg(name: str, default: float, minimum: float, maximum: float) -> float:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise BadRequest(f"{name} must be between {minimum:g} and {maximum:g}, got {raw}")
    return value


def parse_json_object() -> dict:
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def counting(app: Callable, counters: Counters) -> Callable:
    """WSGI middleware counting every HTTP request (Engine.IO's polls and upgrades included)."""

    def wsgi(environ, start_response):
        counters.requests += 1
        return app(environ, start_response)

    return wsgi
