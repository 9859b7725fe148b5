"""Errors the CLI turns into one line and an exit code.

Every failure a user can cause (bad URL, wrong password, pooler port, invalid SQL …) is
raised as a `MigrationError` that names the cause *and* the fix, so the CLI never has to
print a traceback to explain what to do next.
"""

from __future__ import annotations


class MigrationError(Exception):
    """A failure the user can act on: exit code 1."""

    exit_code = 1

    def __init__(self, cause: str, fix: str | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.fix = fix

    def one_line(self) -> str:
        text = self.cause.replace("\n", " ").strip()
        if self.fix:
            text = f"{text} — fix: {self.fix.replace(chr(10), ' ').strip()}"
        return text


class VerificationMismatch(MigrationError):
    """Source and target disagree (counts, checksums, schema, infrastructure): exit code 2."""

    exit_code = 2
