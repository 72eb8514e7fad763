"""`watch`'s health probes: every monitored project with a `health` is probed every `health_interval`
seconds in a background thread; `health_failures` failures in a row are a failure of its unit.

The thread only probes (bounded by `health_timeout` each, commands in their own process group); it
hands each failing streak to the watch's own thread through a queue, and the watch records it
(failures.record_probe_failure: a `failures` row with result `probe`, the probe's output and the
journal, then a heal rate-limited like any other). A unit that is not active is not probed into a
failure: systemd's own signals report a unit that died, and a stopped unit was stopped on purpose.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING

from pimainteno.health import Probe, Prober, probe
from pimainteno.records import scrub

if TYPE_CHECKING:
    from pimainteno.config import Config, Project

log = logging.getLogger("pimainteno")


def probed_projects(config: Config) -> list[Project]:
    """The monitored projects that have a `health` probe."""
    watched = set(config.monitor.units)
    return [p for p in config.projects if p.health and (config.monitor.enabled or p.unit in watched)]


class ProbeThread:
    """Probe each project when due; put (project, last probe) on ``failing`` for each failed streak."""

    def __init__(self, projects: list[Project]) -> None:
        self.projects = projects
        self.prober = Prober()
        self.failing: queue.Queue[tuple[Project, Probe]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="pimainteno-probe")

    def start(self) -> None:
        if self.projects:
            log.info("probing %s", scrub(", ".join(f"{p.name} ({p.health})" for p in self.projects)))
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(max(p.health_timeout for p in self.projects) + 2)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for project in self.projects:
                now = time.monotonic()
                if self._stop.is_set() or not self.prober.due(project.name, now):
                    continue
                assert project.health is not None
                result = probe(project.health, project.health_timeout, project.path)
                if not result.ok:
                    log.info("%s: health probe failed: %s", project.name, scrub(result.detail))
                if self.prober.record(project.name, result, time.monotonic(), interval=project.health_interval,
                                      failures=project.health_failures):  # fmt: skip
                    self.failing.put((project, result))
            nearest = min(self.prober.streaks[p.name].next_at for p in self.projects)
            self._stop.wait(max(0.05, min(1.0, nearest - time.monotonic())))

    def take(self) -> list[tuple[Project, Probe]]:
        """The failed streaks found since the last call (called from the watch's own thread)."""
        found = []
        while True:
            try:
                found.append(self.failing.get_nowait())
            except queue.Empty:
                return found
