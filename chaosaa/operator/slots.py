"""Run slots: at most ``--max-concurrent-runs`` runs execute at once; the others wait."""

from __future__ import annotations

import asyncio


class RunSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._running = 0
        self._freed = asyncio.Condition()

    def try_take(self) -> bool:
        if self._running < self.limit:
            self._running += 1
            return True
        return False

    async def wait(self) -> None:
        """Until a slot is free, then take it."""
        async with self._freed:
            await self._freed.wait_for(self.try_take)

    def release(self) -> None:
        self._running -= 1

        async def notify() -> None:
            async with self._freed:
                self._freed.notify(1)

        asyncio.get_running_loop().create_task(notify())
