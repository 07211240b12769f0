"""Fault types, one module each: model, validation, scope and description.

Adding a fault type: a module here with a ``FaultBase`` subclass (its ``type`` literal,
fields, ``scope()`` and ``describe()``), its entry in ``Fault`` below, and a handler in
each target that supports it (``chaosaa.targets``). A target without a handler refuses
the fault before anything is touched.
"""

from __future__ import annotations

from typing import Annotated, get_args

from pydantic import Field

from chaosaa.spec.faults.bandwidth import BandwidthFault
from chaosaa.spec.faults.base import DirectedLink, FaultBase, FaultScope, RegionsOrLinks
from chaosaa.spec.faults.blackhole import BlackholeFault
from chaosaa.spec.faults.latency import LatencyFault
from chaosaa.spec.faults.packet_loss import PacketLossFault
from chaosaa.spec.faults.region_down import RegionDownFault
from chaosaa.spec.faults.replication_lag import ReplicationLagFault

Fault = Annotated[
    BlackholeFault
    | LatencyFault
    | ReplicationLagFault
    | RegionDownFault
    | BandwidthFault
    | PacketLossFault,
    Field(discriminator="type"),
]
#: every fault model, in the order of ``Fault``
FAULT_MODELS: tuple[type[FaultBase], ...] = get_args(get_args(Fault)[0])
#: the ``type`` names, e.g. ``blackhole``
FAULT_TYPES: tuple[str, ...] = tuple(
    get_args(m.model_fields["type"].annotation)[0] for m in FAULT_MODELS
)

__all__ = [
    "FAULT_MODELS",
    "FAULT_TYPES",
    "BandwidthFault",
    "BlackholeFault",
    "DirectedLink",
    "Fault",
    "FaultBase",
    "FaultScope",
    "LatencyFault",
    "PacketLossFault",
    "RegionDownFault",
    "RegionsOrLinks",
    "ReplicationLagFault",
]
