"""One HTTP/1.1 server connection over h11, and the byte budget connections share (loop thread).

Used by :mod:`meshlab.collector.listener`; kept apart so the listener reads as policy (deadlines,
caps, who may post) and this as mechanism (bytes in, events out, answers written).
"""

from __future__ import annotations

import asyncio

import h11

MAX_HEADER_BYTES = 16 * 1024
READ_CHUNK = 64 * 1024
STATUS_TEXT = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    411: b"Length Required",
    413: b"Content Too Large",
    503: b"Service Unavailable",
}


class ByteBudget:
    """Bytes buffered by all connections together, taken as they arrive (loop thread only).

    Taken chunk by chunk rather than a whole content-length up front, so a slow client holds only
    what it has sent; a fast one that finds the budget full waits, within its deadline.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._room = asyncio.Condition()

    async def take(self, size: int) -> None:
        async with self._room:
            # A chunk above the whole budget (tiny budgets) may go alone rather than never.
            await self._room.wait_for(lambda: self.used + size <= self.limit or self.used == 0)
            self.used += size

    async def give_back(self, size: int) -> None:
        async with self._room:
            self.used -= size
            self._room.notify_all()


def raw_response(status: int, text: str) -> bytes:
    body = (text + "\n").encode()
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n" % (status, STATUS_TEXT.get(status, b""), len(body))
    )
    return head + body


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.got_bytes = False  # any byte of the current request received
        self.answered = 0  # requests answered on this connection

    async def next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self.h11.next_event()
            if event is h11.PAUSED or isinstance(event, h11.Event):
                return event
            data = await self.reader.read(READ_CHUNK)
            if data:
                self.got_bytes = True
            self.h11.receive_data(data)

    async def first_bytes(self) -> None:
        """Wait until the next request starts (or the peer closes), on a kept-alive connection."""
        if self.h11.trailing_data[0] or self.h11.trailing_data[1]:
            return  # pipelined bytes or EOF already received
        data = await self.reader.read(READ_CHUNK)
        if data:
            self.got_bytes = True
        self.h11.receive_data(data)

    async def send(self, status: int, text: str, close: bool) -> None:
        if self.h11.our_state is not h11.SEND_RESPONSE:
            self.writer.write(raw_response(status, text))
        else:
            body = (text + "\n").encode()
            headers = [
                ("content-type", "text/plain; charset=utf-8"),
                ("content-length", str(len(body))),
            ]
            if close:
                headers.append(("connection", "close"))
            if status == 401:
                headers.append(("www-authenticate", 'Bearer realm="meshlab-collector"'))
            reason = STATUS_TEXT.get(status, b"")
            response = h11.Response(status_code=status, headers=headers, reason=reason)
            self.writer.write(self.h11.send(response))
            self.writer.write(self.h11.send(h11.Data(data=body)))
            self.writer.write(self.h11.send(h11.EndOfMessage()))
        await self.writer.drain()


def header_value(request: h11.Request, name: bytes) -> bytes | None:
    for key, value in request.headers:
        if key == name:
            return bytes(value)
    return None
