"""The collector's HTTP/1.1 listener: one asyncio loop thread, h11 parsing, bounded everything.

Why not ``ThreadingHTTPServer``: it spends a thread per connection and its timeout is per read,
so 300 slow clients held 185 threads and a 4 MiB body could take minutes to arrive. Here:

* **connections** cost no thread; at most ``max_connections`` are open, the next are answered
  ``503`` and closed (``too_many_connections``);
* **whole-request deadline**: the TLS handshake, then the headers and body of each request, must
  arrive within ``request_timeout`` (one :func:`asyncio.timeout` around the whole request, not per
  read; from accepting a new connection, or from the first byte of a kept-alive one's next
  request), or the client gets ``408`` and is closed (``deadline_exceeded``; a new connection that
  never sends a byte counts too). A keep-alive connection idle that long after an answer is closed
  quietly. Our own parsing is outside the client's deadline; writing the answer gets its own;
* **bodies**: refused above ``max_body`` before a byte is read (``413``); the bytes being buffered
  by all connections together stay under ``buffer_budget``, taken as they arrive (a slow client
  holds only what it sent; a fast one waits for room within its deadline); a binary-mode KServe
  *request* half is drained unread, since only responses carry predictions;
* **authentication first**: the handler's token check runs on the headers, so an unauthenticated
  client never gets a body buffered;
* **workers**: parsing and joining run in a pool of ``workers`` threads, so the thread count is
  ``2 + workers`` whatever the load.

Every refusal is counted by reason in the shared :class:`~meshlab.collector.counts.RejectionCounter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import h11

from meshlab.collector.counts import RejectionCounter
from meshlab.collector.events import is_binary_request_half
from meshlab.collector.wire import ByteBudget, Connection, header_value, raw_response

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """The listener's bounds (``spec.metrics.collector`` fields of the same names)."""

    max_body: int = 4 * 1024 * 1024
    buffer_budget: int = 32 * 1024 * 1024
    request_timeout: float = 10.0
    max_connections: int = 256
    workers: int = 2


class Handler(Protocol):
    """What the listener asks of the collector."""

    def refusal(self, method: str, path: str, authorization: bytes | None) -> tuple[int, str, str]:
        """``(status, text, reason)`` to refuse the request on its headers, or ``(0, "", "")``."""
        ...

    def handle(self, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, str]:
        """Answer an accepted POST (runs in a worker thread); counts its own refusals."""
        ...

    def health(self, path: str) -> tuple[int, str] | None:
        """The answer to a GET that needs no authentication, or None."""
        ...


@dataclass
class _Answer:
    """A ready answer, or a received request for the handler (``held``: buffer bytes it holds)."""

    status: int = 0
    text: str = ""
    work: tuple[str, Mapping[str, str], bytes] | None = None
    held: int = 0


class _Refused(Exception):
    def __init__(self, status: int, text: str, reason: str) -> None:
        super().__init__(text)
        self.status, self.text, self.reason = status, text, reason


class Listener:
    """Serves ``handler`` on ``host:port`` from a background event-loop thread."""

    def __init__(
        self,
        host: str,
        port: int,
        handler: Handler,
        rejections: RejectionCounter,
        limits: Limits,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.handler = handler
        self.rejections = rejections
        self.limits = limits
        self.ssl_context = ssl_context
        self.address: tuple[str, int] | None = None
        self.open_connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stopping: asyncio.Event | None = None

    # -- lifecycle (caller's thread) ---------------------------------------------------------

    def start(self) -> tuple[str, int]:
        """Bind and serve; returns the bound address. Raises OSError if the port is taken."""
        self._pool = ThreadPoolExecutor(self.limits.workers, "meshlab-collector-worker")
        self._thread = threading.Thread(target=self._run, name="meshlab-collector", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._thread.join()
            self._pool.shutdown(wait=False)
            raise self._start_error
        assert self.address is not None
        return self.address

    def close(self) -> None:
        """Stop accepting, drop open connections, join the threads."""
        if self._loop is not None and self._stopping is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._thread = self._pool = self._loop = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # bind errors are re-raised in start()
            if not self._ready.is_set():
                self._start_error = exc
        finally:
            self._ready.set()
            loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        self._budget = ByteBudget(self.limits.buffer_budget)
        tasks: set[asyncio.Task[None]] = set()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await self._serve(reader, writer)
            finally:
                tasks.discard(task)

        server = await asyncio.start_server(
            on_connect, self.host, self.port, backlog=min(self.limits.max_connections, 1024)
        )
        sockname = server.sockets[0].getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))
        self._ready.set()
        async with server:
            await self._stopping.wait()
            server.close()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- per connection (loop thread) ----------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open_connections >= self.limits.max_connections:
            self.rejections.count("too_many_connections")
            with contextlib.suppress(Exception):
                if self.ssl_context is None:
                    writer.write(raw_response(503, "too many connections; retry later"))
                    await asyncio.wait_for(writer.drain(), 1.0)
            writer.close()
            return
        self.open_connections += 1
        try:
            if self.ssl_context is not None and not await self._handshake(writer):
                return
            conn = Connection(reader, writer)
            while await self._cycle(conn):
                conn.h11.start_next_cycle()
                conn.got_bytes = False
                conn.answered += 1
        except (ConnectionError, OSError, asyncio.IncompleteReadError, h11.LocalProtocolError):
            pass
        except Exception:  # a bug must cost one connection, never the listener
            log.warning("collector: connection failed", exc_info=True)
        finally:
            self.open_connections -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _handshake(self, writer: asyncio.StreamWriter) -> bool:
        assert self.ssl_context is not None
        try:
            await writer.start_tls(
                self.ssl_context, ssl_handshake_timeout=self.limits.request_timeout
            )
        except TimeoutError:
            self.rejections.count("deadline_exceeded")
            return False
        except (ssl.SSLError, OSError, ConnectionError):
            self.rejections.count("tls_handshake_failed")
            return False
        return True

    async def _cycle(self, conn: Connection) -> bool:
        """One request and its answer; True to keep the connection for the next one."""
        try:
            if conn.answered:  # kept alive: the next request's deadline starts at its first byte
                try:
                    async with asyncio.timeout(self.limits.request_timeout):
                        await conn.first_bytes()
                except TimeoutError:
                    return False  # idle that long: closed quietly, as any keep-alive server does
            async with asyncio.timeout(self.limits.request_timeout):  # the client's whole request
                event = await conn.next_event()
                if not isinstance(event, h11.Request):
                    return False  # closed (or paused) between requests
                answer = await self._answer(conn, event)
            # Ours: parsing and joining (bounded by maxBody and the pool), then the answer, which
            # a client that does not read gets another requestTimeout to take.
            status, text, close = await self._finish(answer)
            async with asyncio.timeout(self.limits.request_timeout):
                await conn.send(status, text, close)
            return not close and conn.h11.our_state is conn.h11.their_state is h11.DONE
        except TimeoutError:
            if conn.got_bytes or not conn.answered:  # a new connection that stays silent counts
                self.rejections.count("deadline_exceeded")
                with contextlib.suppress(Exception):
                    conn.writer.write(raw_response(408, "request not received in time"))
            return False
        except h11.RemoteProtocolError as exc:
            if conn.h11.their_state is h11.ERROR and conn.reader.at_eof():
                self.rejections.count("closed_early")  # hung up mid-request: nothing to answer
                return False
            self.rejections.count("bad_http")
            status = exc.error_status_hint
            with contextlib.suppress(Exception):
                conn.writer.write(raw_response(status, "malformed HTTP request"))
            return False
        except _Refused as refused:
            self.rejections.count(refused.reason)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await conn.send(refused.status, refused.text, close=True)
            return False

    async def _answer(self, conn: Connection, request: h11.Request) -> _Answer:
        method = request.method.decode("ascii", "replace")
        path = request.target.decode("latin-1").split("?", 1)[0].rstrip("/") or "/"
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers}
        if method == "GET":
            health = self.handler.health(path)
            if health is not None and int(headers.get("content-length", "0")) == 0:
                await self._read_body(conn, None)  # the EndOfMessage, so the connection is reusable
                return _Answer(*health)
        status, text, reason = self.handler.refusal(
            method, path, header_value(request, b"authorization")
        )
        if status:
            raise _Refused(status, text, reason)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise _Refused(
                411, "send a content-length; chunked bodies are not accepted", "length_required"
            )
        length = int(headers.get("content-length", "0"))
        drain = is_binary_request_half(headers)
        limit = self.limits.max_body * (64 if drain else 1)
        if length > limit:
            raise _Refused(413, f"body above {limit} bytes", "body_too_large")
        if conn.h11.client_is_waiting_for_100_continue:
            conn.writer.write(conn.h11.send(h11.InformationalResponse(status_code=100, headers=[])))
        if drain:
            await self._read_body(conn, None)
            return _Answer(work=(path, headers, b""))
        buffer = bytearray()
        try:
            await self._read_body(conn, buffer)
        except BaseException:
            await self._budget.give_back(len(buffer))
            raise
        size, body = len(buffer), bytes(buffer)
        del buffer
        return _Answer(work=(path, headers, body), held=size)

    async def _finish(self, answer: _Answer) -> tuple[int, str, bool]:
        """Run the handler on a received request (in the pool); give its buffer bytes back."""
        if answer.work is None:
            return answer.status, answer.text, False
        try:
            loop = asyncio.get_running_loop()
            assert self._pool is not None
            status, text = await loop.run_in_executor(self._pool, self.handler.handle, *answer.work)
            return status, text, False
        finally:
            await self._budget.give_back(answer.held)

    async def _read_body(self, conn: Connection, into: bytearray | None) -> None:
        while True:
            event = await conn.next_event()
            if isinstance(event, h11.Data):
                if into is not None:
                    await self._budget.take(len(event.data))
                    into += event.data
            elif isinstance(event, h11.EndOfMessage):
                return
            else:
                raise ConnectionError("connection closed mid-body")
