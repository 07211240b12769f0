"""The ``kind`` target: kind clusters on Docker, one cluster per region."""

from chaosaa.targets.kind.nodes import DockerRunner, KindRegion, SubprocessDocker
from chaosaa.targets.kind.target import KindTarget

__all__ = ["DockerRunner", "KindRegion", "KindTarget", "SubprocessDocker"]
