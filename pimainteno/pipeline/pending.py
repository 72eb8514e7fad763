"""Commits the remote does not have yet: ask it first, push what it lacks, never force, never wedge.

A push can fail (a pre-receive hook, a remote that moved on) or land without pimainteno knowing
(a drain killed mid-push, whose `git push` finished later). So before pushing again a run fetches
the remote's branch:

    our HEAD is already in it        the commits are marked pushed (nothing is pushed twice)
    it is behind our HEAD            a fast-forward push, as usual
    it moved on (someone pushed)     pimainteno's own commits (patches and reverts) are replayed on the
                                     remote's tip in a worktree, proven again with the project's tests and
                                     pushed (a fast-forward); the checkout then moves to that commit
                                     (`reset --keep`: local changes stay, or it refuses)
    ...and that cannot be done       (the checkout has someone else's commits, a replay conflicts, the
                                     tests fail, the push is refused) the project is marked `diverged`
                                     (status key `diverged.<project>`, shown by `status`, `doctor` and the
                                     dashboard; a `diverged` notification when the mark is set)
                                     and later runs heal on the local checkout without pushing; the next
                                     run that finds the remote reconciled (someone merged or pulled)
                                     clears the mark

A failure here never stops a run: the service is healed on the local checkout whatever git says.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pimainteno import git, notify, records
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
    try:
        replayed = replay(app, project, tip, head, ref)
        return "ok", f"{project.remote} {ref} moved on to {tip[:12]}: {replayed}"
    except PimaintenoError as e:
        problem = str(e)
    why = (
        f"{project.remote} {ref} moved on to {tip[:12]}, which does not contain {head[:12]}, and {problem}; "
        "pimainteno heals on the local checkout without pushing until the two are reconciled (merge or rebase, "
        "then push)"
    )
    mark(app, project, why)
    records.note_push_error(app.db, project.name, why)
    return "skipped", why


def mark(app: App, project: Project, why: str) -> None:
    """Mark the project diverged; the owner is told once, when it becomes diverged (not on every run).
    The status row's time is when the current reason was first seen (it is rewritten only when it changes)."""
    before = diverged(app, project)
    if before == why:
        return
    log.warning("%s: diverged: %s", project.name, why)
    records.set_status(app.db, DIVERGED + project.name, why)
    if before is None:
        notify.about_diverged(app, project.name, why)


def replay(app: App, project: Project, tip: str, head: str, ref: str) -> str:
    """Replay pimainteno's own commits between ``tip`` and ``head`` on ``tip``, prove, push, and move the
    checkout there; what was done. PimaintenoError (nothing pushed, the checkout untouched) when it cannot."""
    from pimainteno.errors import ToolError
    from pimainteno.proof import ran_no_tests

    ours = {row["sha"] for row in records.unpushed(app.db, project.name)}
    local = git.git(project.path, "rev-list", "--reverse", "--no-merges", f"{tip}..{head}").split()
    merges = git.git(project.path, "rev-list", "--merges", f"{tip}..{head}").split()
    if merges or not local or any(sha not in ours for sha in local):
        raise ToolError("the checkout has commits pimainteno did not make")
    author = app.config.git.author_or_default
    name, email = author[: author.index("<")].strip(), author[author.index("<") + 1 : -1]
    mapping: dict[str, str] = {}
    with git.temporary_worktree(project.path, app.state_dir, f"{project.name}-replay", rev=tip) as wt:
        for sha in local:
            try:
                git.git(wt, "-c", f"user.name={name}", "-c", f"user.email={email}", "cherry-pick",
                        "--allow-empty", "--keep-redundant-commits", sha)  # fmt: skip
            except git.GitError:
                git.git(wt, "cherry-pick", "--abort", check=False)
                raise ToolError(f"replaying {sha[:12]} on it conflicts") from None
            mapping[sha] = git.head(wt)
        new = git.head(wt)
        if project.test:  # proven like any patch: in the proof sandbox, and the tests may change nothing tracked
            from pimainteno.pipeline.validate import run_tests, sandbox_problem

            if problem := sandbox_problem(project):
                raise ToolError(problem)
            result = run_tests(project, wt)
            if not result.ok or (empty := ran_no_tests(result)):
                why = result.error or (f"exit status {result.exit_status}" if not result.ok else empty)
                raise ToolError(f"the project's tests fail on the replay ({why})")
            if git.head(wt) != new or git.git(wt, "status", "--porcelain", "--untracked-files=no").strip():
                raise ToolError("the project's tests changed the replay's worktree; not pushing it")
        try:
            git.git(
                wt, "push", "--porcelain", "--quiet", project.remote, f"{new}:{ref}", timeout=app.config.git.timeout
            )
        except git.GitError as e:
            raise ToolError(f"the remote refused the replay ({e})") from None
    try:
        git.git(project.path, "reset", "--keep", "--quiet", new)
    except git.GitError as e:  # pushed, but local changes are in the way: the next run finds the remote ahead
        log.warning("%s: the replay %s is pushed, but the checkout cannot move to it: %s", project.name, new[:12], e)
    from pimainteno.pipeline.leftover import owe_restart, owed

    debt = owed(app, project)
    for old, replacement in mapping.items():
        records.replace_sha(app.db, project.name, old, replacement)
        if debt and debt[0] == old:  # a dead run's restart is owed for the replayed commit now
            owe_restart(app, project, replacement, debt[1])
    mark_all_pushed(app, project, ref)
    _resolved(app, project)
    log.info("%s: replayed %d commit(s) on %s and pushed %s", project.name, len(local), tip[:12], new[:12])
    return f"replayed {len(local)} commit(s) of pimainteno's on it, proven and pushed as {new[:12]}"


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
