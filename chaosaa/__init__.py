"""chaosaa: chaos GameDays for multi-region, active-active systems."""

__version__ = "0.1.0"
