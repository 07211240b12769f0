"""The data plane: proxied connections and the streams that carry their bytes.

A :class:`Connection` joins a client socket and an upstream socket (each a :class:`Side`)
with two streams, ``up`` (client to upstream) and ``down``. The link a connection belongs
to is seen through :class:`LinkPort`: the state its streams consult before every write,
its token buckets, and its bookkeeping of connections.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Protocol

from chaosaa.lab import _runtime
from chaosaa.lab.proxy.conditions import CLEAR, Direction, StreamState
from chaosaa.lab.proxy.shaping import Retransmission, TokenBucket, due_time

#: read buffer per socket: large reads mean few callbacks per megabyte
_CHUNK = 256 * 1024
#: first read buffer of a socket; it grows (x4) while reads fill it
_FIRST_CHUNK = 16 * 1024
#: queued bytes per stream direction beyond which the source is no longer read
_QUEUE_BYTES = 2 * 1024 * 1024
#: write-buffer high-water mark per socket (asyncio's default, 64 KiB, pauses too early)
_WRITE_HIGH = 512 * 1024


class LinkPort(Protocol):
    """What a connection and its streams need of their link (``links.Link``)."""

    #: bytes forwarded per direction
    sent: dict[Direction, int]

    def state(self, direction: Direction) -> StreamState:
        """The combined state of the live conditions on a direction of the link."""
        ...

    async def wait_change(self, limit: float) -> None:
        """Return when the link's conditions change, or after ``limit`` seconds."""
        ...

    def bucket(self, rate: float, direction: Direction) -> TokenBucket: ...

    def opened(self, conn: Connection) -> None: ...

    def ended(self, conn: Connection) -> None: ...

    async def open_upstream(self, conn: Connection) -> None:
        """Admit ``conn`` under the link's conditions, then connect its upstream side."""
        ...


class _Stream:
    """One direction of a proxied connection: bytes read on one socket, written on the other.

    Fast path: while no condition applies to the link direction and nothing is queued, a
    chunk is written to the destination in the callback that read it (no task, no copy).
    Otherwise chunks are stamped with their due time and queued, and a pump task delivers
    them in order. Every write, on either path, directly follows (with no suspension in
    between) a read of the link's current state, so a condition is enforced on every byte
    forwarded after it was installed; data already handed to the kernel is on the wire.
    """

    def __init__(self, conn: Connection, direction: Direction) -> None:
        self.conn = conn
        self.link = conn.link
        self.direction = direction
        self.sent = conn.link.sent
        self.queue: deque[tuple[float, bytes | None]] = deque()
        self.queued = 0
        self.pump: asyncio.Task[None] | None = None
        self.dst_paused = False
        self.read_paused = False
        self.done = False
        self._resumed: asyncio.Future[None] | None = None
        self._last_due = 0.0
        self._retransmission = Retransmission()

    @property
    def src(self) -> asyncio.Transport | None:
        return self.conn.client if self.direction == "up" else self.conn.upstream

    @property
    def dst(self) -> asyncio.Transport | None:
        return self.conn.upstream if self.direction == "up" else self.conn.client

    def feed(self, data: memoryview) -> bool:
        """Forward or queue a chunk; True if the destination kept a reference to ``data``."""
        dst = self.dst
        if (
            dst is not None
            and self.pump is None
            and not self.queue
            and self.link.state(self.direction) is CLEAR
        ):
            dst.write(data)
            self.sent[self.direction] += len(data)
            return dst.get_write_buffer_size() > 0
        self._enqueue(bytes(data))
        return False

    def feed_eof(self) -> None:
        if (
            self.dst is not None
            and self.pump is None
            and not self.queue
            and self.link.state(self.direction) is CLEAR
        ):
            self._write_eof()
        else:
            self._enqueue(None)

    def connected(self) -> None:
        """The destination is connected: deliver what arrived meanwhile (without a pump
        task when no condition applies, which is what keeps connection setup cheap)."""
        dst = self.dst
        assert dst is not None
        while self.queue and self.link.state(self.direction) is CLEAR:
            due, data = self.queue[0]
            if due > time.monotonic():
                break
            self.queue.popleft()
            if data is None:
                self._write_eof()
                break
            self.queued -= len(data)
            dst.write(data)
            self.sent[self.direction] += len(data)
        self._flow()
        self._kick()

    def dst_pause(self, paused: bool) -> None:
        self.dst_paused = paused
        if not paused and self._resumed is not None and not self._resumed.done():
            self._resumed.set_result(None)
        self._flow()

    def _enqueue(self, data: bytes | None) -> None:
        now = time.monotonic()
        due = due_time(self.link.state(self.direction), now) if data else now
        due = max(due, self._last_due)  # never reorder the byte stream
        self._last_due = due
        self.queue.append((due, data))
        self.queued += len(data or b"")
        self._flow()
        self._kick()

    def _kick(self) -> None:
        if self.pump is None and self.queue and self.dst is not None and not self.conn.closed:
            self.pump = asyncio.get_running_loop().create_task(self._run())

    def _flow(self) -> None:
        """Stop reading the source while the destination or the queue is full."""
        src = self.src
        want = self.dst_paused or self.queued > _QUEUE_BYTES
        if src is None or want == self.read_paused or src.is_closing():
            return
        self.read_paused = want
        if want:
            src.pause_reading()
        else:
            src.resume_reading()

    async def _run(self) -> None:
        """Deliver queued chunks when due, in order, under the link's current conditions."""
        try:
            while self.queue and not self.conn.closed:
                due, data = self.queue.popleft()
                self.queued -= len(data or b"")
                self._flow()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not await self._forward(data):
                    return
        except (ConnectionError, OSError):
            self.conn.abort()
        finally:
            self.pump = None

    async def _gate(self) -> StreamState | None:
        """The current state once no blackhole holds this direction; None if cut."""
        while not self.conn.closed:
            st = self.link.state(self.direction)
            if st.blackhole is None:
                return st
            if st.blackhole == "drop":
                self.conn.abort()
                return None
            await self.link.wait_change(1.0)
        return None

    async def _forward(self, data: bytes | None) -> bool:
        st = await self._gate()
        if st is None:
            return False
        if data is None:
            self._write_eof()
            return True
        if stall := self._retransmission.stall(st.loss):
            await asyncio.sleep(stall)
        view = memoryview(data)
        sent = 0
        while sent < len(view):
            st = await self._gate()  # conditions may have changed while we waited
            if st is None:
                return False
            n = len(view) - sent
            if st.rate > 0:
                bucket = self.link.bucket(st.rate, self.direction)
                n = min(n, bucket.piece())
                if wait := bucket.take_now(n):
                    await asyncio.sleep(wait)
                    continue
            dst = self.dst
            assert dst is not None
            dst.write(view[sent : sent + n])
            sent += n
            self.sent[self.direction] += n
            await self._drain()
        return True

    async def _drain(self) -> None:
        while self.dst_paused and not self.conn.closed:
            self._resumed = asyncio.get_running_loop().create_future()
            await self._resumed

    def _write_eof(self) -> None:
        dst = self.dst
        if dst is not None and not dst.is_closing() and dst.can_write_eof():
            dst.write_eof()
        self.done = True
        self.conn.stream_done()


class Side(asyncio.BufferedProtocol):
    """One socket of a proxied connection: what it reads feeds ``reads``; its write
    buffer's back-pressure pauses ``writes``' source."""

    def __init__(self, conn: Connection, *, client: bool) -> None:
        self.conn = conn
        self.client = client
        self.reads = conn.up if client else conn.down
        self.writes = conn.down if client else conn.up
        # Start small (most connections carry a request and a response) and grow while
        # reads fill the buffer: a zeroed 256 KiB per socket would cost more than the
        # round trip on short connections.
        self._view = memoryview(bytearray(_FIRST_CHUNK))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.set_write_buffer_limits(high=_WRITE_HIGH)
        if self.client:
            self.conn.client_made(transport)
        else:
            self.conn.upstream_made(transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        size = len(self._view)
        if self.reads.feed(self._view[:nbytes]) or (nbytes == size and size < _CHUNK):
            # Grow, or the transport still references the buffer (Python >= 3.12 keeps
            # memoryviews of unsent data): read into a new one.
            self._view = memoryview(bytearray(min(_CHUNK, size * 4 if nbytes == size else size)))

    def eof_received(self) -> bool:
        self.reads.feed_eof()
        return True  # half-close: keep the other direction open

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.lost(self.client, exc)

    def pause_writing(self) -> None:
        self.writes.dst_pause(True)

    def resume_writing(self) -> None:
        self.writes.dst_pause(False)


class Connection:
    def __init__(self, link: LinkPort) -> None:
        self.link = link
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.up = _Stream(self, "up")
        self.down = _Stream(self, "down")
        self.task: asyncio.Task[None] | None = None
        self.closed = False  # nothing more is forwarded (reset, or closing after EOFs)
        self._reset = False
        self._lost: set[bool] = set()  # sides (client=True) whose socket is gone
        self._ended = False

    def client_made(self, transport: asyncio.Transport) -> None:
        self.client = transport
        self.link.opened(self)
        self.task = asyncio.get_running_loop().create_task(self.link.open_upstream(self))

    def upstream_made(self, transport: asyncio.Transport) -> None:
        if self.closed:  # cut while we were connecting
            _runtime.reset(transport)
            return
        self.upstream = transport
        self.up.connected()
        self.down.connected()

    def stream_done(self) -> None:
        """Both directions delivered their EOF: close both sockets (after pending data)."""
        if self.up.done and self.down.done and not self.closed:
            self.closed = True
            for t in (self.client, self.upstream):
                if t is not None:
                    t.close()

    def abort(self) -> None:
        """Reset both sides now (RST, not FIN) and drop whatever is queued."""
        if self._reset:
            return
        self._reset = self.closed = True
        for t in (self.client, self.upstream):
            if t is not None:
                _runtime.reset(t)
        self._cancel_tasks()

    def lost(self, client: bool, exc: Exception | None) -> None:
        self._lost.add(client)
        if exc is not None or not self.closed:
            # A reset, a failed write, or a close we did not ask for: cut the other side
            # too, without flushing queued data to it.
            self.abort()
        if True in self._lost and (self.upstream is None or False in self._lost):
            self._end()

    def _cancel_tasks(self) -> None:
        current = asyncio.current_task()
        for task in (self.task, self.up.pump, self.down.pump):
            if task is not None and task is not current:
                task.cancel()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._cancel_tasks()
            self.link.ended(self)
