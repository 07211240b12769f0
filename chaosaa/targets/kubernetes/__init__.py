"""The ``kubernetes`` target: any Kubernetes clusters, one kube context per region.

- :mod:`~chaosaa.targets.kubernetes.target`: the target's lifecycle (open, close,
  rollback) and its lease;
- :mod:`~chaosaa.targets.kubernetes.regions`: the regions as reached (clients, nodes,
  addresses): what the fault handlers work with;
- :mod:`~chaosaa.targets.kubernetes.safety`: allow-listed contexts, protected namespaces
  and nodes, checked before anything is touched;
- :mod:`~chaosaa.targets.kubernetes.lease`: one run per target (a Lease per context);
- :mod:`~chaosaa.targets.kubernetes.faults`: the handler of each fault type, made of the
  mechanisms in :mod:`~chaosaa.targets.kubernetes.workloads` (scale to 0 and cordon),
  :mod:`~chaosaa.targets.kubernetes.policies` (NetworkPolicies) and
  :mod:`~chaosaa.targets.kubernetes.networkfaults` (node rules through the agent).
"""

from chaosaa.targets.kubernetes.lease import LEASE_NAME
from chaosaa.targets.kubernetes.target import KubernetesTarget

__all__ = ["LEASE_NAME", "KubernetesTarget"]
