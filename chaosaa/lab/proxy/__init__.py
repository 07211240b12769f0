"""Link proxies: userspace TCP proxies on every path that crosses a region boundary.

One process hosts every link of the lab (``router>eu``, ``us>eu``, ...). Each link forwards
one TCP port to one upstream and applies *conditions* set through an admin HTTP API.
Conditions are per link and per stream direction (``up`` = initiator to acceptor, e.g. the
request of a replication push; ``down`` = the reverse), and each has a TTL after which it
disappears by itself, so a fault outlives its injector by at most one TTL.

Condition types and what they do to TCP streams (netem is unavailable, so these are the
userspace equivalents):

- ``blackhole`` ``mode=drop``: existing connections are reset (RST) at once and new ones are
  accepted and reset immediately, like a firewall ``reject``.
- ``blackhole`` ``mode=hang``: nothing is forwarded any more; new connections are accepted
  and held silently, in-flight data is held. Lifting it lets held data through, as TCP
  retransmission would after a real blackhole heals.
- ``latency``: each chunk is delivered ``delay +/- jitter`` after it was read (order kept).
- ``bandwidth``: a token bucket shared by all connections of the link direction.
- ``loss``: a TCP stream cannot lose bytes, so loss is modelled by its effect on TCP: each
  chunk is, with probability ``percent``, held for one retransmission timeout (200 ms,
  doubling on consecutive losses) and each new connection for the initial SYN timeout
  (1 s). ``mode=reset`` instead resets that percentage of new connections.

Modules, bottom up: ``conditions`` (the model, validation, how conditions combine, TTL),
``shaping`` (token bucket, delay and jitter, loss stalls), ``metrics``, ``streams`` (the
data plane: connections and their streams), ``links``, ``admin`` (the admin HTTP API),
``linkproxy`` (:class:`LinkProxy`), ``__main__`` (the process, ``python -m
chaosaa.lab.proxy``).
"""

from chaosaa.lab.proxy.conditions import (
    CLEAR,
    CONDITION_TYPES,
    DIRECTIONS,
    Condition,
    ConditionError,
    Direction,
    StreamState,
)
from chaosaa.lab.proxy.linkproxy import LinkProxy
from chaosaa.lab.proxy.links import Link

__all__ = [
    "CLEAR",
    "CONDITION_TYPES",
    "DIRECTIONS",
    "Condition",
    "ConditionError",
    "Direction",
    "Link",
    "LinkProxy",
    "StreamState",
]
