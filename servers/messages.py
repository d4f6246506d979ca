"""What crosses the wire as JSON: strict JSON encoding (RFC 8259, no NaN or Infinity) and the
check of a client's chat message, so that nothing unpublishable ever takes a seq."""

from __future__ import annotations

import json

MAX_BODY_BYTES = 64 * 1024
MAX_T_SEND = 2**63 - 1  # nanoseconds since the epoch fit a signed 64-bit integer


class Unpublishable(ValueError):
    """A message that cannot go out as strict JSON: refused, and no seq is taken."""


def strict_json(data: object) -> str:
    """`data` as strict JSON (RFC 8259: no NaN or Infinity), compact; Unpublishable if it
    cannot be (NaN, Infinity, bytes or other non-JSON values, nesting too deep)."""
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False)
    except ValueError:
        raise Unpublishable(
            "the message holds NaN or Infinity, which strict JSON (RFC 8259) cannot carry"
        ) from None
    except TypeError as exc:
        raise Unpublishable(f"the message holds a value JSON cannot carry ({exc})") from None
    except RecursionError:
        raise Unpublishable("the message is nested too deeply") from None


class Undecodable:
    """What SocketIOJSON decodes a packet to whose JSON cannot be decoded: a `message` event
    carrying this, which `chat_message` refuses (the client gets an error acknowledgement)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class SocketIOJSON:
    """The json module python-socketio decodes packets with, except that a packet whose JSON
    nests too deeply (or is not JSON) becomes a refusable `message` instead of an exception
    and a traceback in the server's log."""

    dumps = staticmethod(json.dumps)

    @staticmethod
    def loads(*args, **kwargs):
        try:
            return json.loads(*args, **kwargs)
        except RecursionError:
            return ["message", Undecodable("the message is nested too deeply")]
        except ValueError:
            return ["message", Undecodable("a chat message must be JSON")]


def chat_message(message: object) -> tuple[dict, str]:
    """A client's chat message, checked: a JSON object of at most MAX_BODY_BYTES as strict
    JSON, whose `t_send`, if present, is an integer number of ns in [0, 2**63). Returns it and
    its JSON; raises Unpublishable with a one-line reason otherwise."""
    if isinstance(message, Undecodable):
        raise Unpublishable(message.reason)
    if not isinstance(message, dict):
        raise Unpublishable(f"a chat message must be a JSON object, not {type(message).__name__}")
    t_send = message.get("t_send")
    if t_send is not None and (
        not isinstance(t_send, int) or isinstance(t_send, bool) or not 0 <= t_send <= MAX_T_SEND
    ):
        raise Unpublishable("t_send must be an integer number of ns since the epoch (0 to 2**63-1)")
    data_json = strict_json(message)
    if len(data_json) > MAX_BODY_BYTES:
        raise Unpublishable(f"the message is over {MAX_BODY_BYTES} bytes")
    return message, data_json


def decode_json(text: str | bytes) -> object:
    """A received JSON text, decoded; Unpublishable (one line) if it is not JSON or nests too
    deeply for the decoder."""
    try:
        return json.loads(text)
    except ValueError:
        raise Unpublishable("a chat message must be JSON") from None
    except RecursionError:
        raise Unpublishable("the message is nested too deeply") from None
