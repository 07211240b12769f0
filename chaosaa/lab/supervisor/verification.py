"""``GET /faults/{id}/verify``: is a fault in place (active) or gone (reverted)? The proxy's
read-back of the fault's conditions, the frozen processes' state, probes through the links
(see :mod:`chaosaa.lab.verify`), and for node rules in namespaced regions their read-back
(nft table, tc qdiscs) and a connection attempt from inside the namespace, gathered
concurrently."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from chaosaa.lab.faults import resets_connections
from chaosaa.lab.supervisor.client import ProxyAdmin
from chaosaa.lab.supervisor.config import Layout
from chaosaa.lab.supervisor.netrules import AppliedRules
from chaosaa.lab.supervisor.processes import is_stopped
from chaosaa.lab.supervisor.registry import ActiveFault, FaultApiError, FaultRegistry
from chaosaa.lab.verify import ANSWER_TIMEOUT, HOLD_WINDOW, Check, probe_checks, readback_checks


@dataclass(frozen=True)
class _Surroundings:
    #: (link, condition type) pairs that other active faults act on
    shared: set[tuple[str, str]]
    #: links whose after-revert probe would say nothing about this fault
    unprobeable: set[str]
    #: links another active fault resets (a hang there shows as a reset)
    dropped: set[str]


class Verifier:
    def __init__(self, registry: FaultRegistry, proxy: ProxyAdmin, layout: Layout) -> None:
        self.registry = registry
        self.proxy = proxy
        self.layout = layout
        self.link_addresses = layout.link_addresses

    async def verify(self, fid: str) -> dict[str, Any]:
        fault = self.registry.find(fid)
        active = fault.state == "active"
        around = self._surroundings(fid)
        conditions, links, process, probes, rules = await asyncio.gather(
            self.proxy.get("/conditions"),
            self.proxy.get("/links"),
            self._process_checks(fault, active),
            probe_checks(
                fault.plan.conditions,
                self.link_addresses,
                active=active,
                skip=around.unprobeable,
                dropped=around.dropped,
                protocols=self.layout.link_protocols,
            ),
            self._rule_checks(fault, active),
        )
        checks = readback_checks(
            zip(fault.condition_ids, fault.plan.conditions, strict=False),
            {str(c["id"]): c for c in conditions["conditions"]} if conditions else {},
            {str(link["name"]): link["state"] for link in links["links"]} if links else None,
            active=active,
            shared=around.shared,
        )
        if fault.condition_ids and not (conditions and links):
            checks.append({"check": "link proxy answers", "ok": False})
        checks += process + probes + rules
        return {
            "id": fid,
            "state": fault.state,
            "verified": all(c["ok"] for c in checks),
            "checks": checks,
        }

    def _surroundings(self, fid: str) -> _Surroundings:
        """What the other active faults do to the links, so that verifying one fault does
        not mistake another fault's effect for its own."""
        others = [f for f in self.registry.faults.values() if f.id != fid]
        shared = {
            (t["link"], c["type"]) for f in others for c in f.plan.conditions for t in c["targets"]
        }
        stopped = self.registry.stopped_regions() | self._crashed_regions()
        stopped_links = {link for link in self.link_addresses if link.split(">", 1)[1] in stopped}
        dropped = {
            t["link"]
            for f in others
            for c in f.plan.conditions
            if resets_connections(c)
            for t in c["targets"]
        }
        return _Surroundings(shared, {link for link, _ in shared} | stopped_links, dropped)

    def _crashed_regions(self) -> set[str]:
        """Regions whose node process is gone: a link to them answers with a reset
        whatever any fault does, so a probe through it says nothing about a revert."""
        crashed = set()
        for region in self.registry.regions:
            try:
                self.registry.pids(region)
            except FaultApiError:
                crashed.add(region)
        return crashed

    async def _process_checks(self, fault: ActiveFault, active: bool) -> list[Check]:
        checks = []
        crashed = self._crashed_regions()
        for region in fault.plan.stop_regions:
            # a node that crashed is not stopped: nothing is left to thaw there
            pids = [] if region in crashed else self.registry.pids(region)
            stopped = bool(pids) and all([await is_stopped(pid) for pid in pids])
            checks.append(
                {"check": f"node {region} stopped", "ok": stopped == active, "stopped": stopped}
            )
        return checks

    async def _rule_checks(self, fault: ActiveFault, active: bool) -> list[Check]:
        """Node rules: read back in the namespace, and, for a cut, a connection from inside
        the source region to each peer that gets no answer (or, after the revert, does)."""
        others = [f for f in self.registry.faults.values() if f.id != fault.id]
        busy = {applied.region for f in others for applied in f.rules}
        checks = await asyncio.gather(
            *(self._rule_check(applied, active, busy) for applied in fault.rules)
        )
        return [c for group in checks for c in group]

    async def _rule_check(self, applied: AppliedRules, active: bool, busy: set[str]) -> list[Check]:
        spaces = self.registry.namespaces
        rule, region = applied.rules.fault, applied.region
        ports = self.layout.system.replication_ports()
        ok = await (spaces.in_place(applied) if active else spaces.removed(applied))
        word = "in place" if active else "removed"
        checks: list[Check] = [{"check": f"node rules {rule.key} in {region} {word}", "ok": ok}]
        if not rule.uses_nft or rule.type == "packetLoss" or not ports:
            return checks  # a rate or a probability: read back only
        if not active and region in busy:
            return checks  # another fault's rules there would hold the probe
        window = HOLD_WINDOW if active else ANSWER_TIMEOUT
        expect = "held" if active else "connected"
        ips = [peer.split("/", 1)[0] for peer in rule.peers]
        seen = await asyncio.gather(*(spaces.reach(region, ip, ports[0], window) for ip in ips))
        for ip, outcome in zip(ips, seen, strict=True):
            checks.append(
                {
                    "check": f"{region} -> {ip}:{ports[0]} {'cut' if active else 'open'}",
                    "ok": outcome == expect,
                    "probe": {"outcome": outcome},
                }
            )
        return checks
