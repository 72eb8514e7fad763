"""Datasette metadata for pimainteno's database: titles, descriptions, default sorts, hidden tables."""

from __future__ import annotations

from typing import Any

TITLE = "pimainteno"
DESCRIPTION = (
    "What pimainteno did to keep these projects healthy: summaries, proposed patches, commits, "
    "failures, restarts and model calls. The overview is on the home page."
)

# table: (description, default sort column (newest first), {column: description})
TABLES: dict[str, tuple[str, str | None, dict[str, str]]] = {
    "projects": (
        "The configured projects, mirrored from PiMainteno.toml.",
        None,
        {
            "name": "Project name (unique)",
            "path": "Path of the project's git repository",
            "unit": "The systemd unit restarted after a change",
            "remote": "Git remote pushed to",
            "branch": "Branch pushed to (empty: the branch checked out)",
            "mode": "How far automatic runs go: propose, apply, commit or push",
            "provider": "Where patches come from: codex, command or llm",
            "proof": "How patches are proven: the tests in the sandbox, UNSAFE unsandboxed, or none (no test command)",
            "updated_at": "When this row was last synchronised from the configuration (UTC)",
        },
    ),
    "runs": (
        "One row per run of the chain (summarize, propose, validate, apply, commit, push, restart).",
        "started_at",
        {
            "id": "Run number",
            "project": "Project name",
            "trigger": "What started the run: timer, hook, dashboard, cli, watch, heal...",
            "failure_id": "The failure this run tries to heal, if any",
            "started_at": "Start (UTC)",
            "finished_at": "End (UTC)",
            "duration_s": "Duration in seconds",
            "status": "running, ok, nothing, failed, rejected, rolled_back, interrupted or skipped",
            "step": "The last step reached",
            "steps": "JSON list of {step, outcome, seconds, detail}",
            "proposal_id": "The proposal this run produced or applied",
            "commit_sha": "The commit this run made",
            "error": "Why the run failed, in one line",
            "pid": "Process id of the run",
        },
    ),
    "summaries": (
        "Project summaries, cached by git HEAD (no model call when nothing changed).",
        "created_at",
        {
            "id": "Summary number",
            "project": "Project name",
            "head": "The git commit summarised",
            "created_at": "When it was written (UTC)",
            "provider": "Who wrote it",
            "text": "The summary (Markdown, shown escaped)",
            "llm_call_id": "The model call that wrote it",
        },
    ),
    "proposals": (
        "Patches proposed by a model or a fixer, with their diff and what became of them.",
        "created_at",
        {
            "id": "Proposal number",
            "project": "Project name",
            "run_id": "The run that proposed it",
            "created_at": "When it was proposed (UTC)",
            "updated_at": "Last status change (UTC)",
            "base_head": "The commit the patch applies to",
            "provider": "Who wrote the patch",
            "reason": "Why a patch was asked for",
            "failure_id": "The failure it tries to fix, if any",
            "status": "proposed, approved, rejected, applied, committed, pushed, discarded or failed",
            "status_reason": "Why it has that status",
            "test_output": "Output of the project's tests on the patch",
            "files": "JSON list of the files it touches",
            "added": "Lines added",
            "removed": "Lines removed",
            "diff": "The unified diff",
        },
    ),
    "commits": (
        "Commits pimainteno made (patches and reverts) and whether they were pushed.",
        "created_at",
        {
            "id": "Commit record number",
            "project": "Project name",
            "run_id": "The run that committed",
            "proposal_id": "The proposal committed",
            "sha": "Commit id",
            "kind": "patch or revert",
            "message": "Commit message",
            "author": "Commit author",
            "created_at": "When it was committed (UTC)",
            "pushed_at": "When it was pushed (UTC)",
            "push_ref": "Where it was pushed",
            "push_error": "Why the push failed",
            "reverted_by": "The commit that reverted it",
        },
    ),
    "failures": (
        "Failures of the projects' systemd units, with a journal excerpt.",
        "detected_at",
        {
            "id": "Failure number",
            "project": "Project name",
            "unit": "The failed unit",
            "detected_at": "When it was seen (UTC)",
            "active_state": "systemd ActiveState",
            "result": "systemd Result (exit-code, signal, timeout...)",
            "exit_code": "systemd ExecMainCode",
            "exit_status": "Exit status of the main process",
            "invocation_id": "systemd invocation id",
            "journal": "The unit's last journal lines",
            "source": "Who noticed: watch, sweep or on-failure",
            "heal": "queued, then healed, proposed, rolled_back or failed when its run ended; gave_up, run, none or error",
            "run_id": "The healing run",
        },
    ),
    "restarts": (
        "Unit restarts after a change, and whether the unit stayed healthy.",
        "requested_at",
        {
            "id": "Restart number",
            "project": "Project name",
            "unit": "The restarted unit",
            "run_id": "The run that restarted it",
            "requested_at": "When the restart was asked for (UTC)",
            "finished_at": "When the outcome was known (UTC)",
            "outcome": "healthy, unhealthy or error",
            "active_state": "systemd ActiveState afterwards",
            "result": "systemd Result afterwards",
            "detail": "What happened",
        },
    ),
    "llm_calls": (
        "Every model call: provider, purpose, duration, outcome and tokens.",
        "started_at",
        {
            "id": "Call number",
            "project": "Project name",
            "run_id": "The run that made the call",
            "provider": "codex, command or llm",
            "purpose": "summary, patch or commit-message",
            "model": "Model name",
            "started_at": "Start (UTC)",
            "duration_s": "Duration in seconds",
            "exit_status": "Exit status of the provider's process",
            "outcome": "ok, failed, timeout or error",
            "thread_id": "The provider's session id",
            "input_tokens": "Input tokens",
            "cached_tokens": "Input tokens served from cache",
            "output_tokens": "Output tokens",
            "reasoning_tokens": "Reasoning tokens",
            "prompt_bytes": "Size of the prompt in bytes",
            "error": "Why the call failed",
        },
    ),
    "triggers": (
        "Triggers consumed from the queue (hook, timer, dashboard, watch...) and what they started.",
        "requested_at",
        {
            "id": "Trigger number",
            "project": "Project name",
            "kind": "run, heal, apply or reject",
            "source": "cli, hook, dashboard, timer, watch or on-failure",
            "reason": "Why it was queued",
            "failure_id": "The failure to heal",
            "proposal_id": "The proposal to apply or reject",
            "requested_at": "When it was queued (UTC)",
            "consumed_at": "When the drain took it (UTC)",
            "run_id": "The run it started",
            "status": "done, failed, malformed or unknown-project",
            "file": "The trigger file",
            "detail": "What happened",
        },
    ),
    "notifications": (
        "Every notification pimainteno sent, or tried to, through apprise (see docs/notifications.md).",
        "created_at",
        {
            "id": "Notification number",
            "created_at": "When (UTC)",
            "event": "pushed, rolled_back, heal_gave_up, failure, proposal_waiting, run_failed, stale or test",
            "project": "Project name",
            "target": "The apprise URL's scheme only (ntfy, mailto, json...): URLs carry secrets",
            "outcome": "sent, failed, timeout or held (past max_per_hour)",
            "error": "Why it was not delivered",
            "title": "The notification's title",
        },
    ),
    "status": (
        "Heartbeats of the long-running parts (scheduler, watcher, drain): key, value, last update.",
        None,
        {"key": "What reports (e.g. scheduler.status)", "value": "Its latest report", "updated_at": "When (UTC)"},
    ),
}

HIDDEN = ("_sqlite_migrations",)


def database_metadata() -> dict[str, Any]:
    tables: dict[str, Any] = {}
    for name, (description, sort, columns) in TABLES.items():
        # 50 rows a page: half Datasette's default, so a table page stays under 100 ms with 1M rows
        entry: dict[str, Any] = {"description": description, "columns": dict(columns), "size": 50}
        if sort:
            entry["sort_desc"] = sort
        tables[name] = entry
    tables["projects"]["label_column"] = "name"
    for name in HIDDEN:
        tables[name] = {"hidden": True}
    return {
        "title": "pimainteno database",
        "description": "Every step pimainteno took, one table per kind of record.",
        "tables": tables,
        "allow_sql": {"id": "root"},
    }


def build(database: str, config_path: str | None = None) -> dict[str, Any]:
    """The whole metadata document `pimainteno dashboard` passes to Datasette."""
    metadata: dict[str, Any] = {
        "title": TITLE,
        "description": DESCRIPTION,
        "allow_sql": {"id": "root"},
        "databases": {database: database_metadata()},
    }
    if config_path:
        metadata["plugins"] = {"pimainteno": {"config": config_path, "database": database}}
    return metadata
