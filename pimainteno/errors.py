"""Expected failures and their exit codes (documented in docs/commands.md).

Library modules raise these; the CLI turns them into one ``Error: ...`` line.
"""

# Exit codes: few and distinct.
OK = 0
UNEXPECTED = 1  # a bug: one line on stderr, the traceback in the log file
USAGE = 2  # click's own code for a bad command line
BAD_INPUT = 3  # broken config, unknown project, rejected patch, dirty tree in the way
TOOL_FAILED = 4  # git, codex, a fixer, systemd or the database failed
VALIDATION_FAILED = 5  # the project's tests failed on a patch, or the unit is unhealthy
INTERRUPTED = 130


# Appended to the errors a `pimainteno doctor` check would have caught before the run (a missing codex
# or fixer, a sandbox that cannot start, a remote that does not answer, a test command that cannot run).
SEE_DOCTOR = "`pimainteno doctor` checks the whole set-up"


class PimaintenoError(Exception):
    """An expected failure with a one-line message that says what to do next."""

    exit_code = BAD_INPUT


class InputError(PimaintenoError):
    exit_code = BAD_INPUT


class ConfigError(InputError):
    pass


class PatchRejected(InputError):
    pass


class ToolError(PimaintenoError):
    exit_code = TOOL_FAILED


class DatabaseUnavailable(ToolError):
    """pimainteno's own database cannot be opened or written now (locked, full, unreadable, gone)."""


class ValidationFailed(PimaintenoError):
    exit_code = VALIDATION_FAILED
