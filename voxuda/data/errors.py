"""Errors raised by the data layer.

Every problem with a user's file is reported as one line that names the file and says what to do,
because data errors are almost always fixed by the user, not by a developer reading a traceback.
"""

from __future__ import annotations

import os

__all__ = ["DataError", "data_error"]


class DataError(ValueError):
    """A data file is missing, malformed or inconsistent.

    Subclasses :class:`ValueError` so callers that already catch bad-value errors keep working.
    The message is always a single line: ``<file>: <problem>; <what to do>``.
    """

    def __init__(self, path: str | os.PathLike[str] | None, problem: str, hint: str = "") -> None:
        self.path = None if path is None else os.fspath(path)
        self.problem = " ".join(problem.split())
        self.hint = " ".join(hint.split())
        where = f"{self.path}: " if self.path is not None else ""
        tail = f"; {self.hint}" if self.hint else ""
        super().__init__(f"{where}{self.problem}{tail}")


def data_error(path: str | os.PathLike[str] | None, problem: str, hint: str = "") -> DataError:
    """Build a :class:`DataError` (helper that reads well in ``raise data_error(...) from exc``)."""
    return DataError(path, problem, hint)
