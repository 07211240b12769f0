"""The one place node-level rules are written: nft rulesets and tc commands, and their revert.

Ownership is what makes revert exact:

- nft: everything lives in ``table inet chaosaa``; a fault owns the chains and sets named
  ``c<key>_*``. Reverting a fault deletes exactly those; the table goes when it is empty.
- tc: chaosaa installs one root ``htb`` qdisc with handle ``ca05:`` on a device, only where
  the root is the kernel's default (handle ``0:``); a foreign root qdisc is never replaced
  (the fault fails instead). A fault owns class ``ca05:<slot>``, its leaf qdisc
  ``<cb00+slot>:`` and the u32 filters at preferences ``4*slot .. 4*slot+3``. Unclassified
  traffic takes htb's direct queue (``default 0``), untouched. The root goes when the last
  chaosaa class is gone, which gives the device its default qdisc back.

Everything is data: :class:`Command` (an argv, optional stdin, which errors mean "already
so", an optional guard). Transports (``docker exec``, the node agent, ``ip netns exec`` in
tests) run exactly these, through :func:`chaosaa.rules.execute.execute` or, for the kind
watchdog, as the POSIX shell that :func:`chaosaa.rules.shell.render_sh` prints.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from chaosaa.rules.model import NodeFault, split_families

NFT_FAMILY = "inet"
NFT_TABLE = "chaosaa"
#: major number of chaosaa's root qdisc: ``ca05:``
TC_ROOT_MAJOR = 0xCA05
#: leaf qdisc of slot s: ``(TC_LEAF_BASE + s):``
TC_LEAF_BASE = 0xCB00
MAX_SLOT = 0xFF
#: packetLoss draws a random number below this per packet (hundredths of a percent)
NUMGEN_MOD = 10000
TC_ROOT = f"{TC_ROOT_MAJOR:x}:"
#: u32 needs one filter per CIDR; the rest of the htb parameters
_HTB_PASS_RATE = "100gbit"
_QUANTUM = "1514"
_TBF_LATENCY = "400ms"
_NETEM_LIMIT = "100000"

#: errors of a delete that mean "it is not there" (revert is idempotent)
GONE = (
    "No such file or directory",
    "Cannot find specified filter chain",
    "Filter with specified priority/protocol not found",
    "Specified class not found",
    "Cannot find device",
    "Parent Qdisc doesn't exists",
    "Failed to find specified qdisc",
    "Invalid handle",
    "Cannot delete qdisc with handle of zero",
)


@dataclass(frozen=True)
class Command:
    """One command a transport runs on the node, and how to judge its outcome."""

    argv: tuple[str, ...]
    stdin: str | None = None
    #: stderr/stdout fragments that mean the desired state already holds
    tolerate: tuple[str, ...] = ()
    #: run ``guard`` first; run ``argv`` only if it succeeds, its stdout matches ``when``
    #: (if given) and does not match ``unless`` (if given). Patterns are POSIX ERE-safe.
    guard: tuple[str, ...] | None = None
    when: str | None = None
    unless: str | None = None
    #: what the failure means, for the user
    explain: str = ""

    def describe(self) -> str:
        text = shlex.join(self.argv)
        return f"{text} <<EOF ... EOF" if self.stdin is not None else text


@dataclass(frozen=True)
class NodeRules:
    """Everything one node runs for one fault: apply and its exact revert."""

    fault: NodeFault
    slot: int
    device: str
    nft: str
    apply: tuple[Command, ...]
    revert: tuple[Command, ...]
    #: names this fault owns (for read-back): nft chains and the tc class id
    chains: tuple[str, ...] = field(default=())
    tc_class: str | None = None


# --------------------------------------------------------------------------- names


def chain_names(fault: NodeFault) -> tuple[str, ...]:
    names = []
    if fault.uses_nft and fault.cuts_ingress:
        names.append(f"c{fault.key}_i")
    if fault.uses_nft and fault.cuts_egress:
        names.append(f"c{fault.key}_e")
    return tuple(names)


def tc_class(slot: int) -> str:
    return f"{TC_ROOT}{slot:x}"


def tc_leaf(slot: int) -> str:
    return f"{TC_LEAF_BASE + slot:x}:"


def _check_slot(slot: int) -> None:
    if not 1 <= slot <= MAX_SLOT:
        raise ValueError(f"tc slot {slot} out of range 1..{MAX_SLOT}")


_DEVICE = re.compile(r"[A-Za-z0-9_.@:-]{1,15}")


def _check_device(device: str) -> None:
    if not _DEVICE.fullmatch(device):
        raise ValueError(f"{device!r} is not a network device name")


# --------------------------------------------------------------------------- nft


@dataclass(frozen=True)
class _Set:
    name: str
    family: str  # ipv4_addr | ipv6_addr
    elements: tuple[str, ...]


def _sets(fault: NodeFault) -> list[_Set]:
    """The named sets a fault's chains use (only non-empty ones are created)."""
    out: list[_Set] = []

    def add(suffix: str, cidrs: Iterable[str]) -> None:
        v4, v6 = split_families(cidrs)
        if v4:
            out.append(_Set(f"c{fault.key}_{suffix}4", "ipv4_addr", tuple(v4)))
        if v6:
            out.append(_Set(f"c{fault.key}_{suffix}6", "ipv6_addr", tuple(v6)))

    add("a", fault.allow)
    if fault.everything:
        add("k", fault.keep)
    else:
        add("p", fault.peers)
    return out


def _nft_rules(fault: NodeFault, ingress: bool) -> list[str]:
    """Rule bodies of one chain (``ingress`` matches sources, egress destinations)."""
    names = {s.name for s in _sets(fault)}
    k = fault.key
    addr = "saddr" if ingress else "daddr"
    rules = ['iifname "lo" accept' if ingress else 'oifname "lo" accept']
    for fam, v in (("ip", "4"), ("ip6", "6")):
        if f"c{k}_a{v}" in names:
            rules.append(f"{fam} {addr} @c{k}_a{v} accept")
    allow_ports = [p for p in fault.allow_ports if p not in fault.ports]
    if allow_ports:
        ports = ", ".join(str(p) for p in allow_ports)
        rules += [f"tcp dport {{ {ports} }} accept", f"tcp sport {{ {ports} }} accept"]
    # packetLoss in hundredths of a percent; 100 % is every packet (nft refuses "< 10000"
    # after "mod 10000": the value is outside 0-9999)
    share = max(1, round(fault.percent * 100)) if fault.type == "packetLoss" else NUMGEN_MOD
    action = f"numgen random mod {NUMGEN_MOD} < {share} drop" if share < NUMGEN_MOD else "drop"
    matches: list[str] = []
    for fam, v in (("ip", "4"), ("ip6", "6")):
        if fault.everything and f"c{k}_k{v}" in names:
            matches.append(f"{fam} {addr} != @c{k}_k{v}")
        elif not fault.everything and f"c{k}_p{v}" in names:
            matches.append(f"{fam} {addr} @c{k}_p{v}")
    if fault.type == "replicationLag":
        ports = ", ".join(str(p) for p in fault.ports)
        matches = [f"{m} tcp {d} {{ {ports} }}" for m in matches for d in ("dport", "sport")]
    rules += [f"{m} {action}" for m in matches]
    return rules


def nft_apply(fault: NodeFault) -> str:
    """The ``nft -f -`` input that installs a fault (idempotent: flushes its own first)."""
    t = f"{NFT_FAMILY} {NFT_TABLE}"
    lines = [f"add table {t}"]
    for s in _sets(fault):
        lines += [
            f"add set {t} {s.name} {{ type {s.family}; flags interval; auto-merge; }}",
            f"flush set {t} {s.name}",
            f"add element {t} {s.name} {{ {', '.join(s.elements)} }}",
        ]
    for chain in chain_names(fault):
        ingress = chain.endswith("_i")
        hook = "prerouting priority -300" if ingress else "postrouting priority 300"
        lines += [
            f"add chain {t} {chain} {{ type filter hook {hook}; policy accept; }}",
            f"flush chain {t} {chain}",
        ]
        lines += [f"add rule {t} {chain} {rule}" for rule in _nft_rules(fault, ingress)]
    return "\n".join(lines) + "\n"


def nft_revert(fault: NodeFault) -> str:
    t = f"{NFT_FAMILY} {NFT_TABLE}"
    lines = [f"delete chain {t} {c}" for c in chain_names(fault)]
    lines += [f"delete set {t} {s.name}" for s in _sets(fault)]
    return "\n".join(lines) + "\n"


def _nft(script: str, **kw: object) -> Command:
    return Command(("nft", "-f", "-"), stdin=script, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- tc


def _prefs(fault: NodeFault, slot: int) -> dict[str, int]:
    """u32 filter preferences a fault uses: exclusions first, then its matches."""
    base = 4 * slot
    prefs: dict[str, int] = {}
    excl = (*fault.allow, *(fault.keep if fault.everything else ()))
    ex4, ex6 = split_families(excl)
    allow_ports = [p for p in fault.allow_ports if p not in fault.ports]
    if ex4 or allow_ports:
        prefs["x4"] = base
    if ex6 or allow_ports:
        prefs["x6"] = base + 1
    if fault.everything:
        prefs.update(m4=base + 2, m6=base + 3)
    else:
        p4, p6 = split_families(fault.peers)
        if p4:
            prefs["m4"] = base + 2
        if p6:
            prefs["m6"] = base + 3
    return prefs


def _u32(device: str, pref: int, v6: bool, matches: str, flowid: str) -> str:
    proto = "ipv6" if v6 else "ip"
    return (
        f"filter add dev {device} parent {TC_ROOT} protocol {proto} pref {pref} u32 "
        f"{matches} flowid {flowid}"
    )


def _tc_batch(fault: NodeFault, slot: int, device: str) -> list[str]:
    cls, leaf = tc_class(slot), tc_leaf(slot)
    if fault.type == "replicationLag":
        burst = str(max(1600, math.ceil(fault.rate / 8 * 0.005)))
        rate = f"{round(fault.rate)}bit"
        lines = [
            f"class add dev {device} parent {TC_ROOT} classid {cls} htb rate {rate} "
            f"ceil {rate} burst {burst} cburst {burst} quantum {_QUANTUM}",
            f"qdisc add dev {device} parent {cls} handle {leaf} pfifo limit 1000",
        ]
    else:
        lines = [
            f"class add dev {device} parent {TC_ROOT} classid {cls} htb rate {_HTB_PASS_RATE} "
            f"ceil {_HTB_PASS_RATE} quantum {_QUANTUM}"
        ]
        if fault.type == "latency":
            netem = f"netem delay {round(fault.delay * 1e6)}us"
            if fault.jitter:
                netem += f" {round(fault.jitter * 1e6)}us"
            lines.append(
                f"qdisc add dev {device} parent {cls} handle {leaf} {netem} limit {_NETEM_LIMIT}"
            )
        else:  # bandwidth
            tbf_burst = max(3028, math.ceil(fault.rate / 8 * 0.005))
            lines.append(
                f"qdisc add dev {device} parent {cls} handle {leaf} tbf rate "
                f"{round(fault.rate)}bit burst {tbf_burst} latency {_TBF_LATENCY}"
            )
    prefs = _prefs(fault, slot)
    direct = f"{TC_ROOT}0"
    excl4, excl6 = split_families((*fault.allow, *(fault.keep if fault.everything else ())))
    allow_ports = [p for p in fault.allow_ports if p not in fault.ports]
    for v6, excl, key in ((False, excl4, "x4"), (True, excl6, "x6")):
        fam = "ip6" if v6 else "ip"
        for cidr in excl:
            lines.append(_u32(device, prefs[key], v6, f"match {fam} dst {cidr}", direct))
        for port in allow_ports:
            for d in ("dport", "sport"):
                m = f"match {fam} protocol 6 0xff match {fam} {d} {port} 0xffff"
                lines.append(_u32(device, prefs[key], v6, m, direct))
    p4, p6 = split_families(fault.peers)
    for v6, peers, key in ((False, p4, "m4"), (True, p6, "m6")):
        if key not in prefs:
            continue
        fam = "ip6" if v6 else "ip"
        dsts = [("::/0" if v6 else "0.0.0.0/0")] if fault.everything else peers
        for cidr in dsts:
            if fault.type == "replicationLag":
                for port in fault.ports:
                    for d in ("dport", "sport"):
                        m = (
                            f"match {fam} dst {cidr} match {fam} protocol 6 0xff "
                            f"match {fam} {d} {port} 0xffff"
                        )
                        lines.append(_u32(device, prefs[key], v6, m, cls))
            else:
                lines.append(_u32(device, prefs[key], v6, f"match {fam} dst {cidr}", cls))
    return lines


def _tc_delete(fault: NodeFault, slot: int, device: str) -> list[Command]:
    """One ``tc -force -batch``: the fault's filters, then its class (and leaf qdisc).

    ``-force`` goes on past objects that are already gone, so this is idempotent; the
    read-back (:func:`absent`) is what proves a revert.
    """
    lines = [
        f"filter del dev {device} parent {TC_ROOT} pref {pref}"
        for pref in _prefs(fault, slot).values()
    ]
    lines.append(f"class del dev {device} classid {tc_class(slot)}")
    return [Command(("tc", "-force", "-batch", "-"), stdin="\n".join(lines) + "\n", tolerate=GONE)]


def _tc_root_add(device: str) -> Command:
    add = ("tc", "qdisc", "add", "dev", device, "root", "handle", TC_ROOT, "htb")
    return Command(
        (*add, "default", "0", "direct_qlen", "1000"),
        guard=("tc", "qdisc", "show", "dev", device, "root"),
        unless=f"qdisc htb {TC_ROOT} root",
        explain=(
            f"device {device} already has a root qdisc that chaosaa did not create; "
            "chaosaa never replaces a foreign qdisc"
        ),
    )


def tc_root_del_if_idle(device: str) -> Command:
    """Remove chaosaa's root qdisc when no chaosaa class is left under it."""
    return Command(
        ("tc", "qdisc", "del", "dev", device, "root"),
        tolerate=GONE,
        guard=("tc", "qdisc", "show", "dev", device),
        when=f"qdisc htb {TC_ROOT} root",
        unless=f"parent {TC_ROOT}",
    )


def nft_table_del_if_idle() -> Command:
    return Command(
        ("nft", "delete", "table", NFT_FAMILY, NFT_TABLE),
        tolerate=GONE,
        guard=("nft", "list", "table", NFT_FAMILY, NFT_TABLE),
        unless=r"(chain|set) [A-Za-z0-9_]+ \{",
    )


# --------------------------------------------------------------------------- public


def rules_for(fault: NodeFault, slot: int, device: str) -> NodeRules:
    """Apply and revert commands for ``fault`` on ``device``, in tc slot ``slot``.

    ``slot`` (1..255) must be unique among the tc faults active on the device; the
    transport picks it. ``device`` is where tc shapes (nft rules are device-independent).
    """
    _check_slot(slot)
    _check_device(device)
    apply: list[Command] = []
    revert: list[Command] = []
    nft = ""
    if fault.uses_nft:
        nft = nft_apply(fault)
        undo = _nft(nft_revert(fault), tolerate=GONE)
        apply += [_nft(nft, explain=f"nft rules of fault {fault.key}")]
        revert += [undo, nft_table_del_if_idle()]
    if fault.uses_tc:
        batch = "\n".join(_tc_batch(fault, slot, device)) + "\n"
        apply += [
            *_tc_delete(fault, slot, device),
            _tc_root_add(device),
            Command(
                ("tc", "-batch", "-"),
                stdin=batch,
                explain=f"tc rules of fault {fault.key} on {device}",
            ),
        ]
        revert += [*_tc_delete(fault, slot, device), tc_root_del_if_idle(device)]
    return NodeRules(
        fault=fault,
        slot=slot,
        device=device,
        nft=nft,
        apply=tuple(apply),
        revert=tuple(revert),
        chains=chain_names(fault),
        tc_class=tc_class(slot) if fault.uses_tc else None,
    )


def probe(fault: NodeFault) -> tuple[Command, ...]:
    """Commands that try ``fault``'s own rules in a throwaway network namespace.

    ``unshare -n`` gives each command a fresh namespace (only ``lo``) that vanishes with
    it, so a probe touches nothing on the node, yet it meets the kernel exactly as the
    real apply would: a missing qdisc (netem, tbf, htb) or nft feature fails the same way,
    with the same explanation (:func:`chaosaa.rules.execute.explain_failure`).
    """
    where = "tried in a throwaway network namespace"
    out: list[Command] = []
    if fault.uses_nft:
        out.append(
            Command(
                ("unshare", "-n", "nft", "-f", "-"),
                stdin=nft_apply(fault),
                explain=f"nft rules of fault {fault.key} ({where})",
            )
        )
    if fault.uses_tc:
        root = shlex.join(_tc_root_add("lo").argv)
        out.append(
            Command(
                ("unshare", "-n", "sh", "-c", f"{root} && exec tc -batch -"),
                stdin="\n".join(_tc_batch(fault, 1, "lo")) + "\n",
                explain=f"tc rules of fault {fault.key} ({where})",
            )
        )
    return tuple(out)


def teardown(devices: Sequence[str]) -> tuple[Command, ...]:
    """Remove everything chaosaa owns on a node: its nft table and its root qdiscs."""
    cmds = [Command(("nft", "delete", "table", NFT_FAMILY, NFT_TABLE), tolerate=GONE)]
    for device in devices:
        _check_device(device)
        cmds.append(
            Command(
                ("tc", "qdisc", "del", "dev", device, "root"),
                tolerate=GONE,
                guard=("tc", "qdisc", "show", "dev", device, "root"),
                when=f"qdisc htb {TC_ROOT} root",
            )
        )
    return tuple(cmds)


def readback(device: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Commands whose output shows chaosaa's rules: (nft listing, tc qdisc listing)."""
    _check_device(device)
    return (
        ("nft", "list", "table", NFT_FAMILY, NFT_TABLE),
        ("tc", "qdisc", "show", "dev", device),
    )


def present(rules: NodeRules, nft_listing: str, tc_listing: str) -> bool:
    """Whether a fault's rules show in the read-back listings (see :func:`readback`)."""
    chains_ok = all(f"chain {c} {{" in nft_listing for c in rules.chains)
    tc_ok = rules.tc_class is None or f"parent {rules.tc_class} " in tc_listing
    return chains_ok and tc_ok


def absent(rules: NodeRules, nft_listing: str, tc_listing: str) -> bool:
    chains_gone = not any(f"chain {c} {{" in nft_listing for c in rules.chains)
    tc_gone = rules.tc_class is None or f"parent {rules.tc_class} " not in tc_listing
    return chains_gone and tc_gone


def owned(nft_listing: str, tc_listings: dict[str, str]) -> list[str]:
    """Describe every chaosaa artefact in listings (for ``chaosaa rollback``)."""
    out = []
    if f"table {NFT_FAMILY} {NFT_TABLE}" in nft_listing:
        chains = re.findall(r"chain (c[a-z0-9]+_[ie]) \{", nft_listing)
        out.append(f"nft table {NFT_FAMILY} {NFT_TABLE} ({len(chains)} chain(s))")
    for device, listing in tc_listings.items():
        if f"qdisc htb {TC_ROOT} root" in listing:
            out.append(f"tc root qdisc {TC_ROOT} on {device}")
    return out
