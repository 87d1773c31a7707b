"""Reading the JSON record files of run and benchmark folders (``run.json``, ``eval.json``, ``bench.json``).

Why one reader: the trainer, evaluation, ``voxuda segment`` and the benchmark each read these files, and each
used to decide on its own what a missing or malformed file means; most turned a malformed ``run.json`` into
``{}``, so a resumed run silently lost its provenance and an evaluation silently dropped the run's fitted
alignment statistics, its flags and its selection criterion. Here:

- a *missing* file is normal (a run folder of an older version, a run killed before writing it): the caller
  says what stands in for it with ``default``; without one, :class:`FileNotFoundError` propagates;
- a *malformed* file, or one whose top-level value is not of the ``expect``-ed type, is an error that names
  the file. Every writer publishes these files atomically (:mod:`voxuda.atomic`), so a torn file is not a
  race to tolerate but damage the user must see.

Why not in :mod:`voxuda.atomic`, beside ``write_json``: that module is about publishing files (temporary
names, renames, clean-up of stale temporaries) and is imported by every writer; what a *reader* does with a
missing or broken record is a separate decision with separate callers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from voxuda.errors import ConfigError

__all__ = ["REQUIRED", "read_json"]


class _Required:
    """The type of :data:`REQUIRED` (a sentinel, since ``None`` is a valid default)."""

    def __repr__(self) -> str:
        return "REQUIRED"


#: ``default`` of :func:`read_json` when the file must exist
REQUIRED: Any = _Required()

_KIND: dict[type[Any], str] = {dict: "a JSON object", list: "a JSON array"}


def read_json(path: str | os.PathLike[str], default: Any = REQUIRED, *, expect: type[Any] | None = dict,
              fix: str = "restore or delete the file") -> Any:
    """The JSON value in ``path``; ``default`` when the file does not exist.

    ``expect`` is the type the top-level value must have (``dict`` for a record, ``list`` for a history;
    ``None`` accepts any). Raises :class:`~voxuda.errors.ConfigError` naming the file when it is not valid
    JSON or not of that type (``fix`` says what to do about it), and :class:`FileNotFoundError` when it is
    missing and no ``default`` is given. Other read errors (permissions) propagate as they are.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if default is REQUIRED:
            raise
        return default
    try:
        value = json.loads(data)  # UTF-8 (or the UTF-16/32 that json detects)
    except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError of a binary file
        raise ConfigError(f"{path}: not valid JSON ({exc}); {fix}") from exc
    if expect is not None and not isinstance(value, expect):
        wanted = _KIND.get(expect, expect.__name__)
        raise ConfigError(f"{path}: expected {wanted}, found {type(value).__name__}; {fix}")
    return value
