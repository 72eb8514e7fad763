"""`pimainteno heal UNIT`: record UNIT's failure and queue a heal (what the OnFailure= drop-in runs).

The recording, the per-unit rate limit and the queueing live in pimainteno/failures.py.
"""

from __future__ import annotations

import logging

from pimainteno.app import App
from pimainteno.failures import Recorded, event_for, monitored_units, record_failure

__all__ = ["Recorded", "event_for", "heal", "monitored_units", "record_failure"]
log = logging.getLogger("pimainteno")


def heal(app: App, unit: str) -> Recorded | None:
    """Record UNIT's failure and queue its heal; None when the unit has not failed."""
    if "." not in unit:
        unit += ".service"
    event = event_for(app, unit)
    if event is None:
        log.info("%s has not failed; nothing to record", unit)
        return None
    return record_failure(app, event, source="on-failure")
