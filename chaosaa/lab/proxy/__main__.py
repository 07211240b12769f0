"""``python -m chaosaa.lab.proxy --config FILE [--parent PID]``: the lab's link-proxy
process, as the supervisor starts it (listening sockets inherited by file descriptor)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from chaosaa.lab import _runtime
from chaosaa.lab.proxy.linkproxy import LinkProxy

log = logging.getLogger("chaosaa.lab.proxy")


async def _amain(config: dict[str, Any]) -> None:
    proxy = LinkProxy()
    await proxy.start()
    for spec in config["links"]:
        sock = _runtime.inherited_socket(int(spec["fd"]))
        await proxy.add_link(spec["name"], sock, (spec["upstreamHost"], int(spec["upstreamPort"])))
    async with _runtime.serving(proxy.admin_app(), int(config["adminFd"])):
        log.info("link proxy up with %d links", len(proxy.links))
        await _runtime.wait_for_shutdown_signal()
        await proxy.close()


def main() -> None:
    config = _runtime.child_config("chaosaa lab link proxies")
    _runtime.setup_logging("proxy")
    asyncio.run(_amain(config))


if __name__ == "__main__":
    main()
