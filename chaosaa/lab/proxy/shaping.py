"""Shaping: how a link direction's state turns into waits for the bytes that cross it.

Rate is a token bucket shared by every connection of the link direction; delay and jitter
give each chunk a due time; loss is modelled by what it does to TCP, which cannot lose
bytes: a "lost" chunk stalls for one retransmission timeout, a "lost" SYN for the initial
SYN timeout.
"""

from __future__ import annotations

import random
import time

from chaosaa.lab.proxy.conditions import StreamState

#: TCP's minimum retransmission timeout (Linux), doubled on consecutive losses ...
RTO = 0.2
#: ... up to this
MAX_RTO = 3.0
#: TCP's initial SYN retransmission timeout
SYN_RTO = 1.0


class TokenBucket:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        # A small burst (20 ms worth, at least one MTU) keeps the measured rate honest.
        self.capacity = max(rate * 0.02, 1500.0)
        self._tokens = self.capacity
        self._last = time.monotonic()

    def take_now(self, amount: int) -> float:
        """Take ``amount`` tokens and return 0, or return how long to wait for them."""
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= amount:
            self._tokens -= amount
            return 0.0
        return (amount - self._tokens) / self.rate

    def piece(self) -> int:
        return max(1, int(self.capacity))


def due_time(state: StreamState, now: float) -> float:
    """When a chunk read at ``now`` is due under the state's delay and jitter."""
    if state.delay or state.jitter:
        return now + max(0.0, state.delay + random.uniform(-state.jitter, state.jitter))
    return now


def lost(probability: float) -> bool:
    """Draw whether a chunk (or a SYN) is "lost"."""
    return probability > 0 and random.random() < probability


class Retransmission:
    """The retransmission timeout one stream direction's "lost" chunks wait: ``RTO``,
    doubling while losses follow each other, as TCP's would."""

    def __init__(self) -> None:
        self._timeout = RTO

    def stall(self, loss: float) -> float:
        """How long the next chunk waits before it is sent: one timeout if lost, else 0."""
        if lost(loss):
            wait = self._timeout
            self._timeout = min(self._timeout * 2, MAX_RTO)
            return wait
        self._timeout = RTO
        return 0.0
