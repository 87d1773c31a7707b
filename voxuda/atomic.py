"""Atomic file writes and the clean-up of their stale temporaries: the one implementation every writer uses.

Why atomic: a result file must be either the old one or the complete new one, never half-written (a killed
run, a full disk), so every file is written under a temporary name in the destination folder, flushed,
fsync-ed and renamed over the destination (``os.replace`` is atomic on POSIX and Windows).

Why not :func:`tempfile.mkstemp`: it creates files with mode 0600 whatever the umask, so collaborators on
shared storage could not read ``config.toml``, checkpoints or results. Temporary files here are created with
``0o666`` and the process umask applies, exactly as for ``open(path, "w")``.

Why the PID in the temporary name (``.NAME.tmp-PID-TOKEN``): a process killed mid-write leaves its temporary
file behind (several GB for a segmented tomogram); :func:`remove_stale_temporaries` deletes those whose
writer is no longer running, and never a live writer's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_open",
    "atomic_path",
    "owner_pid",
    "pid_alive",
    "remove_stale_partials",
    "remove_stale_temporaries",
    "temp_path",
    "write_bytes",
    "write_json",
    "write_text",
]

#: ``.NAME.tmp-PID`` or ``.NAME.tmp-PID-TOKEN`` (the writer's PID; the token keeps threads apart)
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)(?:-[0-9a-f]+)?$")
#: names :func:`tempfile.mkstemp` gave before this module existed (``.NAME.XXXXXXXX.tmp``): no PID inside
_LEGACY_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def temp_path(final: str | os.PathLike[str]) -> Path:
    """A fresh hidden temporary name beside ``final`` (same file system, so the rename is atomic)."""
    final = Path(final)
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def owner_pid(name: str) -> int | None:
    """The PID of the process that created temporary file ``name`` (``None`` when it is not one of ours)."""
    match = _TEMP_NAME.match(name)
    return int(match["pid"]) if match else None


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists on this machine (a process of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort: some file systems refuse to open or sync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a library to write to (``mrcfile``, ``savefig``); rename
    it onto ``path`` only if the block succeeds, else delete it. Files a library creates there get the
    umask's mode like any ``open``. ``durable`` fsyncs the file and the rename (off by default: the
    simulator writes thousands of small volumes that a crash simply rewrites)."""
    final = Path(path)
    tmp = temp_path(final)
    try:
        yield tmp
        if durable and tmp.is_file():
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    if durable:
        _fsync_dir(final.parent)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", *, encoding: str = "utf-8",
                newline: str | None = None) -> Iterator[IO[Any]]:
    """``open(path, mode)`` that publishes the file only when the block succeeds (text ``"w"`` or binary
    ``"wb"``); the file is fsync-ed before the rename and the rename is fsync-ed after it."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    final = Path(path)
    tmp = temp_path(final)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies, unlike mkstemp's 0600
    try:
        handle: IO[Any] = (os.fdopen(fd, "wb") if mode == "wb"
                           else os.fdopen(fd, "w", encoding=encoding, newline=newline))
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(final.parent)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str, *, newline: str | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w", newline=newline) as handle:
        handle.write(text)
    return Path(path)


def write_json(path: str | os.PathLike[str], data: Any, **dump: Any) -> Path:
    """Write ``data`` as JSON (``indent=2`` unless ``dump`` says otherwise, then a newline) atomically."""
    dump.setdefault("indent", 2)
    return write_text(path, json.dumps(data, **dump) + "\n")


def remove_stale_temporaries(folder: str | os.PathLike[str], *, names: Iterable[str] | None = None,
                             legacy: bool = False) -> list[str]:
    """Delete the temporary files in ``folder`` whose writer process is dead; return their names.

    ``names`` limits the clean-up to the temporaries of those destination names (``labels.mrc`` for
    ``.labels.mrc.tmp-PID``). ``legacy`` also deletes the PID-less ``.NAME.XXXXXXXX.tmp`` files of older
    versions; pass it only while holding the folder's lock (:mod:`voxuda.locks`), when no other writer can
    own them. A live writer's file (this process's included) is never touched.
    """
    wanted = None if names is None else set(names)
    removed: list[str] = []
    base = Path(folder)
    if not base.is_dir():
        return removed
    for item in base.iterdir():
        match = _TEMP_NAME.match(item.name)
        if match is not None:
            if wanted is not None and match["name"] not in wanted:
                continue
            pid = int(match["pid"])
            if pid == os.getpid() or pid_alive(pid):
                continue
        elif not (legacy and wanted is None and _LEGACY_TEMP_NAME.match(item.name)):
            continue
        if item.is_file() or item.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                item.unlink()
                removed.append(item.name)
    return sorted(removed)


def remove_stale_partials(dest: str | os.PathLike[str]) -> None:
    """Delete the ``.NAME.partial-PID`` folders beside ``dest`` (a simulation or extraction being built)
    whose process is dead; a live writer's, or one whose name holds no PID, is never touched."""
    import shutil

    dest = Path(dest)
    for stale in dest.parent.glob(f".{dest.name}.partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def partial_folder(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Build folder ``dest`` in ``.NAME.partial-PID`` beside it and publish it by one rename at the end.

    Readers never see a half-written folder: on success the previous ``dest`` (if any) is moved aside, the new
    one renamed into place and only then the old one deleted (there is always a complete ``dest``); on any
    error the partial folder is removed and ``dest`` is left as it was. Partial folders of dead processes are
    cleaned first (:func:`remove_stale_partials`); a live writer's are never touched.
    """
    import shutil

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(dest)
    tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    try:
        tmp.mkdir()
        yield tmp
        old = None
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{os.getpid()}"
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
