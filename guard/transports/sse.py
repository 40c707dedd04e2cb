"""A minimal Server-Sent Events decoder (WHATWG HTML, "Parsing an event stream"). No I/O."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None


async def iter_events(lines: AsyncIterator[str]) -> AsyncIterator[ServerSentEvent]:
    """Yield events from an async iterator of lines (without line terminators)."""
    data: list[str] = []
    event = ""
    last_id: str | None = None
    async for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield ServerSentEvent(event or "message", "\n".join(data), last_id)
            data, event = [], ""
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            last_id = value
    if data:
        yield ServerSentEvent(event or "message", "\n".join(data), last_id)
