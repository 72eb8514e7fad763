"""Fold `codex exec --json` events into a Call.

Success is decided from the events (a ``turn.completed`` and no ``turn.failed``), never from the
exit code: codex can exit 0 after a failed turn, or 1 after a fine one. A turn in which every
command failed with a sandbox error is a failure too, whatever the model's final message claims.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from pimainteno.providers.call import Call

log = logging.getLogger("pimainteno")

# What a broken sandbox prints instead of running the command (bwrap without codex's helper,
# a kernel without user namespaces or Landlock).
SANDBOX_BROKEN = re.compile(
    r"(?m)^bwrap: |codex-linux-sandbox|error running landlock|sandbox (?:is )?not (?:supported|available)|"
    r"No permissions to create a new namespace|setting up uid map: Permission denied",
    re.I,
)
DOCTOR_HINT = "check codex's sandbox with `pimainteno doctor` (or `codex sandbox -- true`)"
_USAGE = {"input_tokens": "input_tokens", "cached_input_tokens": "cached_tokens",
          "output_tokens": "output_tokens", "reasoning_output_tokens": "reasoning_tokens"}  # fmt: skip


def text(line: bytes) -> str:
    return line.decode("utf-8", "replace")


def one_line(message: str) -> str:
    """codex sometimes relays a server's JSON error body verbatim; keep its message, on one line."""
    try:
        data = json.loads(message)
        message = data["error"]["message"] if isinstance(data.get("error"), dict) else data.get("message", message)
    except (ValueError, TypeError, KeyError, AttributeError):
        pass
    return " ".join(str(message).split())[:500]


class Events:
    """Feed it codex's stdout lines; `result()` gives the Call they describe."""

    def __init__(self, worktree: Path) -> None:
        self.roots = {str(worktree), str(Path(worktree).resolve())}
        self.seen = False
        self.completed = False
        self.failed: str | None = None
        self.last_error: str | None = None
        self.call = Call()

    def feed(self, raw: bytes) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            log.debug("codex: ignoring non-JSON output: %s", text(raw).strip()[:200])
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return
        self.seen = True
        kind = event["type"]
        log.debug("codex event: %s", kind)
        if kind == "thread.started":
            self.call.thread_id = event.get("thread_id")
        elif kind == "turn.completed":
            self.completed = True
            u = event.get("usage") or {}
            self.call.usage = {ours: int(u.get(theirs) or 0) for theirs, ours in _USAGE.items()}
        elif kind == "turn.failed":
            err = event.get("error")
            self.failed = one_line((err.get("message") if isinstance(err, dict) else err) or "turn failed")
        elif kind == "error":
            self.last_error = one_line(event.get("message") or "error")
            log.warning("codex: %s", self.last_error)
        elif kind in ("item.started", "item.completed") and isinstance(event.get("item"), dict):
            self._item(kind, event["item"])

    def _item(self, kind: str, item: dict[str, Any]) -> None:
        itype = item.get("type") or item.get("item_type")
        done = kind == "item.completed"
        if itype in ("agent_message", "assistant_message") and done:
            self.call.messages.append(str(item.get("text") or ""))
        elif itype == "command_execution":
            if not done:
                log.info("codex runs: %s", item.get("command"))
                return
            cmd = {k: item.get(k) for k in ("command", "exit_code", "status")}
            cmd["output"] = str(item.get("aggregated_output") or "")[-2000:]
            self.call.commands.append(cmd)
            log.info("codex ran (exit %s, %s): %s", cmd["exit_code"], cmd["status"], cmd["command"])
        elif itype == "file_change" and done:
            for change in item.get("changes") or []:
                path = str((change.get("path") if isinstance(change, dict) else change) or "")
                for root in self.roots:  # codex reports absolute paths; keep them relative to the worktree
                    if path.startswith(root + os.sep):
                        path = path[len(root) + 1 :]
                if path and path not in self.call.file_changes:
                    self.call.file_changes.append(path)
                    log.info("codex changed: %s", path)
        elif itype == "error" and done:
            log.info("codex notice: %s", item.get("message"))

    def sandbox_error(self) -> str | None:
        """codex's own words when every command it ran failed because its sandbox did not work."""
        cmds = self.call.commands
        if not cmds or any(c.get("exit_code") == 0 or not SANDBOX_BROKEN.search(c["output"]) for c in cmds):
            return None
        line = next(ln for ln in cmds[0]["output"].splitlines() if SANDBOX_BROKEN.search(ln))
        return one_line(line)

    def result(self) -> Call:
        call = self.call
        call.text = call.messages[-1] if call.messages else ""
        ok = self.completed and self.failed is None
        call.outcome = "ok" if ok else "failed"
        if self.failed is not None:
            call.error = self.failed
        elif not self.completed and self.last_error:
            call.error = self.last_error
        elif ok and (broken := self.sandbox_error()):
            call.outcome = "failed"
            call.error = f"codex could not run any command in its sandbox ({broken}); {DOCTOR_HINT}"
        return call
