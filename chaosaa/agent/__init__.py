"""The chaosaa node agent (``chaosaa agent``): applies NetworkFaults as nft/tc rules.

- :mod:`chaosaa.agent.crd`: the NetworkFault CRD manifest (``networkfault_crd()``);
- :mod:`chaosaa.agent.agent`: the apply/renew/revert life of each NetworkFault and its
  dead-man switch;
- :mod:`chaosaa.agent.api`: the watch, status updates and heartbeat Lease (through
  :mod:`chaosaa.kube`);
- :mod:`chaosaa.agent.node`: running commands on the node, finding devices.
"""
