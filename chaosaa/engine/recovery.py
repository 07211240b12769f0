"""The recovery window: how long traffic goes on after the last revert (DESIGN.md section 4).

One rule, read by the run (it waits this long) and by the plan (it announces it).
"""

from __future__ import annotations

from chaosaa.spec.model import GameDaySpec, ReplicationLagSLO


def recovery_wait(spec: GameDaySpec, elapsed: float) -> float:
    """Seconds of traffic after the last revert, before the steady state is checked again.

    The longest of: ``recovery.settle``; the longest failoverTime ``sustain`` + 1 s (the
    service must be seen healthy for that long); the longest replicationLag
    ``recoverWithin``; and what is left of a fixed ``traffic.duration`` ``elapsed``
    seconds after the run started.
    """
    sustain = max((getattr(s, "sustain", 0.0) for s in spec.slos), default=0.0)
    lag_wait = max(
        (s.recover_within or 0.0 for s in spec.slos if isinstance(s, ReplicationLagSLO)),
        default=0.0,
    )
    wait = max(spec.recovery.settle, sustain + 1.0 if spec.faults else 0.0, lag_wait)
    duration = spec.traffic.duration
    if duration != "auto":
        wait = max(wait, duration - elapsed)
    return wait
