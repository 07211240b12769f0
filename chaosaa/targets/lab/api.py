"""The lab supervisor's HTTP API, as the lab target and its fault handlers call it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from chaosaa.errors import TargetUnreachableError

if TYPE_CHECKING:
    import aiohttp

#: seconds for every call to the lab
_HTTP_TIMEOUT = 10.0


class HttpStatusError(Exception):
    """The lab answered, with a status the caller did not expect."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class LabApi:
    """One HTTP session to a running lab, and the status document that names its URLs."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._status: dict[str, Any] | None = None

    def open(self) -> None:
        # imported here: `chaosaa validate` and `plan` load the target but never call it
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(_HTTP_TIMEOUT))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def status(self) -> dict[str, Any]:
        """The lab's last status document (router, prometheus, regions, links, ...)."""
        if self._status is None:
            raise TargetUnreachableError("lab target is not open")
        return self._status

    @status.setter
    def status(self, value: dict[str, Any]) -> None:
        self._status = value

    @property
    def known(self) -> bool:
        return self._status is not None

    @property
    def supervisor(self) -> str:
        return str(self.status["supervisor"])

    async def call(
        self, method: str, url: str, body: Any = None, ok: tuple[int, ...] = (200, 201, 202)
    ) -> Any:
        import aiohttp

        if self._session is None:
            raise TargetUnreachableError("lab target is not open")
        try:
            async with self._session.request(method, url, json=body) as resp:
                text = await resp.text()
                data = json.loads(text) if text else None
                if resp.status not in ok:
                    detail = data.get("error") if isinstance(data, dict) else text
                    raise HttpStatusError(resp.status, str(detail))
                return data
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            why = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                why = f"no answer within {_HTTP_TIMEOUT:g}s"
            raise TargetUnreachableError(f"lab {method} {url}: {why}") from exc

    async def supervisor_call(
        self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201, 202)
    ) -> Any:
        return await self.call(method, f"{self.supervisor}{path}", body, ok)
