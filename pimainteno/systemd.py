"""systemd over D-Bus (pystemd): restart a unit and check it stays healthy, watch units for
failures, read a unit's state (journal excerpts: pimainteno.journal). pystemd is imported lazily.

One connection per call: as root, like ``systemctl``, the manager's own ``/run/systemd/private``
(no dbus-daemon needed), else the system bus (``user=True``: ``$XDG_RUNTIME_DIR/systemd/private``,
else the session bus); ``PIMAINTENO_SYSTEMD_BUS=bus|private`` forces one. Signal callbacks are
plain functions kept referenced (pystemd gives C a borrowed pointer) that call
``msg.process_reply`` before reading ``msg.body``, never raise and only record. ``DBus.wait()``
holds the GIL, so we ``select()``. A crashing ``Restart=`` unit is ``activating``, not ``failed``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import logging
import os
import select
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pimainteno.errors import ToolError
from pimainteno.journal import journal_excerpt as journal_excerpt  # callers import it from here

# pystemd is the optional [systemd] extra: building it needs libsystemd-dev, pkg-config and gcc.
SYSTEMD_EXTRA_HINT = (
    "pystemd is not installed ({exc}): apt install libsystemd-dev pkg-config gcc && pip install 'pimainteno[systemd]'"  # noqa: E501
)

DEST = b"org.freedesktop.systemd1"
MANAGER_PATH = b"/org/freedesktop/systemd1"
MANAGER = b"org.freedesktop.systemd1.Manager"
UNIT = b"org.freedesktop.systemd1.Unit"
SERVICE = b"org.freedesktop.systemd1.Service"
PROPERTIES = b"org.freedesktop.DBus.Properties"
RESULT_TYPES = ("service", "socket", "mount", "swap", "timer", "path", "automount", "scope")  # have Result=
EXIT_CODES = {1: "exited", 2: "killed", 3: "dumped", 4: "trapped", 5: "stopped", 6: "continued"}
LOST = {errno.ECONNRESET, errno.ENOTCONN, errno.EPIPE, errno.ECONNREFUSED, errno.ENOENT, errno.ESHUTDOWN}
COMMON = {"active_state": "ActiveState", "sub_state": "SubState", "result": "Result", "invocation_id": "InvocationID"}
EVENT_FIELDS = {**COMMON, "exit_code": "ExecMainCode", "exit_status": "ExecMainStatus", "failed_at": "FailedAt"}
RESTART_FIELDS = {**COMMON, "exec_main_status": "ExecMainStatus"}
TEXT_PROPERTIES = ("LoadState", "ActiveState", "SubState", "Result", "Type", "InvocationID")
Signals = list[tuple[str, float, Any]]  # (tag, time.monotonic() on arrival, message body)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartResult:
    healthy: bool
    active_state: str
    sub_state: str
    result: str
    exec_main_status: int
    detail: str
    duration_s: float
    invocation_id: str = ""  # the run after the restart: journal_excerpt(invocation_id=...)
    job_result: str = ""  # done, failed, canceled, dependency...; "" when it did not finish in time
    # systemd refused the start itself (its start limit), even after ResetFailed: the unit never
    # ran the new code, so this says nothing about a change: not "unhealthy", not a reason to revert.
    start_limited: bool = False


@dataclass(frozen=True)
class FailureEvent:
    unit: str
    active_state: str
    sub_state: str
    result: str  # exit-code, signal, core-dump, timeout, start-limit-hit...
    exit_code: str  # ExecMainCode as text: exited, killed, dumped ("" when not a service)
    exit_status: int  # the exit status, or the signal number when killed/dumped
    invocation_id: str
    detected_at: float  # time.monotonic() when the signal (or the sweep) saw it
    detected_wall: str  # UTC ISO-8601
    swept: bool = False  # already failed when the watch (re)connected
    failed_at: float = 0.0  # epoch seconds when systemd saw it fail (InactiveEnterTimestamp); 0: unknown


class BusLost(ToolError):
    """The connection to systemd went away (daemon-reexec, dbus restart)."""


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list):  # "ay", e.g. InvocationID
        return bytes(value).hex()
    return "" if value is None else str(value)


def _recorder(signals: Signals, tag: str) -> Callable[..., None]:  # a plain function, as pystemd needs
    def record(msg: Any, error: Any = None, userdata: Any = None) -> None:
        try:
            arrived = time.monotonic()
            msg.process_reply(False)
            signals.append((tag, arrived, msg.body))
        except Exception:  # noqa: BLE001 - raising into pystemd's C callback is undefined
            pass

    return record


class _Bus:
    """One pystemd connection to the systemd manager, with the few calls this module needs."""

    def __init__(self, user: bool) -> None:
        try:
            from pystemd import dbuslib
            from pystemd.dbusexc import DBusBaseError
        except ImportError as exc:
            raise ToolError(SYSTEMD_EXTRA_HINT.format(exc=exc)) from None
        self._apply_signature, self._error = dbuslib.apply_signature, DBusBaseError
        self._callbacks: list[Callable[..., None]] = []
        scope, mode = ("user" if user else "system"), os.environ.get("PIMAINTENO_SYSTEMD_BUS", "auto")
        attempts: list[tuple[str, Callable[[], Any]]] = []
        runtime = os.environ.get("XDG_RUNTIME_DIR", "") if user else "/run" if os.geteuid() == 0 else ""
        private = f"{runtime}/systemd/private" if runtime and os.path.exists(f"{runtime}/systemd/private") else ""
        if private and mode in ("auto", "private"):
            attempts.append((private, lambda: dbuslib.DBusAddress(f"unix:path={private}".encode(), peer_to_peer=True)))
        if mode in ("auto", "bus"):
            attempts.append((f"the {scope} bus", lambda: dbuslib.DBus(user_mode=user)))
        problems = []
        for where, make in attempts:
            try:
                self._bus = make()
                self._bus.open()
                self._fd = self._bus.get_fd()
                return
            except DBusBaseError as exc:
                problems.append(f"{where}: {_text(getattr(exc, 'err_message', ''))} ({os.strerror(abs(exc.errno))})")
        detail = "; ".join(problems) or f"no {scope} manager socket, PIMAINTENO_SYSTEMD_BUS={mode}"
        raise ToolError(f"cannot reach the systemd {scope} manager over D-Bus ({detail}); is systemd running?")

    def close(self) -> None:
        with contextlib.suppress(self._error):  # closing a dead connection must not hide the real error
            self._bus.close()

    @contextlib.contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        try:  # pystemd's errors as one-line ToolErrors; BusLost when the connection is gone
            yield
        except self._error as exc:
            code = abs(getattr(exc, "errno", 0) or 0)
            message = _text(getattr(exc, "err_message", "") or str(exc)).strip() or os.strerror(code)
            lost = code in LOST and not getattr(exc, "err_name", "")
            raise (BusLost if lost else ToolError)(f"systemd D-Bus call failed while {doing}: {message}") from None

    def call(self, method: bytes, signature: bytes = b"", *args: Any, path: bytes = MANAGER_PATH) -> Any:
        interface = MANAGER if path == MANAGER_PATH else UNIT  # the manager's methods, or a unit's
        with self._guard(f"calling {method.decode()}{tuple(_text(a) for a in args)}"):
            call_args = self._apply_signature(signature, list(args))
            return self._bus.call_method(DEST, path, interface, method, call_args).body

    def get(self, path: bytes, interface: bytes, name: str, signature: bytes) -> Any:
        with self._guard(f"reading {name}"):
            return self._bus.get_property(DEST, path, interface, name.encode(), signature)

    def match(self, path: bytes, interface: bytes, member: bytes, callback: Callable[..., None]) -> None:
        self._callbacks.append(callback)  # pystemd does not hold a reference: keep it alive
        with self._guard(f"subscribing to {member.decode()}"):
            self._bus.match_signal(None, path, interface, member, callback)

    def pump(self, timeout: float) -> None:
        """Dispatch what is queued; if nothing was, wait up to ``timeout`` s (GIL released) for more."""
        if not self._drain() and timeout > 0:
            select.select([self._fd], [], [], timeout)
            self._drain()

    def _drain(self) -> bool:
        got, empties = False, 0  # empty: nothing left, or a message without a body; stop at three in a row
        with self._guard("reading signals"):
            while empties < 3:
                empty = self._bus.process().is_empty()
                got, empties = got or not empty, empties + 1 if empty else 0
        return got


def _state(raw: dict[str, Any]) -> dict[str, Any]:
    """Property values (bytes, int lists) as the str/int dict that unit_state() returns."""
    state: dict[str, Any] = {name: _text(raw.get(name)) for name in TEXT_PROPERTIES}
    state["ExecMainStatus"] = int(raw.get("ExecMainStatus") or 0)
    state["ExecMainCode"] = EXIT_CODES.get(int(raw.get("ExecMainCode") or 0), "")
    state["FailedAt"] = int(raw.get("InactiveEnterTimestamp") or 0) / 1e6  # usec since the epoch; 0: never
    return state


def _read_state(bus: _Bus, path: bytes, unit: str) -> dict[str, Any]:
    names = (("LoadState", b"s"), ("ActiveState", b"s"), ("SubState", b"s"), ("InvocationID", b"ay"),
             ("InactiveEnterTimestamp", b"t"))  # fmt: skip
    raw = {name: bus.get(path, UNIT, name, sig) for name, sig in names}
    kind = unit.rpartition(".")[2]
    if kind == "service":
        typed = (("Result", b"s"), ("ExecMainStatus", b"i"), ("ExecMainCode", b"i"), ("Type", b"s"))
        raw.update({name: bus.get(path, SERVICE, name, sig) for name, sig in typed})
    elif kind in RESULT_TYPES:
        raw["Result"] = bus.get(path, b"org.freedesktop.systemd1." + kind.capitalize().encode(), "Result", b"s")
    return _state(raw)


def unit_state(unit: str, *, user: bool = False) -> dict[str, Any]:
    """ActiveState, SubState, Result, ExecMainStatus (int), ExecMainCode (text: exited, killed,
    dumped), InvocationID (hex), Type ("" unless a service), LoadState and FailedAt (epoch seconds it last
    went inactive or failed, 0 never), on one connection."""
    with contextlib.closing(_Bus(user)) as bus:
        return _read_state(bus, bytes(bus.call(b"LoadUnit", b"s", unit)), unit)


def _describe(unit: str, state: dict[str, Any]) -> str:
    extra = f", result {state['Result']}" if state["Result"] not in ("", "success") else ""
    if state["ExecMainCode"]:
        extra += f", main process {state['ExecMainCode']} with status {state['ExecMainStatus']}"
    return f"{unit} is {state['ActiveState']} ({state['SubState']}){extra}"


def refused_by_start_limit(job_result: str, state: dict[str, Any], invocation_before: str) -> bool:
    """Whether a finished start/restart job was refused by the unit's start limit: it failed without
    a new run of the unit. (systemd 252 logs "Start request repeated too quickly" but keeps the
    Result of the failure before, e.g. exit-code; later versions say start-limit-hit.)"""
    if job_result != "failed":
        return False
    return state["Result"] == "start-limit-hit" or state["InvocationID"] == invocation_before


def _start_limit(bus: _Bus, path: bytes) -> str:
    burst = int(bus.get(path, UNIT, "StartLimitBurst", b"u") or 0)
    interval = int(bus.get(path, UNIT, "StartLimitIntervalUSec", b"t") or 0) / 1e6
    return f"StartLimitBurst={burst} starts within StartLimitIntervalSec={interval:g}s"


def restart_and_wait(unit: str, *, user: bool = False, timeout: float = 90, settle: float = 10) -> RestartResult:
    """Reset ``unit``'s failed state and start-limit counter (Unit.ResetFailed), then restart it;
    healthy if the job finished ``done`` within ``timeout`` s and the unit then stayed ``active``
    (same invocation) for ``settle`` s, or, for a oneshot, ended with Result ``success``. Unhealthy
    as soon as it leaves ``active``; ``start_limited`` when systemd still refused the start.
    ToolError if missing or refused otherwise."""
    started = time.monotonic()
    signals: Signals = []
    with contextlib.closing(_Bus(user)) as bus:
        bus.call(b"Subscribe")  # without it systemd sends nothing on the system bus
        path = bytes(bus.call(b"LoadUnit", b"s", unit))  # loads it (LoadState not-found if missing)
        if _text(bus.get(path, UNIT, "LoadState", b"s")) == "not-found":
            raise ToolError(f"systemd has no unit {unit}")
        bus.match(MANAGER_PATH, MANAGER, b"JobRemoved", _recorder(signals, "job"))
        bus.match(path, PROPERTIES, b"PropertiesChanged", _recorder(signals, "unit"))
        # A unit that crash-looped (Restart=) may have used up its start limit: a restart would
        # be refused ("Start request repeated too quickly") and a good fix judged unhealthy.
        invocation_before = _text(bus.get(path, UNIT, "InvocationID", b"ay"))
        try:  # the unit's own method: the manager's ResetFailedUnit needs the unit loaded
            bus.call(b"ResetFailed", path=path)
        except BusLost:
            raise
        except ToolError as exc:  # the restart itself may still be allowed: let it say
            log.warning("%s; restarting without the reset", exc)
        job = bytes(bus.call(b"RestartUnit", b"ss", unit, "replace"))
        job_result = ""  # from JobRemoved (id, job, unit, result), matched before the call: never missed
        while not job_result and (left := started + timeout - time.monotonic()) > 0:
            bus.pump(min(left, 1.0))
            job_result = next((_text(b[3]) for tag, _, b in signals if tag == "job" and bytes(b[1]) == job), "")
        state = _read_state(bus, path, unit)

        def result(healthy: bool, detail: str) -> RestartResult:
            fields = {field: state[key] for field, key in RESTART_FIELDS.items()}
            duration = round(time.monotonic() - started, 3)
            return RestartResult(healthy=healthy, detail=detail, duration_s=duration, job_result=job_result, **fields)

        if not job_result:
            return result(False, f"the restart did not finish within {timeout:g}s: {_describe(unit, state)}")
        if refused_by_start_limit(job_result, state, invocation_before):
            why = (
                f"systemd refused to start {unit} (start-limit-hit: {_start_limit(bus, path)}), even after resetting it"
            )
            return dataclasses.replace(result(False, why), start_limited=True)
        if state["Type"] == "oneshot":
            healthy = job_result == "done" and state["Result"] == "success"
            return result(healthy, f"{_describe(unit, state)} (oneshot, job {job_result})")
        if job_result != "done" or state["ActiveState"] != "active":
            return result(False, f"restart job {job_result}: {_describe(unit, state)}")
        invocation, left_active = state["InvocationID"], False
        signals.clear()  # only pump() dispatches signals: none can slip in between
        settle_start = time.monotonic()
        while not left_active and (left := settle_start + settle - time.monotonic()) > 0:
            bus.pump(min(left, 1.0))
            left_active = any(
                tag == "unit" and body[0] == UNIT and _text(body[1].get(b"ActiveState", b"active")) != "active"
                for tag, _, body in signals
            )
        state = _read_state(bus, path, unit)
        after = f"{time.monotonic() - settle_start:.1f}s after the restart"
        if left_active or state["ActiveState"] != "active":
            return result(False, f"{_describe(unit, state)} {after}")
        if state["InvocationID"] != invocation:
            return result(False, f"{unit} was started again by systemd within {after}")
        return result(True, f"{unit} stayed active ({state['SubState']}) for {settle:g}s after the restart")


def watch_failures(
    units: list[str],
    on_failure: Callable[[FailureEvent], None],
    *,
    user: bool = False,
    stop_after: float | None = None,
    heartbeat: Callable[[], None] | None = None,
    heartbeat_every: float = 5.0,
    on_listening: Callable[[], None] | None = None,
) -> None:
    """Call ``on_failure`` within milliseconds (PropertiesChanged) when one of ``units`` (existing
    or not yet) enters ``failed``; on connecting, a sweep reports units already failed
    (``swept=True``). Each (unit, invocation, result) is reported once. Reconnects with backoff if
    the bus goes away; ``on_listening`` runs once per connection as soon as the matches are in place
    and the sweep is done; ``heartbeat`` runs every ``heartbeat_every`` s while connected; returns after
    ``stop_after`` s. Exceptions from the callbacks propagate; ToolError if never connected."""
    deadline = None if stop_after is None else time.monotonic() + stop_after
    reported: dict[str, tuple[str, str]] = {}

    def report(unit: str, detected_at: float, state: dict[str, Any], swept: bool = False) -> None:
        key = (state["InvocationID"], state["Result"])
        # A start first re-signals "failed" with Result reset to success and a new invocation.
        if state["ActiveState"] != "failed" or state["Result"] == "success" or reported.get(unit) == key:
            return
        reported[unit] = key
        wall = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        fields = {field: state[key] for field, key in EVENT_FIELDS.items()}
        if not fields["failed_at"]:  # systemd did not say when: when its signal arrived
            fields["failed_at"] = time.time() - (time.monotonic() - detected_at)
        on_failure(FailureEvent(unit=unit, detected_at=detected_at, detected_wall=wall, swept=swept, **fields))

    def session(bus: _Bus) -> None:
        signals: Signals = []
        bus.call(b"Subscribe")
        paths = {unit: bytes(bus.call(b"LoadUnit", b"s", unit)) for unit in units}  # existing or not (yet)
        for unit, path in paths.items():
            bus.match(path, PROPERTIES, b"PropertiesChanged", _recorder(signals, unit))
        for unit, path in paths.items():  # the sweep, after the matches: no failure falls in between
            report(unit, time.monotonic(), _read_state(bus, path, unit), swept=True)
        if on_listening is not None:
            on_listening()
        # systemd signals the type-specific properties (Result, ExecMain*) just before the Unit ones.
        typed: dict[str, dict[str, Any]] = {unit: {} for unit in units}
        next_beat = time.monotonic() + heartbeat_every
        while True:
            bus.pump(0)
            while signals:
                unit, arrived, (interface, changed, *_) = signals.pop(0)
                props = {key.decode(): value for key, value in changed.items()}
                if interface != UNIT:
                    typed[unit].update(props)
                elif _text(props.get("ActiveState")) == "failed":
                    state = _state({**typed[unit], **props})
                    if not state["Result"]:  # no type-specific signal seen yet: ask
                        fresh = _read_state(bus, paths[unit], unit)
                        state = {**fresh, "ActiveState": "failed", "InvocationID": state["InvocationID"]}
                    report(unit, arrived, state)
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return
            if heartbeat is not None and now >= next_beat:
                heartbeat()
                next_beat = time.monotonic() + heartbeat_every
            limits = [1.0, next_beat - now if heartbeat else 1.0, deadline - now if deadline is not None else 1.0]
            bus.pump(max(0.001, min(limits)))

    connected_once, delay = False, 0.0
    while deadline is None or time.monotonic() < deadline:
        try:
            bus = _Bus(user)
        except ToolError as exc:
            if not connected_once:
                raise
            log.warning("%s; retrying", exc)
        else:
            connected_once, began = True, time.monotonic()
            try:
                with contextlib.closing(bus):
                    session(bus)
                    return
            except BusLost as exc:
                log.warning("%s; reconnecting", exc)
                delay = 0.0 if time.monotonic() - began > 30 else delay  # a flapping bus keeps backing off
        delay = min(max(delay * 2, 0.05), 5.0)
        time.sleep(delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic())))
