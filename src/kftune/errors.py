"""Errors a user can cause, and how they end.

A ``UserError`` is bad input or a bad environment that the user can fix (a missing file, a
malformed line, an unreachable server). The CLI prints its message on one line, with no
traceback, and exits with ``exit_code`` (2 by default). The message names what and where
(file, line, field) and says how to fix it.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: one clear message naming the file/field and the fix; exit code 2."""

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:  # one line, always
        return " ".join(str(self.args[0]).split("\n")) if self.args else ""


def where(path: object, line: int | None = None, field: str | None = None) -> str:
    """Format a location for error messages: ``file.conll:12`` or ``exp.yaml: spec.x``."""
    loc = str(path)
    if line is not None:
        loc += f":{line}"
    if field:
        loc += f": {field}"
    return loc
