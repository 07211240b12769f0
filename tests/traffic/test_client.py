"""The lean HTTP client against real servers on 127.0.0.1: framing, keep-alive, failures.

Raw asyncio servers play the odd HTTP peers (a body that ends with the connection, a
server that drops an idle keep-alive connection just as a request arrives)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from chaosaa.traffic.client import Exchange, HttpClient, Origin
from tests.traffic.service import PlainService

pytestmark = pytest.mark.timeout(30)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[str]:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(closing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def exchange(
    url: str,
    path: str = "/",
    *,
    method: str = "GET",
    deadline: float = 2.0,
    header: str | None = None,
    read_body: bool = True,
) -> Exchange:
    """One request through a new client; returns its exchange once done."""
    done: asyncio.Future[Exchange] = asyncio.get_running_loop().create_future()
    origin = Origin.of(url)
    client = HttpClient(
        [origin], done.set_result, timeout=deadline, header=header, read_body=read_body
    )
    data = f"{method} {path} HTTP/1.1\r\nHost: {origin.host_header}\r\n\r\n".encode()
    client.send(0, data, head=method == "HEAD")
    try:
        async with asyncio.timeout(deadline + 5):
            return await done
    finally:
        await client.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def test_a_body_that_ends_with_the_connection_is_read_whole() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Served-By: ap\r\n\r\n" + b"x" * 10_000)
        await writer.drain()
        writer.close()

    async with raw_server(handler) as url:
        x = await exchange(url, header="x-served-by")
    assert (x.error, x.status, x.header, len(x.body)) == (None, 200, b"ap", 10_000)


async def test_chunked_bodies_and_named_headers_from_a_real_server() -> None:
    async with PlainService("eu", region_header="X-Served-By") as svc:
        x = await exchange(svc.url, "/chunked", header="X-SERVED-BY")
    assert (x.error, x.status, x.header, x.body) == (None, 200, b"eu", b'{"status": "ok"}')


async def test_head_completes_on_the_headers_and_the_connection_is_reused() -> None:
    async with PlainService("eu") as svc:
        queue: asyncio.Queue[Exchange] = asyncio.Queue()
        client = HttpClient([Origin.of(svc.url)], queue.put_nowait, timeout=2.0)
        data = f"HEAD /health HTTP/1.1\r\nHost: 127.0.0.1:{svc.port}\r\n\r\n".encode()
        results = []
        for _ in range(3):
            client.send(0, data, head=True)
            results.append(await asyncio.wait_for(queue.get(), 3))
        await client.close()
    assert [(x.error, x.status) for x in results] == [(None, 200)] * 3
    assert len(svc.arrivals) == 3


async def test_an_idle_connection_dropped_as_the_request_arrives_is_retried_once() -> None:
    served = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        await read_request(reader)
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await read_request(reader)  # the next request on this keep-alive connection...
        writer.transport.abort()  # ...finds the server closing it, unanswered

    async with raw_server(handler) as url:
        queue: asyncio.Queue[Exchange] = asyncio.Queue()
        client = HttpClient([Origin.of(url)], queue.put_nowait, timeout=2.0)
        data = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        results = []
        for _ in range(2):
            client.send(0, data)
            results.append(await asyncio.wait_for(queue.get(), 3))
        await client.close()
    assert [(x.error, x.status, x.attempts) for x in results] == [(None, 200, 1), (None, 200, 2)]
    assert served == 2  # the retry went to a new connection


async def test_a_new_connection_closed_without_an_answer_is_a_reset() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.transport.abort()

    async with raw_server(handler) as url:
        x = await exchange(url)
    assert (x.error, x.status, x.attempts) == ("reset", 0, 1)


async def test_garbage_is_a_protocol_error_and_silence_a_timeout() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # until the client gives up and closes

    async with raw_server(garbage) as url:
        assert (await exchange(url)).error == "protocol"
    async with raw_server(silent) as url:
        began = time.monotonic()
        x = await exchange(url, deadline=0.2)
        assert x.error == "timeout"
        assert 0.19 <= time.monotonic() - began < 1.0


async def test_a_closed_port_is_a_connect_error() -> None:
    async with raw_server(read_request) as url:  # type: ignore[arg-type]
        pass  # the port is closed again
    assert (await exchange(url)).error == "connect"
