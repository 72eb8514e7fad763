"""`pimainteno watch [--for SECONDS]`: notice failures of the monitored units and queue their heals.

One D-Bus connection, `Subscribe()`, a PropertiesChanged match per unit (pimainteno.systemd.
watch_failures): a unit entering `failed` is recorded (pimainteno/failures.py) within
milliseconds, with the journal of the failed run, and a heal is queued for its project, rate
limited per unit. On start, units already failed are swept once; a lost bus is reconnected.
Projects with a `health` probe are also probed every `health_interval` s; `health_failures` in a
row are a failure of the unit (result `probe`), recorded and healed the same way (pimainteno/probing.py).

The `status` table carries the heartbeat the dashboard and `pimainteno status` show:
`systemd.status` (connecting, listening once the matches are in place, stopped or error),
`systemd.last_checked` (every few seconds while listening), `systemd.units` (what is watched) and `systemd.error` (why it stopped, if it failed).

The database may be locked, full or replaced while the watch runs: failures wait in a bounded
buffer and are recorded when it takes them again (pimainteno/keeper.py); the watch stops only for
a configuration error or when systemd cannot be reached at all. Every `PRUNE_EVERY` seconds it
drops failure rows older than `retention_days`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from pimainteno import records
from pimainteno.app import App
from pimainteno.errors import InputError, PimaintenoError
from pimainteno.failures import Recorded, monitored_units, prune, record_failure, record_probe_failure
from pimainteno.keeper import TRANSIENT, Keeper
from pimainteno.probing import ProbeThread, probed_projects
from pimainteno.systemd import FailureEvent

log = logging.getLogger("pimainteno")

HEARTBEAT_EVERY = 5.0
PRUNE_EVERY = 3600.0


def watch(
    app: App,
    *,
    duration: float | None = None,
    on_record: Callable[[Recorded], None] | None = None,
    heartbeat_every: float = HEARTBEAT_EVERY,
) -> list[Recorded]:
    """Watch until ``duration`` s have passed (forever without); returns what was recorded."""
    from pimainteno.systemd import watch_failures

    units = monitored_units(app.config)
    if not units:
        raise InputError(
            "nothing to watch: list units in [systemd_monitor] units, or set enabled = true to watch "
            "each project's unit"
        )
    recorded: list[Recorded] = []
    last_beat = [-heartbeat_every]  # "listening" is written at the first call, once the matches are in place
    keeper = Keeper(app, lambda event: record_failure(app, event, source="sweep" if event.swept else "watch"))
    pruned = [time.monotonic() - PRUNE_EVERY]

    def beat(state: str = "listening", *, due: bool = True) -> None:
        got(keeper.flush())
        if due or time.monotonic() - last_beat[0] >= heartbeat_every:
            try:
                keeper.check_file()
                records.set_status(app.db, "systemd.status", state)
                records.set_status(app.db, "systemd.last_checked", records.now())
                if time.monotonic() - pruned[0] >= PRUNE_EVERY:
                    prune(app)
                    pruned[0] = time.monotonic()
            except (*TRANSIENT, PimaintenoError) as e:  # the heartbeat waits for the database, the watch goes on
                log.debug("heartbeat not written: %s", e)
            last_beat[0] = time.monotonic()

    def got(done: list[Recorded]) -> None:
        for rec in done:
            recorded.append(rec)
            if on_record:
                on_record(rec)

    probes = ProbeThread(probed_projects(app.config))

    def probe_failures() -> None:  # in this thread: the probe thread never touches the database
        for project, result in probes.take():
            try:
                rec = record_probe_failure(app, project, result)
            except (*TRANSIENT, PimaintenoError) as e:  # the next failing streak is recorded again
                log.error("%s: its health probe failed, but recording it failed: %s", project.name, e)
                continue
            if rec is not None and not rec.duplicate:
                got([rec])

    def heartbeat() -> None:
        probe_failures()
        beat(due=False)

    def on_failure(event: FailureEvent) -> None:
        got(keeper.add(event))

    db = app.db
    records.set_status(db, "systemd.units", json.dumps(units))
    records.delete_status(db, "systemd.error")
    log.info("watching %s", ", ".join(units))
    beat("connecting")
    probes.start()
    try:
        watch_failures(
            units,
            on_failure,
            user=app.config.monitor.user,
            stop_after=duration,
            heartbeat=heartbeat,
            on_listening=beat,  # at once: not "connecting" for a heartbeat period after the matches are in place
            heartbeat_every=min(heartbeat_every, 0.25),  # called often, writes every heartbeat_every
        )
    except PimaintenoError as e:
        beat("error")
        records.set_status(app.db, "systemd.error", str(e))
        raise
    except BaseException:  # Ctrl-C, SIGTERM (systemctl stop)
        beat("stopped")
        raise
    finally:
        probes.stop()
    beat("stopped")
    return recorded
