"""TLS for pushpull's own clients: the harness's reads and probes, the load generator's clients.
One context per process verifies every server's certificate, and its name, against the CA the run
trusts (`trust(path)`: the private CA made for the run, or the user's `--tls-ca`), else against
the system's store. No client of pushpull's turns verification off.

    tls.trust("results/RUN/tls/ca.pem")
    tls.urlopen("https://127.0.0.1:5001/stats", timeout=5)   # verified against that CA only
    tls.http_connection("https://127.0.0.1:5001", timeout=5)  # http.client, the same context
"""

from __future__ import annotations

import http.client
import ssl
import urllib.request
from urllib.parse import urlsplit

SECURE_SCHEMES = ("https", "wss")

_ca_file: str | None = None
_context: ssl.SSLContext | None = None


def trust(ca_file: str | None) -> None:
    """Verify servers against `ca_file` alone from now on (None: the system's store)."""
    global _ca_file, _context
    _ca_file, _context = ca_file, None


def ca_file() -> str | None:
    return _ca_file


def context() -> ssl.SSLContext:
    """The process's client context: CERT_REQUIRED and host names checked (the default's)."""
    global _context
    if _context is None:
        _context = ssl.create_default_context(cafile=_ca_file)
    return _context


def secure(url: str) -> bool:
    return urlsplit(url).scheme in SECURE_SCHEMES


def urlopen(request, timeout: float):
    """urllib's urlopen, verified against the trusted CA where the URL is https."""
    url = request if isinstance(request, str) else request.full_url
    return urllib.request.urlopen(
        request, timeout=timeout, context=context() if secure(url) else None
    )


def http_connection(url: str, timeout: float) -> http.client.HTTPConnection:
    """An http.client connection to url's host and port: HTTPS with the process's context."""
    parts = urlsplit(url)
    if secure(url):
        return http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=context()
        )
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def socketio_options(url: str) -> dict:
    """python-socketio Client's options for `url`: over TLS, verified against the trusted CA
    (Engine.IO's polling requests use its session, whose `verify` it also hands websocket-client
    as the CA file; a session given as an object is dropped on reset, so a factory is given)."""
    if not secure(url):
        return {}
    import requests

    def session() -> requests.Session:
        made = requests.Session()
        made.verify = _ca_file or True
        made.trust_env = False  # else REQUESTS_CA_BUNDLE, where set, wins over `verify`
        return made

    return {"http_session": session}


def refusal(exc: BaseException) -> str | None:
    """The one line of a failed certificate verification, found in `exc` (urllib wraps it in
    a URLError), or None when `exc` is something else."""
    cause = getattr(exc, "reason", exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"the server's certificate failed verification: {reason(cause)}"
    return None


def reason(exc: BaseException) -> str:
    """One line for a failed TLS handshake: what the verification said."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    return str(exc)
