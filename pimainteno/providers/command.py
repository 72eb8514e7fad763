"""The `command` provider: a fixer (ruff --fix, another agent CLI...) edits the worktree.

Offline and deterministic: its summary is a static description of the repository and its commit
message is derived from the diff.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

from pimainteno import git
from pimainteno.config import Project
from pimainteno.errors import ConfigError
from pimainteno.procs import DID_NOT_START, argv_for, run_command, tail
from pimainteno.providers.call import Call
from pimainteno.providers.prompts import fallback_subject

log = logging.getLogger("pimainteno")

LANGUAGES = {
    ".py": "Python", ".rs": "Rust", ".go": "Go", ".js": "JavaScript", ".ts": "TypeScript", ".c": "C",
    ".h": "C", ".cpp": "C++", ".java": "Java", ".rb": "Ruby", ".sh": "Shell", ".md": "Markdown",
    ".toml": "TOML", ".yaml": "YAML", ".yml": "YAML", ".json": "JSON", ".html": "HTML", ".css": "CSS",
}  # fmt: skip


class CommandProvider:
    name = "command"

    def __init__(self, command: str | tuple[str, ...] | None, timeout: float):
        self.command = command
        self.timeout = timeout

    def summarize(self, project: Project, worktree: Path) -> Call:
        return Call(text=static_summary(worktree, project.name))

    def propose(self, project: Project, worktree: Path, prompt: str) -> Call:
        if not self.command:
            raise ConfigError(
                f"project {project.name!r} uses the command provider but no command is configured; "
                'set [llm] command (e.g. "ruff check --fix .") or the project\'s command'
            )
        log.info("%s: running fixer %s", project.name, " ".join(argv_for(self.command)))
        result = run_command(self.command, worktree, self.timeout, env={"PIMAINTENO_PROMPT": prompt})
        if result.error:
            return Call(outcome="error", error=result.error)
        if result.timed_out:
            return Call(outcome="timeout", error=f"fixer timed out after {self.timeout:g}s")
        if result.exit_status in DID_NOT_START:  # the shell could not run it: not "nothing to propose"
            return Call(outcome="error", error=f"the fixer did not start: {tail(result.output, 300).strip()}")
        # Fixers exit non-zero when problems remain that they cannot fix; the diff is what counts.
        return Call(text=tail(result.output, 4000), exit_status=result.exit_status)

    def commit_message(self, project: Project, worktree: Path, diff: str) -> Call:
        words = (self.command.split() if isinstance(self.command, str) else list(self.command or ())) or [""]
        # `python -m ruff check --fix` is ruff's fix, not python's
        tool = words[words.index("-m") + 1] if "-m" in words[:-1] else Path(words[0]).name
        files = re.findall(r"^\+\+\+ b/(.+)$", diff, flags=re.M) or re.findall(r"^--- a/(.+)$", diff, flags=re.M)
        return Call(text=fallback_subject(files, f"Apply {tool} fixes to" if tool else "Update"))


def static_summary(repo: Path, name: str) -> str:
    """Languages and file counts, top-level layout, recent commits, the README's first paragraph."""
    files = [f for f in git.git(repo, "ls-files", "-z").split("\0") if f]
    langs = Counter(LANGUAGES.get(Path(f).suffix.lower(), "other") for f in files)
    top = sorted({f.split("/", 1)[0] + ("/" if "/" in f else "") for f in files})
    log_lines = git.git(repo, "log", "-5", "--format=%h %ad %s", "--date=short").strip()
    lines = [
        f"# {name}",
        "",
        f"{len(files)} tracked files: " + ", ".join(f"{n} {lang}" for lang, n in langs.most_common()),
    ]
    lines += ["", "## Layout", "", *(f"- {t}" for t in top[:40])]
    if len(top) > 40:
        lines.append(f"- ... and {len(top) - 40} more")
    readme = next((repo / f for f in files if "/" not in f and f.lower().startswith("readme")), None)
    if readme and readme.is_file():
        para = _first_paragraph(readme.read_text(errors="replace"))
        if para:
            lines += ["", "## README", "", para]
    lines += ["", "## Recent commits", "", *(f"- {ln}" for ln in log_lines.splitlines())]
    return "\n".join(lines) + "\n"


def _first_paragraph(text: str) -> str:
    for block in re.split(r"\n\s*\n", text):
        block = block.strip()
        if block and not block.startswith(("#", "[![", "<", "=", "-")):
            return block[:800]
    return ""
