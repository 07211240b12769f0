"""Node-level network rules (nft + tc) for every transport: kind's ``docker exec``, the node
agent, and ``ip netns exec`` in tests.

- :mod:`chaosaa.rules.model`: :class:`NodeFault` (what one node does for one fault; the
  ``NetworkFault`` spec) and :func:`node_faults` (which regions' nodes act for a GameDay
  fault).
- :mod:`chaosaa.rules.generate`: the commands (an nft ruleset text, tc argv lists) that
  apply a NodeFault, their exact revert, full teardown, read-back and the kind watchdog.
- :mod:`chaosaa.rules.execute`: runs those commands through a transport.

This package imports only ``chaosaa.spec``, ``chaosaa.model`` and ``chaosaa.errors``.
"""

from chaosaa.rules.execute import (
    RuleError,
    ScriptOutcome,
    Transport,
    execute,
    execute_all,
    execute_script,
)
from chaosaa.rules.generate import (
    NFT_FAMILY,
    NFT_TABLE,
    TC_ROOT,
    Command,
    NodeRules,
    absent,
    owned,
    present,
    probe,
    readback,
    rules_for,
    teardown,
)
from chaosaa.rules.model import ALWAYS_LOCAL, NODE_FAULT_TYPES, NodeFault, fault_key, node_faults
from chaosaa.rules.shell import (
    arm_commands,
    disarm_all_command,
    disarm_command,
    inventory_command,
    parse_inventory,
    render_checked_sh,
    render_sh,
    renew_command,
    watchdog_command,
    watchdog_script,
)

__all__ = [
    "ALWAYS_LOCAL",
    "NFT_FAMILY",
    "NFT_TABLE",
    "NODE_FAULT_TYPES",
    "TC_ROOT",
    "Command",
    "NodeFault",
    "NodeRules",
    "RuleError",
    "ScriptOutcome",
    "Transport",
    "absent",
    "arm_commands",
    "disarm_all_command",
    "disarm_command",
    "execute",
    "execute_all",
    "execute_script",
    "fault_key",
    "inventory_command",
    "node_faults",
    "owned",
    "parse_inventory",
    "present",
    "probe",
    "readback",
    "render_checked_sh",
    "render_sh",
    "renew_command",
    "rules_for",
    "teardown",
    "watchdog_command",
    "watchdog_script",
]
