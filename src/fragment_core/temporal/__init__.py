"""Fleet mode: the same sync as Temporal workflows, activities and Schedules.

Needs the ``temporal`` extra. :mod:`~fragment_core.temporal.workflows` (one run of one
source), :mod:`~fragment_core.temporal.activities` (the engine's phases),
:mod:`~fragment_core.temporal.worker` (``fragment worker``),
:mod:`~fragment_core.temporal.fleet` (Schedules, a run now) and
:mod:`~fragment_core.temporal.client` (where Temporal is). See docs/fleet.md.
"""
