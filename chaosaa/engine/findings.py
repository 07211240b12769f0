"""What a run showed, in plain words, for the top of the report: which regions accepted
writes while each fault was in place. "Multi-region" with one primary database passes
every read check and still accepts no write anywhere once the primary's region is down;
this says so in a sentence rather than leaving it to a chart."""

from __future__ import annotations

from collections.abc import Mapping

from chaosaa.measure.writes import Counts, refusing_regions
from chaosaa.report.model import FaultResult, WriteCount


def _combined(fault: FaultResult) -> dict[str, Counts]:
    out: dict[str, Counts] = {}
    for counts in (fault.probe_writes, fault.canary_writes):
        for region, c in counts.items():
            attempted, accepted = out.get(region, (0, 0))
            out[region] = (attempted + c.attempted, accepted + c.accepted)
    return out


def _where(fault: FaultResult, region: str) -> str:
    parts = []
    for what, counts in (("probe", fault.probe_writes), ("canaries", fault.canary_writes)):
        c: WriteCount | None = counts.get(region)
        if c is not None and c.attempted:
            parts.append(f"{what} {c.accepted} of {c.attempted}")
    return f"{region} ({', '.join(parts)})"


def write_findings(faults: list[FaultResult]) -> list[str]:
    """One sentence per fault during which some region accepted no writes."""
    out = []
    for fault in faults:
        if fault.effective_at is None:
            continue
        combined = _combined(fault)
        refused = refusing_regions(combined)
        if not refused:
            continue
        what = f"{fault.name} ({fault.scope})" if fault.scope else fault.name
        attempted = [r for r, (n, _) in combined.items() if n]
        if set(refused) == set(attempted):
            detail = "; ".join(_where(fault, r) for r in refused)
            out.append(
                f"No region accepted writes while {what} was in place: every write failed "
                f"({detail} accepted)."
            )
        else:
            serving = [r for r in attempted if r not in refused]
            out.append(
                f"{_join(refused)} accepted no writes while {what} was in place "
                f"({'; '.join(_where(fault, r) for r in refused)} accepted); "
                f"{_join(serving)} kept accepting writes."
            )
    return out


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def write_counts(counts: Mapping[str, Counts]) -> dict[str, WriteCount]:
    return {r: WriteCount(attempted=n, accepted=ok) for r, (n, ok) in counts.items()}
