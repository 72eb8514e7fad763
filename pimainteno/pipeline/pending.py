"""Commits the remote does not have yet: ask it first, push what it lacks, never force, never wedge.

A push can fail (a pre-receive hook, a remote that moved on) or land without pimainteno knowing
(a drain killed mid-push, whose `git push` finished later). So before pushing again a run fetches
the remote's branch:

    our HEAD is already in it        the commits are marked pushed (nothing is pushed twice)
    it is behind our HEAD            a fast-forward push, as usual
    it moved on (someone pushed)     the project is marked `diverged` (status key `diverged.<project>`,
                                     shown by `status`, the dashboard and `doctor`) and later runs heal
                                     on the local checkout without pushing; the next run that finds the
                                     remote reconciled (someone merged or pulled) clears the mark

A failure here never stops a run: the service is healed on the local checkout whatever git says.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pimainteno import git, records
from pimainteno.errors import PimaintenoError

if TYPE_CHECKING:
    from pimainteno.app import App
    from pimainteno.config import Project

log = logging.getLogger("pimainteno")

DIVERGED = "diverged."  # status key prefix; the value says why


def diverged(app: App, project: Project) -> str | None:
    """Why the project is marked diverged from its remote, or None."""
    return records.status_value(app.db, DIVERGED + project.name)


def remote_tip(app: App, project: Project, ref: str) -> str | None:
    """Fetch the remote's ``ref`` (no local branch changes); its commit, or None when the remote has no such branch."""
    listed = git.git(project.path, "ls-remote", project.remote, ref, timeout=app.config.git.timeout).split()
    if not listed:
        return None
    git.git(project.path, "fetch", "--quiet", "--no-tags", project.remote, ref, timeout=app.config.git.timeout)
    return git.git(project.path, "rev-parse", "FETCH_HEAD^{commit}").strip()


def push_pending(app: App, project: Project, *, run_id: int | None = None) -> tuple[str, str]:
    """Bring the remote up to date with pimainteno's unpushed commits; (step outcome, detail). Never raises
    for the remote's sake: a refusal is recorded on the commits and the run goes on."""
    from pimainteno.pipeline.land import push, target_ref

    try:
        ref = target_ref(project)
        tip = remote_tip(app, project, ref)
        head = git.head(project.path)
    except PimaintenoError as e:
        records.note_push_error(app.db, project.name, str(e))
        return "failed", f"cannot ask {project.remote} about its branch ({e}); the commits stay local"
    if tip is not None and git.is_ancestor(project.path, head, tip):
        rows = mark_all_pushed(app, project, ref)
        _resolved(app, project)
        return "ok", f"{project.remote} already has {head[:12]}: {len(rows)} commit(s) marked pushed"
    if tip is None or git.is_ancestor(project.path, tip, head):
        try:
            push(app, project, run_id=run_id)
        except PimaintenoError as e:  # recorded on the commits by push()
            return "failed", str(e)
        _resolved(app, project)
        return "ok", f"pushed {head[:12]}"
    why = (
        f"{project.remote} {ref} moved on to {tip[:12]}, which does not contain {head[:12]}; pimainteno heals "
        "on the local checkout without pushing until the two are reconciled (merge or rebase, then push)"
    )
    if diverged(app, project) != why:
        log.warning("%s: diverged: %s", project.name, why)
    records.set_status(app.db, DIVERGED + project.name, why)
    records.note_push_error(app.db, project.name, why)
    return "skipped", why


def push_or_hold(app: App, project: Project, *, run_id: int | None = None) -> tuple[str, str]:
    """The run's push: skipped while diverged, recorded (not raised) when refused; (step outcome, detail)."""
    from pimainteno.pipeline.land import push

    why = diverged(app, project)
    if why:
        return "skipped", f"not pushing: {why}"
    try:
        return "ok", push(app, project, run_id=run_id)
    except PimaintenoError as e:  # the commit stays local, recorded; the unit is still restarted on it
        return "failed", str(e)


def mark_all_pushed(app: App, project: Project, ref: str) -> list[dict[str, object]]:
    """The remote has every unpushed commit (a push that landed unseen): mark them, as push() would."""
    rows = records.mark_pushed(app.db, project.name, f"{project.remote} {ref}")
    for row in rows:
        proposal_id = row["proposal_id"] if row["kind"] == "patch" else None
        if proposal_id is not None and records.get_proposal(app.db, proposal_id).status == "committed":
            records.transition(app.db, proposal_id, records.ProposalStatus.PUSHED, actor="pimainteno",
                               reason=f"{project.remote} {ref} (found there)")  # fmt: skip
    return rows


def _resolved(app: App, project: Project) -> None:
    if diverged(app, project):
        log.info("%s: the remote and the local checkout are reconciled; pushing again", project.name)
        records.delete_status(app.db, DIVERGED + project.name)
