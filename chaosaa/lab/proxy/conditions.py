"""Link conditions: the model, its validation, how live conditions combine, and their TTL.

A condition applies to chosen directions of chosen links until it expires. Every stream
consults the *combined* state of the live conditions on its link direction
(:class:`StreamState`); :class:`Conditions` keeps the live set and computes that state.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal

Direction = Literal["up", "down"]
DIRECTIONS: tuple[Direction, Direction] = ("up", "down")
CONDITION_TYPES = ("blackhole", "latency", "bandwidth", "loss")
MAX_TTL = 3600
_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class ConditionError(ValueError):
    """A condition request is invalid (HTTP 400)."""


@dataclass
class Condition:
    id: str
    type: str
    #: link name -> stream directions affected
    targets: dict[str, set[Direction]]
    expires_at: float
    mode: str = ""
    delay: float = 0.0
    jitter: float = 0.0
    rate: float = 0.0
    percent: float = 0.0
    created_at: float = field(default_factory=time.time)

    def applies(self, link: str, direction: Direction) -> bool:
        return direction in self.targets.get(link, ())

    @property
    def resets(self) -> bool:
        """A ``drop`` blackhole: open connections are reset, not only new ones."""
        return self.type == "blackhole" and self.mode == "drop"

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "targets": [
                {"link": link, "dirs": sorted(dirs)} for link, dirs in sorted(self.targets.items())
            ],
            "mode": self.mode,
            "delay": self.delay,
            "jitter": self.jitter,
            "rate": self.rate,
            "percent": self.percent,
            "createdAt": self.created_at,
            "expiresIn": max(0.0, self.expires_at - now),
            "expiresAt": time.time() + max(0.0, self.expires_at - now),
        }


@dataclass(frozen=True)
class StreamState:
    """The combined effect of every live condition on one link direction."""

    blackhole: str | None = None  # None, "hang" or "drop"
    delay: float = 0.0
    jitter: float = 0.0
    rate: float = 0.0  # bytes/s; 0 = unlimited
    loss: float = 0.0  # probability 0..1
    loss_mode: str = "retransmit"

    def to_json(self) -> dict[str, Any]:
        return {
            "blackhole": self.blackhole,
            "delay": self.delay,
            "jitter": self.jitter,
            "rate": self.rate,
            "loss": self.loss,
            "lossMode": self.loss_mode,
        }

    def carries(self, cond: Condition) -> bool:
        """Whether this combined state includes the effect of ``cond``."""
        if cond.type == "blackhole":
            return self.blackhole == "drop" if cond.mode == "drop" else self.blackhole is not None
        if cond.type == "latency":
            return self.delay >= cond.delay and self.jitter >= cond.jitter
        if cond.type == "bandwidth":
            return 0 < self.rate <= cond.rate
        return self.loss >= cond.percent / 100 - 1e-9 and (
            cond.mode != "reset" or self.loss_mode == "reset"
        )


#: the state of a link direction no condition applies to: data takes the fast path
CLEAR = StreamState()


class Conditions:
    """The live conditions of a proxy, by id, and the state they combine into per link
    direction. ``generation`` changes with every add, renewal and removal, so a cached
    combined state knows when it is stale."""

    def __init__(self) -> None:
        self.by_id: dict[str, Condition] = {}
        self.generation = 0

    def state(self, link: str, direction: Direction) -> tuple[StreamState, float]:
        """The combined state of a link direction and until when (monotonic) it holds.

        Several conditions combine: drop beats hang, delays add, the lowest rate wins,
        loss probabilities compound.
        """
        now = time.monotonic()
        until = math.inf
        blackhole: str | None = None
        delay = jitter = rate = 0.0
        keep = 1.0
        loss_mode = "retransmit"
        applied = False
        for c in self.by_id.values():
            if c.expires_at <= now or not c.applies(link, direction):
                continue
            applied = True
            until = min(until, c.expires_at)
            if c.type == "blackhole":
                blackhole = "drop" if c.mode == "drop" or blackhole == "drop" else "hang"
            elif c.type == "latency":
                delay += c.delay
                jitter += c.jitter
            elif c.type == "bandwidth":
                rate = c.rate if rate == 0 else min(rate, c.rate)
            elif c.type == "loss":
                keep *= 1.0 - c.percent / 100.0
                if c.mode == "reset":
                    loss_mode = "reset"
        if not applied:
            return CLEAR, until
        return StreamState(blackhole, delay, jitter, rate, 1.0 - keep, loss_mode), until

    def live(self, cid: str) -> Condition | None:
        """The condition ``cid`` unless it is gone or expired."""
        cond = self.by_id.get(cid)
        return cond if cond is not None and cond.expires_at > time.monotonic() else None

    def all_live(self) -> list[Condition]:
        now = time.monotonic()
        return [c for c in self.by_id.values() if c.expires_at > now]

    def count(self, link: str, ctype: str) -> int:
        """Live conditions of type ``ctype`` on ``link``."""
        now = time.monotonic()
        return sum(
            1
            for c in self.by_id.values()
            if c.type == ctype and link in c.targets and c.expires_at > now
        )

    def add(self, cond: Condition) -> None:
        if cond.id in self.by_id:
            raise ConditionError(f"condition {cond.id!r} already exists; renew or delete it")
        self.by_id[cond.id] = cond
        self.generation += 1

    def renew(self, cid: str, ttl: object) -> Condition | None:
        """Extend a live condition by ``ttl`` seconds from now; None if it is gone."""
        cond = self.live(cid)
        if cond is None:
            return None
        cond.expires_at = time.monotonic() + parse_ttl(ttl)
        self.generation += 1
        return cond

    def remove(self, cid: str) -> Condition | None:
        cond = self.by_id.pop(cid, None)
        if cond is not None:
            self.generation += 1
        return cond

    def expired(self) -> list[str]:
        """Ids of the conditions whose TTL has run out (still to be removed)."""
        now = time.monotonic()
        return [cid for cid, cond in self.by_id.items() if cond.expires_at <= now]


def parse_condition(body: dict[str, Any], links: Collection[str]) -> Condition:
    """A condition from an admin API request body, for a proxy with ``links``."""
    ctype = body.get("type")
    if ctype not in CONDITION_TYPES:
        raise ConditionError(f"type must be one of {', '.join(CONDITION_TYPES)}")
    cid = str(body.get("id") or f"c-{uuid.uuid4().hex[:12]}")
    if not _ID_RE.match(cid):
        raise ConditionError("id must match [A-Za-z0-9_.:-]{1,128}")
    targets = _targets(body.get("targets"), links)
    ttl = parse_ttl(body.get("ttl"))
    cond = Condition(cid, str(ctype), targets, time.monotonic() + ttl)
    if ctype == "blackhole":
        cond.mode = str(body.get("mode") or "hang")
        if cond.mode not in ("drop", "hang"):
            raise ConditionError("blackhole mode must be drop or hang")
    elif ctype == "latency":
        cond.delay = _number(body, "delay", required=True)
        cond.jitter = _number(body, "jitter")
    elif ctype == "bandwidth":
        cond.rate = _number(body, "rate", required=True)
        if cond.rate <= 0:
            raise ConditionError("rate must be > 0 (bytes per second)")
    else:
        cond.percent = _number(body, "percent", required=True)
        if not 0 <= cond.percent <= 100:
            raise ConditionError("percent must be within 0..100")
        cond.mode = str(body.get("mode") or "retransmit")
        if cond.mode not in ("retransmit", "reset"):
            raise ConditionError("loss mode must be retransmit or reset")
    return cond


def _targets(raw: object, links: Collection[str]) -> dict[str, set[Direction]]:
    if not isinstance(raw, list) or not raw:
        raise ConditionError("targets must be a non-empty list of {link, dir}")
    targets: dict[str, set[Direction]] = {}
    for t in raw:
        if not isinstance(t, dict):
            raise ConditionError("each target is an object {link, dir}")
        name = t.get("link")
        if name not in links:
            raise ConditionError(f"unknown link {name!r}; known: {', '.join(links)}")
        d = t.get("dir", "both")
        dirs: tuple[Direction, ...]
        if d == "both":
            dirs = DIRECTIONS
        elif d in DIRECTIONS:
            dirs = (d,)
        else:
            raise ConditionError("dir must be up, down or both")
        targets.setdefault(str(name), set()).update(dirs)
    return targets


def _number(body: dict[str, Any], key: str, *, required: bool = False) -> float:
    value = body.get(key)
    if value is None:
        if required:
            raise ConditionError(f"{key} is required")
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConditionError(f"{key} must be a number >= 0")
    return float(value)


def parse_ttl(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_TTL:
        raise ConditionError("ttl is required: seconds, > 0 and <= 3600")
    return float(value)
