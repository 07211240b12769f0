"""A lean HTTP/1.1 client for open-loop load: asyncio protocols, httptools' parser.

Why not aiohttp here: its per-request machinery (a task, a request and a response object,
header multidicts, stream readers) costs ~150 µs of CPU; this costs ~25 µs on uvloop. What
it does is what an open-loop probe needs and no more:

- one request in flight per connection (no pipelining: a slow answer must not delay the
  next request); idle connections are reused most-recent first, new ones opened on demand;
- responses parsed by httptools (llhttp, Node's parser); only the status, one header the
  caller names and, if asked, the body are kept;
- every request has a deadline; all deadlines share one timer (requests start in time
  order, so they expire in order); an expired request's connection is aborted;
- a request that fails on a *reused* connection before any byte of the answer arrived is
  sent once more on a new connection (the server closed the idle connection as the
  request left: Go's net/http does the same), so a keep-alive race is never counted as an
  outage; on a new connection every failure counts.

Callbacks, not tasks: ``send`` returns at once and ``done(exchange)`` is called exactly once
with ``status``/``header``/``body`` filled in, or ``error`` set to ``timeout``,
``connect``, ``reset`` or ``protocol``.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

#: how often at most the deadline timer fires while requests hang (bounds timeout lateness)
_REAP_GRANULARITY = 0.001
_CONNECT_ERRORS = (OSError, ssl.SSLError)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a connection goes: ``http(s)://host:port``."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port)

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


class Exchange:
    """One request and, once ``done`` is called, its outcome."""

    __slots__ = (
        "attempts",
        "body",
        "conn",
        "connecting",
        "context",
        "data",
        "deadline",
        "error",
        "finished",
        "head",
        "header",
        "origin",
        "status",
    )

    def __init__(self, origin: int, data: bytes, head: bool, context: object) -> None:
        self.origin = origin
        self.data = data
        self.head = head
        self.context = context  # the caller's, handed back untouched
        self.status = 0
        self.header: bytes | None = None
        self.body = b""
        self.error: str | None = None
        self.finished = False
        self.attempts = 0
        self.deadline = 0.0
        self.conn: _Connection | None = None
        self.connecting: asyncio.Task[None] | None = None


class HttpClient:
    """Sends requests to a fixed list of origins; see the module docstring."""

    def __init__(
        self,
        origins: list[Origin],
        done: Callable[[Exchange], None],
        *,
        timeout: float,
        header: str | None = None,
        read_body: bool = False,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._origins = origins
        self._done = done
        self.timeout = timeout
        self._header = header.lower().encode("latin-1") if header else None
        self._read_body = read_body
        self._idle: list[list[_Connection]] = [[] for _ in origins]
        self._ssl: ssl.SSLContext | None = None
        self._deadlines: deque[Exchange] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._connections: set[_Connection] = set()
        self._connects: set[asyncio.Task[None]] = set()
        self.in_flight = 0
        self.closed = False

    # ------------------------------------------------------------------ sending

    def send(self, origin: int, data: bytes, *, head: bool = False, context: object = None) -> None:
        """Send ``data`` (a complete request) to ``origins[origin]``; ``done`` follows."""
        x = Exchange(origin, data, head, context)
        x.deadline = time.monotonic() + self.timeout
        self.in_flight += 1
        self._deadlines.append(x)
        if self._timer is None:
            self._timer = self._loop.call_at(self._loop_time(x.deadline), self._reap)
        self._dispatch(x, reuse=True)

    def _dispatch(self, x: Exchange, *, reuse: bool) -> None:
        x.attempts += 1
        if reuse:
            idle = self._idle[x.origin]
            while idle:
                conn = idle.pop()
                if conn.alive:
                    conn.start(x)
                    return
        task = self._loop.create_task(self._connect(x))
        x.connecting = task
        self._connects.add(task)
        task.add_done_callback(self._connects.discard)

    async def _connect(self, x: Exchange) -> None:
        origin = self._origins[x.origin]
        try:
            _transport, conn = await self._loop.create_connection(
                lambda: _Connection(self, x.origin),
                origin.host,
                origin.port,
                ssl=self._ssl_context() if origin.scheme == "https" else None,
            )
        except _CONNECT_ERRORS:
            x.connecting = None
            self.finish(x, "connect")
            return
        x.connecting = None
        if x.finished:  # timed out while connecting: keep the connection for later
            self.release(conn)
        else:
            conn.start(x)

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    # ------------------------------------------------------------------ outcomes

    def finish(self, x: Exchange, error: str | None = None) -> None:
        if x.finished:
            return
        x.finished = True
        x.error = error
        conn, x.conn = x.conn, None
        if conn is not None:
            conn.exchange = None
        self.in_flight -= 1
        self._done(x)

    def retry_or_fail(self, x: Exchange, conn: _Connection) -> None:
        """``conn`` died before any byte of ``x``'s answer arrived."""
        if conn.served and x.attempts == 1 and not self.closed:
            x.conn = None
            self._dispatch(x, reuse=False)
        else:
            self.finish(x, "reset")

    def release(self, conn: _Connection) -> None:
        if conn.alive and not self.closed:
            self._idle[conn.origin].append(conn)
        else:
            conn.close()

    def _loop_time(self, when: float) -> float:
        return self._loop.time() + (when - time.monotonic())

    def _reap(self) -> None:
        self._timer = None
        now = time.monotonic()
        queue = self._deadlines
        while queue:
            x = queue[0]
            if x.finished:
                queue.popleft()
            elif x.deadline <= now:
                queue.popleft()
                self._expire(x)
            else:
                break
        if queue:
            when = max(queue[0].deadline, now + _REAP_GRANULARITY)
            self._timer = self._loop.call_at(self._loop_time(when), self._reap)

    def _expire(self, x: Exchange) -> None:
        conn = x.conn
        task = x.connecting
        self.finish(x, "timeout")
        if conn is not None:
            conn.abort()  # the answer may still come; this connection cannot be reused
        if task is not None:
            x.connecting = None
            task.cancel()

    # ------------------------------------------------------------------ shutdown

    def pending(self) -> list[Exchange]:
        return [x for x in self._deadlines if not x.finished]

    async def close(self) -> None:
        """Close every connection; requests still in flight are abandoned (not finished)."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for x in self._deadlines:
            x.finished = True
        self._deadlines.clear()
        for task in list(self._connects):
            task.cancel()
        if self._connects:
            await asyncio.wait(set(self._connects), timeout=2.0)
        for conn in list(self._connections):
            conn.abort()
        for idle in self._idle:
            idle.clear()
        self.in_flight = 0


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one exchange at a time."""

    def __init__(self, client: HttpClient, origin: int) -> None:
        self.client = client
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.alive = True
        self.served = False  # has answered a request before: a keep-alive race is possible
        self.received = False  # any byte of the current answer arrived
        self.headers_done = False
        self.framed = False  # the answer has Content-Length or chunked encoding
        self.body: list[bytes] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        self.client._connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.exchange is None:
            self.abort()  # an answer nobody asked for
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            x = self.exchange
            self.abort()
            if x is not None:
                self.client.finish(x, "protocol")

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost settles the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self.client._connections.discard(self)
        x = self.exchange
        if x is None or x.finished:
            return
        if self.headers_done and not self.framed and not x.head:
            self._complete(x, keep=False)  # a body delimited by the end of the connection
        elif not self.received:
            self.client.retry_or_fail(x, self)
        else:
            self.client.finish(x, "reset")

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == self.client._header and self.exchange is not None:
            self.exchange.header = value
        elif lower == b"content-length" or lower == b"transfer-encoding":
            self.framed = True

    def on_headers_complete(self) -> None:
        self.headers_done = True
        x = self.exchange
        status = self.parser.get_status_code()
        if x is not None and x.head and status >= 200:
            # llhttp does not know the request was HEAD and would wait for a body
            self.parser = httptools.HttpResponseParser(self)
            self._complete(x, keep=True, status=status)

    def on_body(self, body: bytes) -> None:
        if self.client._read_body:
            self.body.append(body)

    def on_message_complete(self) -> None:
        x = self.exchange
        if x is None:
            return
        status = self.parser.get_status_code()
        if status < 200:  # 1xx: informational, the real answer follows
            self._reset()
            return
        self._complete(x, keep=self.parser.should_keep_alive(), status=status)

    # internals
    def start(self, x: Exchange) -> None:
        self.exchange = x
        x.conn = self
        self._reset()
        assert self.transport is not None
        self.transport.write(x.data)

    def _reset(self) -> None:
        self.received = False
        self.headers_done = False
        self.framed = False
        self.body = []

    def _complete(self, x: Exchange, *, keep: bool, status: int | None = None) -> None:
        x.status = self.parser.get_status_code() if status is None else status
        if self.body:
            x.body = b"".join(self.body)
        self.served = True
        self.client.finish(x)
        if keep and self.alive:
            self.client.release(self)
        else:
            self.close()

    def close(self) -> None:
        self.alive = False
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.alive = False
        if self.transport is not None:
            self.transport.abort()
