"""The chaosaa node agent (``chaosaa agent``): applies NetworkFaults as nft/tc rules.

- :mod:`chaosaa.agent.crd`: the NetworkFault CRD manifest (``networkfault_crd()``);
- :mod:`chaosaa.agent.agent`: the watch/apply/revert loop and its dead-man switch;
- :mod:`chaosaa.agent.node`: running commands on the node, finding devices.
"""
