"""The spool directory of triggers: `enqueue` drops one, a drain claims and consumes them.

Layout of the queue directory (created 0700):

    <project>.<kind>.json            a pending trigger: one per project and kind (apply/reject: per proposal)
    .<name>.<pid>.<random>.tmp       a trigger being written; renamed or linked into place when complete
    .claimed/<pid>-<random>/         what one drain has taken; its `.lock` is flocked while that drain lives
    .rejected/<stamp>-<name>         malformed or unknown files moved aside, each with a `<name>.reason`

Everything but pending triggers has a dot-name, so `status` (which counts `*.json`) and systemd's
`DirectoryNotEmpty=` (which ignores hidden entries) only see pending work.

Only the standard library (and pimainteno.errors) is imported, so the web process can enqueue
cheaply. The git hook writes the same format in plain sh: `install-hook` fills its template from
Trigger.to_json (commands/hooks.py), so this module stays the one writer of the format.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from pimainteno.errors import InputError, ToolError

KINDS = ("run", "heal", "apply", "reject")
SOURCES = ("cli", "hook", "dashboard", "timer", "watch", "on-failure")
FORMAT = 1
MAX_ATTEMPTS = 3  # drains that may die while running one trigger before it is moved aside
MAX_BYTES = 64 * 1024
MAX_ID = 2**63 - 1  # SQLite's INTEGER range: a larger id cannot name a row, and crashes the driver
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # full match


class MalformedTrigger(InputError):
    """A trigger file that cannot be read as one; the drain moves it aside."""


def now() -> str:
    """UTC ISO-8601 with milliseconds, as records.now() (not imported: records pulls in db and sqlite_utils)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Trigger:
    project: str
    kind: str = "run"
    source: str = "cli"
    reason: str | None = None
    failure_id: int | None = None
    proposal_id: int | None = None
    requested_at: str = ""
    id: str = ""  # this version of the file (a merge writes a new one)
    requests: int = 1  # how many enqueues were merged into it
    attempts: int = 0  # drains that died while running it
    path: Path | None = field(default=None, compare=False)  # where it was read from

    @property
    def key(self) -> str:
        """The pending file's stem: what makes two requests the same one."""
        per_proposal = self.kind in ("apply", "reject")
        return f"{self.project}.{self.kind}" + (f"-{self.proposal_id}" if per_proposal else "")

    def to_json(self) -> bytes:
        data = {"format": FORMAT, **{k: v for k, v in asdict(self).items() if k != "path"}}
        return (json.dumps(data, indent=1) + "\n").encode()


def _check(t: Trigger) -> Trigger:
    """The trigger, or MalformedTrigger naming the first field that is wrong."""
    if not isinstance(t.project, str) or not NAME.fullmatch(t.project):
        raise MalformedTrigger(f"project: expected a project name, got {t.project!r}")
    if t.kind not in KINDS:
        raise MalformedTrigger(f"kind: expected one of {', '.join(KINDS)}, got {t.kind!r}")
    if t.source not in SOURCES:
        raise MalformedTrigger(f"source: expected one of {', '.join(SOURCES)}, got {t.source!r}")
    for name in ("failure_id", "proposal_id"):
        v = getattr(t, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_ID):
            raise MalformedTrigger(f"{name}: expected an id from 1 to {MAX_ID}, got {v!r}")
    if t.kind == "heal" and t.failure_id is None:
        raise MalformedTrigger("a heal needs failure_id")
    if t.kind in ("apply", "reject") and t.proposal_id is None:
        raise MalformedTrigger(f"{t.kind} needs proposal_id")
    if t.reason is not None and not isinstance(t.reason, str):
        raise MalformedTrigger(f"reason: expected text, got {t.reason!r}")
    for name in ("requested_at", "id"):
        if not isinstance(getattr(t, name), str):
            raise MalformedTrigger(f"{name}: expected text, got {getattr(t, name)!r}")
    for name in ("requests", "attempts"):
        v = getattr(t, name)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_ID:
            raise MalformedTrigger(f"{name}: expected a count, got {v!r}")
    return t


def parse_trigger(data: bytes) -> Trigger:
    """A trigger from a file's bytes, or MalformedTrigger saying what is wrong (unknown keys are ignored)."""
    if len(data) > MAX_BYTES:
        raise MalformedTrigger(f"too large ({len(data)} bytes)")
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # RecursionError: nested too deeply
        raise MalformedTrigger(f"not JSON: {e}") from None
    if not isinstance(raw, dict):
        raise MalformedTrigger("not a JSON object")
    if raw.get("format", FORMAT) != FORMAT:
        raise MalformedTrigger(f"format {raw.get('format')!r} is not {FORMAT} (written by another version?)")
    if "project" not in raw:
        raise MalformedTrigger("no project")
    known = {k: raw[k] for k in Trigger.__dataclass_fields__ if k in raw and k != "path"}
    return _check(Trigger(**known))


def _new_id() -> str:
    return os.urandom(8).hex()


def ensure_dir(queue_dir: Path) -> None:
    try:
        queue_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise ToolError(f"cannot create the queue directory {queue_dir}: {e.strerror}") from None


def _write_temp(directory: Path, name: str, data: bytes) -> Path:
    tmp = directory / f".{name}.{os.getpid()}.{_new_id()}.tmp"
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.write(data)
    return tmp


def _merge(old: Trigger, new: Trigger) -> Trigger:
    """One waiting request absorbs another: it keeps its place and source, gains the new details."""
    reason = old.reason
    if new.reason and new.reason not in (old.reason or "").split("; "):
        reason = f"{old.reason}; {new.reason}" if old.reason else new.reason
    return replace(
        old,
        reason=reason[:1000] if reason else None,
        failure_id=new.failure_id or old.failure_id,  # heal the latest failure
        requests=old.requests + 1,
        id=_new_id(),
    )


def enqueue(
    queue_dir: Path,
    project: str,
    *,
    kind: str = "run",
    source: str = "cli",
    reason: str | None = None,
    failure_id: int | None = None,
    proposal_id: int | None = None,
) -> tuple[Path, bool]:
    """Queue a trigger; returns its file and whether it was merged into one already waiting.

    Creating is atomic and never overwrites (a temporary file hard-linked into place); merging
    rewrites the waiting file through a rename. A drain that claims the file meanwhile simply makes
    this a new trigger, so no request is lost and none runs twice.
    """
    try:
        trigger = _check(Trigger(project, kind, source, reason or None, failure_id, proposal_id, now(), _new_id()))
    except MalformedTrigger as e:
        raise InputError(f"cannot queue: {e}") from None
    queue_dir = Path(queue_dir)
    ensure_dir(queue_dir)
    final = queue_dir / f"{trigger.key}.json"
    try:
        with _locked(queue_dir):  # read-merge-replace by two enqueues at once would lose one
            other = {"apply": "reject", "reject": "apply"}.get(kind)  # the first decision stands (the drain checks too)
            if other and (queue_dir / f"{replace(trigger, kind=other).key}.json").exists():
                what = "an approval" if other == "apply" else "a rejection"
                raise InputError(f"proposal #{proposal_id} already has {what} queued; approve and reject are exclusive")
            return _enqueue_locked(queue_dir, final, trigger)
    except OSError as e:
        raise ToolError(f"cannot write to the queue directory {queue_dir}: {e.strerror or e}") from None


@contextlib.contextmanager
def _locked(queue_dir: Path) -> Iterator[None]:
    """Serialise writers of pending files (drains only rename them away and need no lock)."""
    fd = os.open(queue_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _enqueue_locked(queue_dir: Path, final: Path, trigger: Trigger) -> tuple[Path, bool]:
    for _ in range(20):  # only a drain claiming the file at each step could keep us looping
        tmp = _write_temp(queue_dir, final.name, trigger.to_json())
        try:
            os.link(tmp, final)
            return final, False
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        try:
            merged = _merge(parse_trigger(final.read_bytes()), trigger)
        except FileNotFoundError:
            continue  # claimed meanwhile: queue a new one
        except MalformedTrigger:
            merged = None  # a broken file under our name: ours replaces it
        os.replace(_write_temp(queue_dir, final.name, (merged or trigger).to_json()), final)
        return final, merged is not None
    raise ToolError(f"cannot queue {trigger.key}: the file kept disappearing from {queue_dir}")


def _pending_files(queue_dir: Path) -> list[Path]:
    """Top-level entries that are not in progress (dot-names): each a trigger or junk to move aside.

    Junk must go too: anything left here keeps systemd's DirectoryNotEmpty= starting the drain.
    """
    try:
        with os.scandir(queue_dir) as it:
            return [Path(e.path) for e in it if not e.name.startswith(".")]
    except FileNotFoundError:
        return []


def _stamp(mtime: float) -> str:
    return datetime.fromtimestamp(mtime, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def scan(queue_dir: Path) -> list[tuple[Path, Trigger | MalformedTrigger]]:
    """Every pending file, oldest request first, with its trigger or what is wrong with it."""
    found: list[tuple[str, Path, Trigger | MalformedTrigger]] = []
    for path in _pending_files(queue_dir):
        item: Trigger | MalformedTrigger
        try:
            if path.suffix != ".json" or path.is_symlink() or not path.is_file():
                raise MalformedTrigger("not a trigger file (a regular *.json file)")
            item = replace(parse_trigger(path.read_bytes()), path=path)
            order = item.requested_at
        except MalformedTrigger as e:
            item, order = e, ""
        except OSError:
            continue  # claimed by a drain meanwhile
        with contextlib.suppress(OSError):
            order = order or _stamp(path.stat().st_mtime)
        found.append((order, path, item))
    found.sort(key=lambda f: (f[0], f[1].name))
    return [(path, item) for _, path, item in found]


def claimed(claim: Claim) -> Iterator[tuple[Path, Trigger | MalformedTrigger]]:
    """Triggers claimed one at a time: dead drains' first, then the pending ones, oldest first.

    The directory is read once per batch and the batch claimed in order (a file another drain took
    meanwhile is skipped); it is read again only when the batch is used up, until a read finds
    nothing to claim. Draining n triggers thus reads the directory a few times, not n times.
    """
    yield from claim.take_over_dead()
    while True:
        took = False
        for path, item in scan(claim.queue_dir):
            got = claim.take(path)
            if got is not None:
                took = True
                # The file may have been merged between scan and claim: what runs is what was claimed.
                yield got, item if isinstance(item, MalformedTrigger) else _read(got)
        if not took:
            return


def _read(path: Path) -> Trigger | MalformedTrigger:
    try:
        return replace(parse_trigger(path.read_bytes()), path=path)
    except MalformedTrigger as e:
        return e


def pending(queue_dir: Path) -> list[Trigger]:
    """The well-formed pending triggers, oldest first."""
    return [t for _, t in scan(Path(queue_dir)) if isinstance(t, Trigger)]


def reject(queue_dir: Path, path: Path, reason: str) -> Path:
    """Move a file aside into .rejected/ with a `.reason` file next to it; returns its new path."""
    aside = queue_dir / ".rejected"
    aside.mkdir(exist_ok=True, mode=0o700)
    target = aside / f"{now().replace(':', '')}-{path.name}"
    os.rename(path, target)
    target.with_name(target.name + ".reason").write_text(reason.rstrip() + "\n")
    return target


class Claim:
    """One drain's claim directory; its flocked `.lock` says the drain is alive.

    A trigger is taken by renaming it in here, which only one drain can do. Claims of a drain that
    died stay here, unlocked, until a later drain takes them over and runs them again.
    """

    def __init__(self, queue_dir: Path):
        self.queue_dir = Path(queue_dir)
        ensure_dir(self.queue_dir)
        root = self.queue_dir / ".claimed"
        root.mkdir(exist_ok=True, mode=0o700)
        name = f"{os.getpid()}-{_new_id()[:6]}"
        # Built under a dot-name and renamed into view already locked: a visible claim directory
        # without a held lock is always a dead drain's.
        building = root / f".new-{name}"
        building.mkdir(mode=0o700)
        self._lock = os.open(building / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.dir = root / name
        os.rename(building, self.dir)

    def take(self, path: Path) -> Path | None:
        """Claim a pending file; None if another drain got it first."""
        target = self.dir / path.name
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return None
        return target

    def take_over_dead(self) -> list[tuple[Path, Trigger | MalformedTrigger]]:
        """Claims left by drains that died, moved in here with one more attempt counted."""
        taken: list[tuple[Path, Trigger | MalformedTrigger]] = []
        for other in sorted(self.dir.parent.iterdir()):
            if other == self.dir:
                continue
            half_built = other.name.startswith(".new-")
            with contextlib.suppress(OSError):
                # Between creating its `.lock` and locking it, a drain's claim looks dead: give a
                # directory still being built a minute before treating it as abandoned.
                if half_built and other.stat().st_mtime > time.time() - 60:
                    continue
            try:
                fd = os.open(other / ".lock", os.O_RDWR)
            except FileNotFoundError:
                # No lock: a drain removing its empty directory, or one killed while building it.
                with contextlib.suppress(OSError):
                    taken += self._adopt(other)
                continue
            except OSError:
                continue  # not a directory
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                taken += self._adopt(other)
            except BlockingIOError:
                pass  # its drain is alive
            finally:
                os.close(fd)
        return taken

    def _adopt(self, dead: Path) -> list[tuple[Path, Trigger | MalformedTrigger]]:
        taken: list[tuple[Path, Trigger | MalformedTrigger]] = []
        try:
            paths = sorted(p for p in dead.iterdir() if not p.name.startswith("."))
        except FileNotFoundError:
            return taken  # its drain finished and removed it between our look and our lock
        for path in paths:
            target = self.dir / path.name
            item: Trigger | MalformedTrigger
            try:
                try:
                    item = parse_trigger(path.read_bytes())
                    item = replace(item, attempts=item.attempts + 1, id=_new_id())
                    if item.attempts >= MAX_ATTEMPTS:
                        raise MalformedTrigger(f"a drain died while running it {item.attempts} times")
                    os.replace(_write_temp(self.dir, path.name, item.to_json()), target)
                    os.unlink(path)
                    taken.append((target, replace(item, path=target)))
                except MalformedTrigger as e:
                    os.rename(path, target)
                    taken.append((target, e))
            except FileNotFoundError:
                continue  # another drain adopted it first
        with contextlib.suppress(OSError):
            for leftover in dead.iterdir():
                with contextlib.suppress(OSError):
                    os.unlink(leftover)
        with contextlib.suppress(OSError):
            dead.rmdir()
        return taken

    def close(self) -> None:
        """Release the claim, removing the directory when nothing is left in it.

        A trigger still in it (the drain was interrupted while running it) stays for the next drain.
        """
        with contextlib.suppress(OSError):
            if all(p.name == ".lock" for p in self.dir.iterdir()):
                os.unlink(self.dir / ".lock")
                self.dir.rmdir()
        os.close(self._lock)
