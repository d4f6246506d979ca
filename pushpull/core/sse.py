"""The one Server-Sent Events parser of pushpull (the load generator's SSE client, the harness's
verify step and the protocol test all use it), following the WHATWG event-stream rules for the
fields pushpull's servers send: `event`, `data` (several lines joined by newlines), `id`, comment
lines (`:`) ignored, a blank line dispatching. tests/test_leanclients.py checks it against
sseclient-py on the same bytes in any chunking.

    parser = SSEParser()
    for name, data, event_id in parser.feed("id: 3\\ndata: {...}\\n\\n"): ...
"""

from __future__ import annotations


class SSEParser:
    __slots__ = ("buffer", "name", "data", "last_id")

    def __init__(self) -> None:
        self.buffer = ""
        self.name = ""
        self.data: list[str] = []
        self.last_id: str | None = None  # the stream's last event id (what Last-Event-ID resends)

    def feed(self, text: str) -> list[tuple[str, str, str | None]]:
        """Complete events in `text` (plus what was buffered): (event name, data, last id)."""
        if not self.buffer and not self.data and not self.name and text.startswith("id: "):
            # the hot case: exactly one event, 'id: N\ndata: JSON\n\n' (how pushpull's server
            # writes a delivery); anything else takes the general path below
            first = text.find("\n")
            if (
                text.startswith("data: ", first + 1)
                and text.find("\n", first + 1) == len(text) - 2
                and text.endswith("\n\n")
                and "\r" not in text
                and "\0" not in text[4:first]
            ):
                self.last_id = text[4:first]
                return [("message", text[first + 7 : -2], self.last_id)]
        buffer = self.buffer + text if self.buffer else text
        held = ""
        if "\r" in buffer:  # CRLF or CR line ends; a CR at the end may be half of a CRLF
            if buffer[-1] == "\r":
                buffer, held = buffer[:-1], "\r"
            buffer = buffer.replace("\r\n", "\n").replace("\r", "\n")
        *lines, self.buffer = buffer.split("\n")
        self.buffer += held
        events = []
        for line in lines:
            if not line:
                if self.data:
                    events.append((self.name or "message", "\n".join(self.data), self.last_id))
                self.name, self.data = "", []
                continue
            if line[0] == ":":
                continue
            field, _, value = line.partition(":")
            if value[:1] == " ":
                value = value[1:]
            if field == "data":
                self.data.append(value)
            elif field == "event":
                self.name = value
            elif field == "id" and "\0" not in value:
                self.last_id = value
        return events
