"""lostWrites (DESIGN.md §4): every write the traffic generator got acknowledged is read
back from every region after recovery; lost = acknowledged and absent, or superseded by an
older value. Regions that disagree on a key's final value are divergent keys.

"Older" is happen-before as the client saw it. The generator writes unique values, so
each value names its write. A final value ``v`` of key ``k`` in region ``r`` is acceptable
for an acknowledged write ``w`` to ``k`` unless ``v``'s write was acknowledged before ``w``
was sent: then ``v`` happened before ``w`` and ``w`` was lost in ``r``. A value from a
write that was never acknowledged counts as concurrent (acceptable): the client cannot
tell when it took effect.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from chaosaa.measure.result import READBACK, LostWrites
from chaosaa.model import AckedWrite

EXAMPLES = 10

_ABSENT = "absent"
_OLDER = "supersededByOlder"
_FOREIGN = "foreign"


def lost_writes(
    acked: Sequence[AckedWrite],
    final: Mapping[str, Mapping[str, str | None]],
    *,
    attempted_values: Collection[str] | None = None,
) -> LostWrites:
    """Count acknowledged writes that some region lost.

    ``final[region][key]`` is the value read back (None: the key is absent). A key missing
    from a region's map was not read (a failed read): writes to it are ``unverified`` there,
    and any unverified write makes the result ``no_data`` (its count is then a lower
    bound). ``attempted_values``, if given, holds the value of every write sent,
    acknowledged or not: a final value outside it and outside ``acked`` (say, left over from
    before the run) is older than every acknowledged write, so those writes are lost.
    Without it such values count as concurrent.

    A write is lost once however many regions lost it; ``lost_by_region`` counts per
    region. Runs in O(writes x regions + keys x regions).
    """
    acked_at: dict[str, float] = {}
    sent_at: dict[str, float] = {}
    for w in acked:
        if w.value not in acked_at or w.acked_at < acked_at[w.value]:
            acked_at[w.value] = w.acked_at
        sent_at[w.value] = min(w.sent_at, sent_at.get(w.value, w.sent_at))
    regions = sorted(final)
    lost_by_region = dict.fromkeys(regions, 0)
    reasons = {_ABSENT: 0, _OLDER: 0, _FOREIGN: 0}
    lost = unverified = concurrent_overwrites = 0
    examples: list[dict[str, Any]] = []

    for w in sorted(acked, key=lambda w: (w.sent_at, w.key, w.value)):
        lost_on: list[str] = []
        missing_on = False
        for region in regions:
            values = final[region]
            if w.key not in values:
                missing_on = True
                continue
            v = values[w.key]
            if v == w.value:
                continue
            reason = _loss(v, w, acked_at, attempted_values)
            if reason is None:
                if v is not None and v in sent_at and sent_at[v] <= w.acked_at:
                    concurrent_overwrites += 1
                continue
            reasons[reason] += 1
            lost_on.append(region)
            lost_by_region[region] += 1
        if lost_on:
            lost += 1
            if len(examples) < EXAMPLES:
                examples.append(_example(w, lost_on, final, regions))
        elif missing_on:
            unverified += 1

    divergent, divergent_examples = _divergent(final, regions)
    no_data = not acked or not regions or unverified > 0
    details: dict[str, Any] = {
        "acknowledgedWrites": len(acked),
        "lost": lost,
        "lostByRegion": dict(lost_by_region),
        "lossReasons": reasons,
        "divergentKeys": divergent,
        "divergentExamples": divergent_examples,
        "unverified": unverified,
        "concurrentOverwrites": concurrent_overwrites,
        "regions": regions,
        "examples": examples,
    }
    if no_data:
        details["reason"] = (
            "no acknowledged writes"
            if not acked
            else "no region was read back"
            if not regions
            else f"{unverified} acknowledged writes could not be read back everywhere"
        )
    return LostWrites(
        measured=None if not acked or not regions else lost,
        unit="writes",
        source=READBACK,
        error_bound_seconds=None,
        details=details,
        no_data=no_data,
        acknowledged=len(acked),
        lost=lost,
        lost_by_region=lost_by_region,
        divergent_keys=divergent,
        unverified=unverified,
        examples=examples,
    )


def _loss(
    v: str | None,
    w: AckedWrite,
    acked_at: Mapping[str, float],
    attempted: Collection[str] | None,
) -> str | None:
    """Why final value ``v`` (not ``w``'s own) means ``w`` was lost, or None if it does not."""
    if v is None:
        return _ABSENT
    at = acked_at.get(v)
    if at is not None:
        return _OLDER if at < w.sent_at else None
    if attempted is not None and v not in attempted:
        return _FOREIGN
    return None  # an unacknowledged write: concurrent


def _example(
    w: AckedWrite,
    lost_on: list[str],
    final: Mapping[str, Mapping[str, str | None]],
    regions: list[str],
) -> dict[str, Any]:
    return {
        "key": w.key,
        "value": w.value,
        "sentAt": w.sent_at,
        "ackedAt": w.acked_at,
        "region": w.region,
        "lostIn": lost_on,
        "found": {r: final[r].get(w.key) for r in regions if w.key in final[r]},
    }


def _divergent(
    final: Mapping[str, Mapping[str, str | None]], regions: list[str]
) -> tuple[int, list[dict[str, Any]]]:
    """Keys whose read-back value differs between regions (only regions that read it)."""
    count = 0
    examples: list[dict[str, Any]] = []
    keys = sorted({k for r in regions for k in final[r]})
    for key in keys:
        seen = {r: final[r][key] for r in regions if key in final[r]}
        if len(set(seen.values())) > 1:
            count += 1
            if len(examples) < EXAMPLES:
                examples.append({"key": key, "values": seen})
    return count, examples
