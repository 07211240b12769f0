"""The chaosaa operator: GameDay and GameDayRun custom resources, run by kopf (DESIGN.md §6).

``main`` only registers handlers; the logic lives in one module per resource
(``handlers/gameday.py``, ``handlers/gamedayrun.py``), pure scheduling in ``schedule.py``.
"""
