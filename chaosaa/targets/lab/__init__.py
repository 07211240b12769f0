"""The ``lab`` target: the local multi-region lab, driven only through its HTTP APIs."""

from chaosaa.targets.lab.faults import fault_body
from chaosaa.targets.lab.target import LabTarget

__all__ = ["LabTarget", "fault_body"]
