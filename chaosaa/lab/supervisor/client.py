"""The supervisor's HTTP client for the lab's own processes (health checks, the proxy's
admin API): one session, opened when the supervisor runs."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import aiohttp

#: what a request to a process that is down, stopped or slow raises
UNREACHABLE = (aiohttp.ClientError, OSError, TimeoutError)


class Http:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        """(status, JSON body, or the text if it is not JSON); connection errors raise."""
        assert self._session is not None
        async with self._session.request(method, url, json=body) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text) if text else None
            except ValueError:
                return r.status, text

    async def check(self, url: str, limit: float = 0.5) -> tuple[bool, Any]:
        """(True, JSON body or None) for a 200 within ``limit`` seconds, else (False, why)."""
        assert self._session is not None
        try:
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=limit)) as r:
                body = await r.read()
                if r.status != 200:
                    return False, f"HTTP {r.status}"
                try:
                    return True, json.loads(body)
                except ValueError:
                    return True, None
        except TimeoutError:
            return False, f"no answer within {limit}s"
        except (aiohttp.ClientError, OSError) as exc:
            return False, f"{type(exc).__name__}: {exc}"


class ProxyAdmin:
    """The link proxy's admin API (``chaosaa.lab.proxy.admin``)."""

    def __init__(self, http: Http, url: str) -> None:
        self.http = http
        self.url = url

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await self.http.call(method, f"{self.url}{path}", body)

    async def get(self, path: str) -> dict[str, Any] | None:
        """A GET's JSON object, or None if the proxy did not answer it."""
        try:
            status, body = await self.call("GET", path)
        except UNREACHABLE:
            return None
        return body if status == 200 and isinstance(body, dict) else None

    async def delete_quietly(self, path: str) -> None:
        """DELETE, ignoring a proxy that does not answer (404 = already expired)."""
        with contextlib.suppress(*UNREACHABLE):
            await self.call("DELETE", path)
