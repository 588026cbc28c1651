"""The toolkit's errors: one small hierarchy, each carrying its exit code (README, "Exit codes")."""

from __future__ import annotations

import errno

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3
EXIT_UNKNOWN = 4
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM

EXIT_MEANINGS = {
    EXIT_PASSED: "passed",
    EXIT_FAILED: "a step or a check failed",
    EXIT_USAGE: "usage or bad input",
    EXIT_ENVIRONMENT: "environment, credentials or busy",
    EXIT_UNKNOWN: "outcome unknown",
    EXIT_INTERRUPTED: "interrupted",
    EXIT_TERMINATED: "terminated (SIGTERM)",
}


class ToolkitError(Exception):
    """Base of every error the toolkit reports to a person as one line."""

    exit_code = EXIT_FAILED


class UsageError(ToolkitError):
    """Bad input: a malformed client_id, an unknown env or template, a bad flag."""

    exit_code = EXIT_USAGE


class ConfigError(ToolkitError):
    """A template, client config or .env file that does not parse or lacks a key."""

    exit_code = EXIT_USAGE


class TooLarge(UsageError):
    """Something read from outside (an S3 object) over the size the toolkit reads: refused before it is read."""


class EnvironmentProblem(ToolkitError):
    """The machine or account is not ready: credentials, a port, a bucket, a function."""

    exit_code = EXIT_ENVIRONMENT


class Busy(EnvironmentProblem):
    """Another process holds the context's run lock."""


class StepFailed(ToolkitError):
    """A pipeline step or an output check failed."""

    exit_code = EXIT_FAILED


class Conflict(ToolkitError):
    """Something changed under us (a concurrent write): nothing was overwritten."""

    exit_code = EXIT_FAILED


class OutcomeUnknown(ToolkitError):
    """The request was sent but no answer came back: the function may have run."""

    exit_code = EXIT_UNKNOWN


def brief(value: object, width: int = 40) -> str:
    """A value as an error message shows it: a string's repr cut to about width characters, else only its type.

    Messages quote foreign data (a config from S3, a key name); quoting it whole could print megabytes.
    """
    if isinstance(value, str):
        return repr(value if len(value) <= width else value[:width] + "...")
    if value is None or isinstance(value, bool | int | float):
        text = repr(value)
        return text if len(text) <= width else text[:width] + "..."
    return f"a {type(value).__name__}"


OS_HINTS = {
    errno.ENOSPC: "free some space, then run again",
    errno.EDQUOT: "free some space, then run again",
    errno.EACCES: "check the folder's permissions",
    errno.EPERM: "check the folder's permissions",
    errno.EROFS: "the file system is read-only; use a writable folder (CONTEXTS_DIR)",
}


def as_toolkit_error(err: ToolkitError | OSError) -> ToolkitError:
    """err itself, or an OSError of the machine (no space left, a folder not writable) as one line saying what to do."""
    if isinstance(err, ToolkitError):
        return err
    where = f": {err.filename}" if err.filename else ""
    hint = OS_HINTS.get(err.errno or 0, "check the machine")
    return EnvironmentProblem(f"{err.strerror or err}{where}; {hint}")
