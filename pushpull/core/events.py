"""Reading one event of the stream as the load generator needs it (docs/protocol.md)."""

from __future__ import annotations

import json


def parse_event(text: str) -> dict:
    """An event's JSON text as the fields a load generator needs (seq, t_pub, t_sched, kind).
    The servers write every event as '{"seq":N,"t_pub":N,"t_sched":N,"kind":"...",...' (one
    encode, docs/protocol.md), so those four are read from the text's head without decoding the
    rest (a padded event's data can be 60 kB); anything else is decoded in full."""
    head = text.split(",", 4)
    if (
        len(head) == 5
        and head[0].startswith('{"seq":')
        and head[1].startswith('"t_pub":')
        and head[2].startswith('"t_sched":')
        and head[3].startswith('"kind":"')
    ):
        try:
            return {
                "seq": int(head[0][7:]),
                "t_pub": int(head[1][8:]),
                "t_sched": int(head[2][10:]),
                "kind": head[3][8:-1],
            }
        except ValueError:
            pass
    return json.loads(text)
