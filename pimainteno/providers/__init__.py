"""Providers: what produces a summary, edits a worktree for a patch, and writes a commit message."""
