"""The lab supervisor: owns every lab process and the fault API.

Started detached by ``chaosaa lab up`` (``python -m chaosaa.lab.supervisor``). It binds
every port itself (passing the sockets to the children by file descriptor), spawns the
system under test's processes in each region (the demo: one node per region), the router,
the link-proxy process and Prometheus, serves the admin/fault API, and expires faults whose
TTL was not renewed. Children die with it (PR_SET_PDEATHSIG), so even a SIGKILLed
supervisor leaves no process behind.

Modules, bottom up: ``sockets``, ``processes`` (children), ``system`` (the pluggable system
under test) and ``demo`` (the first system), ``config`` (the layout: ports, links,
configs), ``client`` (HTTP to the children), ``registry`` (faults and their TTL),
``verification``, ``status``, ``api`` (HTTP routes), ``core`` (the :class:`Supervisor`),
``__main__`` (the process).
"""

from chaosaa.lab.supervisor.core import Supervisor
from chaosaa.lab.supervisor.demo import DemoSystem
from chaosaa.lab.supervisor.registry import ActiveFault, FaultApiError
from chaosaa.lab.supervisor.system import Launcher, ReplicationLink, System

__all__ = [
    "ActiveFault",
    "DemoSystem",
    "FaultApiError",
    "Launcher",
    "ReplicationLink",
    "Supervisor",
    "System",
]
