"""Tell the owner what pimainteno did, through apprise (ntfy, Gotify, email, Matrix, Slack, webhooks…).

`[notify] urls` are apprise URLs; `events` says which of EVENTS are sent. Every notification is a
row in the `notifications` table: the event, the target's *scheme* only (a URL carries tokens and
passwords, so it is never stored or logged), the outcome and the error. A notifier that is down,
slow or refuses never fails nor slows a run beyond `[notify] timeout`. A flood is held back: past
`max_per_hour` sent in the last hour, notifications are recorded as `held`, and the next one sent
says how many were held.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pimainteno import records
from pimainteno.config.forms import scheme, url_problem
from pimainteno.config.schema import EVENTS

__all__ = [
    "EVENTS",
    "Sent",
    "about_diverged",
    "about_failure",
    "about_run",
    "link",
    "notify",
    "scheme",
    "url_problem",
    "wanted",
]
log = logging.getLogger("pimainteno")

TITLES = {
    "pushed": "pushed a fix",
    "rolled_back": "rolled a fix back",
    "heal_gave_up": "gave up healing",
    "failure": "a service failed",
    "proposal_waiting": "a proposal waits for approval",
    "run_failed": "a run failed",
    "stale": "a proposal went stale",
    "diverged": "diverged from its remote",
    "test": "test notification",
}
BODY_LIMIT = 2000


@dataclass(frozen=True)
class Sent:
    target: str  # the scheme, e.g. "ntfy", "json", "mailto"
    outcome: str  # sent, failed, timeout, held
    error: str | None = None


def _since(hours: float) -> str:
    when = datetime.now(UTC) - timedelta(hours=hours)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def notify(
    config: Any,
    db: Any,
    event: str,
    *,
    project: str | None,
    body: str,
    link: str | None = None,
    scrub: Callable[[str], str] = lambda s: s,
    force: bool = False,
) -> list[Sent]:
    """Send ``event`` to every configured target that wants it; record each attempt; never raise."""
    cfg = config.notify
    if not cfg.urls or (event not in cfg.events and not force):
        return []
    title = f"pimainteno: {project + ' ' if project else ''}{TITLES.get(event, event)}"
    text = scrub(body)[:BODY_LIMIT]
    if link:
        text += f"\n\n{link}"
    if not force and _flooded(db, cfg):
        log.info("notification %s held back: %d sent in the last hour (max_per_hour)", event, cfg.max_per_hour)
        return [_record(db, event, project, "all", "held", None, title)]
    held = _held_since_last(db)
    if held:
        text += f"\n\n({held} more notification(s) were held back in the last hour; see the dashboard)"
    sent = []
    for url, (outcome, error) in zip(cfg.urls, _send_all(cfg.urls, title, text, cfg.timeout), strict=True):
        if error:
            error = scrub(error)
            log.warning("notification %s to %s:// failed: %s", event, scheme(url), error)
        sent.append(_record(db, event, project, scheme(url), outcome, error, title))
    return sent


def _send_all(urls: Sequence[str], title: str, body: str, timeout: float) -> list[tuple[str, str | None]]:
    """Every target at once, each in a thread, all within one deadline (apprise's own timeouts are per
    socket operation): a slow target never holds up the others, nor the caller past ``timeout``."""
    boxes: list[list[tuple[str, str | None]]] = [[] for _ in urls]
    threads = [threading.Thread(target=_deliver, args=(url, title, body, box), daemon=True, name="pimainteno-notify")
               for url, box in zip(urls, boxes, strict=True)]  # fmt: skip
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    late = ("timeout", f"no answer within {timeout:g}s ([notify] timeout)")
    return [box[0] if box else late for box in boxes]


def _deliver(url: str, title: str, body: str, box: list[tuple[str, str | None]]) -> None:
    """One delivery into ``box``; every fault becomes its outcome (a notifier never breaks a run)."""
    try:
        import apprise

        ap = apprise.Apprise()
        asset_logger = logging.getLogger("apprise")
        asset_logger.setLevel(logging.CRITICAL)  # apprise logs full URLs, tokens included
        if not ap.add(url):
            box.append(("failed", f"apprise does not understand this {scheme(url)}:// URL"))
            return
        ok = ap.notify(title=title, body=body)
        box.append(("sent", None) if ok else ("failed", f"the {scheme(url)} target refused or was unreachable"))
    except Exception as e:  # a notifier must never break a run
        box.append(("failed", f"{type(e).__name__}: {e}"))


def _flooded(db: Any, cfg: Any) -> bool:
    return records.notifications_sent_since(db, _since(1)) >= cfg.max_per_hour


def _held_since_last(db: Any) -> int:
    return records.notifications_held_since_last_sent(db, _since(1))


def _record(db: Any, event: str, project: str | None, target: str, outcome: str, error: str | None,
            title: str) -> Sent:  # fmt: skip
    records.add_notification(db, event=event, project=project, target=target, outcome=outcome, error=error,
                             title=title)  # fmt: skip
    return Sent(target, outcome, error)


def wanted(config: Any, events: Iterable[str]) -> bool:
    """Whether any of ``events`` would be sent (callers skip building a body otherwise)."""
    cfg = config.notify
    return bool(cfg.urls) and any(e in cfg.events for e in events)


# --- what pimainteno tells, and when --------------------------------------------------------------
#
# A run ends: pushed (a commit pushed and its unit healthy, or not restarted), rolled_back, run_failed,
# proposal_waiting (its proposal waits for a person), stale (its proposal no longer applies). A
# failure is recorded: failure, or heal_gave_up when the heal limit holds its heal back. A project is
# marked diverged from its remote: diverged (once, when the mark is set). Each is sent once, from one place; none of this may fail or slow the run beyond `[notify] timeout` per target.

WAITING_STATUSES = ("proposed", "approved", "validated", "checked")


def link(app: Any, table: str, row_id: int | None) -> str | None:
    """The dashboard page of one row, when `[web] url` is set."""
    base = app.config.web.url
    if not base or row_id is None:
        return None
    return f"{base.rstrip('/')}/{app.database_path.stem}/{table}/{row_id}"


def run_event(app: Any, outcome: Any) -> tuple[str, str, str | None] | None:
    """(event, body, link) for a finished run, or None when it is not news."""
    what = f"run #{outcome.run_id}"
    proposal = records.proposal_row(app.db, outcome.proposal_id) if outcome.proposal_id is not None else None
    if outcome.status == "rolled_back":
        return "rolled_back", f"{what}: {outcome.error}", link(app, "runs", outcome.run_id)
    if outcome.status == "failed":
        return "run_failed", f"{what} failed: {outcome.error}", link(app, "runs", outcome.run_id)
    if proposal and proposal["status"] == "stale":
        body = f"{what}: proposal #{proposal['id']} no longer applies at HEAD: {proposal['status_reason'] or ''}"
        return "stale", body.rstrip(": "), link(app, "proposals", proposal["id"])
    if outcome.status != "ok":
        return None
    if outcome.commit_sha:
        row = records.commit_row(app.db, outcome.project, outcome.commit_sha)
        if row and row["pushed_at"]:
            subject = (row["message"] or "").splitlines()[0] if row["message"] else ""
            body = f'{what} pushed {outcome.commit_sha[:12]} "{subject}" to {row["push_ref"]}'
            if proposal:
                body += f" (proposal #{proposal['id']})"
            return "pushed", body, link(app, "runs", outcome.run_id)
        return None
    if proposal and proposal["status"] in WAITING_STATUSES:
        body = f"{what}: proposal #{proposal['id']} ({proposal['status']}) waits for approval"
        return "proposal_waiting", body, link(app, "proposals", proposal["id"])
    return None


def about_run(app: Any, outcome: Any) -> list[Sent]:
    """Tell the owner how a run ended, if they asked for that event; never raises."""
    try:
        if not wanted(app.config, EVENTS):
            return []
        found = run_event(app, outcome)
        if found is None or not wanted(app.config, [found[0]]):
            return []
        event, body, where = found
        return notify(app.config, app.db, event, project=outcome.project, body=body, link=where, scrub=records.scrub)
    except Exception as e:  # a notification never breaks what it reports on
        log.warning("could not notify about run #%s: %s", getattr(outcome, "run_id", "?"), e)
        return []


def about_failure(app: Any, recorded: Any) -> list[Sent]:
    """Tell the owner a unit failed (or that its heal was given up); never raises.

    A failure pimainteno's own restart caused (heal `run`) is reported by that run's rollback."""
    try:
        if recorded.duplicate or recorded.heal == "run":
            return []
        event = "heal_gave_up" if recorded.heal == "gave_up" else "failure"
        if not wanted(app.config, [event]):
            return []
        what = (
            "is active but failed its health probe"
            if recorded.result == "probe"
            else f"failed ({recorded.result}, status {recorded.exit_status})"
        )
        body = f"failure #{recorded.failure_id}: {recorded.unit} {what}; heal {recorded.heal}" + (
            f": {recorded.detail}" if recorded.detail else ""
        )
        return notify(app.config, app.db, event, project=recorded.project, body=body,
                      link=link(app, "failures", recorded.failure_id), scrub=records.scrub)  # fmt: skip
    except Exception as e:  # a notification never breaks what it reports on
        log.warning("could not notify about failure #%s: %s", getattr(recorded, "failure_id", "?"), e)
        return []


def about_diverged(app: Any, project: str, why: str) -> list[Sent]:
    """Tell the owner a project was just marked diverged (pipeline.pending sends it once per divergence)."""
    try:
        if not wanted(app.config, ["diverged"]):
            return []
        body = (
            f"{project} is diverged from its remote: {why}. The first run that finds them reconciled clears the mark."
        )
        return notify(app.config, app.db, "diverged", project=project, body=body, scrub=records.scrub)
    except Exception as e:  # a notification never breaks what it reports on
        log.warning("could not notify that %s diverged: %s", project, e)
        return []
