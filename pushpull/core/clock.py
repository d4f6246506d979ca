"""The offset between this machine's clock and a server's, from `GET /time` (docs/protocol.md).

Both sides that time things against the server's clock use it: each load-generator process,
to move its receive times onto the server's clock (loadtests/recorder.py), and the harness, to
wait for the edges of a window that is on the server's clock before it reads the server's
counters and what it published (pushpull/harness/cell.py).

    offset_ns, uncertainty_ns = measure_offset("http://127.0.0.1:5001")
    local_ns = server_ns - correction(offset_ns, uncertainty_ns)
"""

from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlsplit

from pushpull.core import tls


def measure_offset(url: str, samples: int = 15, timeout: float = 5.0) -> tuple[int, int]:
    """(server clock - this clock, uncertainty) in ns, from the GET /time exchange with the
    shortest round trip over one kept-alive connection (NTP's minimum-delay sample): the
    server read its clock somewhere in that round trip, so the midpoint is off by at most half
    of it. Raises OSError or ValueError when the server does not answer as it should."""
    parts = urlsplit(url.rstrip("/"))
    connection = tls.http_connection(url, timeout)
    best: tuple[int, int] | None = None
    try:
        for _ in range(samples):
            sent = time.time_ns()
            connection.request("GET", parts.path + "/time")
            response = connection.getresponse()
            body = response.read()
            received = time.time_ns()
            if response.status != 200:
                raise ValueError(f"GET /time answered {response.status}")
            offset = json.loads(body)["t_ns"] - (sent + received) // 2
            if best is None or received - sent < best[0]:
                best = (received - sent, offset)
    except http.client.HTTPException as exc:  # not an OSError: a broken answer
        raise ValueError(f"GET /time: {exc!r}") from None
    finally:
        connection.close()
    assert best is not None
    return best[1], best[0] // 2


def correction(offset_ns: int, uncertainty_ns: int) -> int:
    """What to add to this machine's times to put them on the server's clock: the offset, but
    only when it is larger than its own uncertainty (on one host the true offset is 0 and the
    estimate is noise from asymmetric scheduling)."""
    return offset_ns if abs(offset_ns) > uncertainty_ns else 0
