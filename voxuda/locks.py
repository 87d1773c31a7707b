"""One exclusive lock per output folder (or file), so two voxuda processes never write into the same place.

Why: two ``voxuda train --out SAME`` used to both finish, leaving a folder that mixed the two runs; two
benchmarks or simulations deleted each other's live ``.partial-PID`` folders. Now every command that writes
takes :func:`output_lock` on its output first; a second process fails at once with one line naming the
holder's PID (:class:`FolderInUseError`), or, with ``wait=True`` (a shared simulated dataset), waits for it.

How: ``fcntl.flock`` on ``.NAME.lock`` *beside* the output (``runs/.exp1.lock`` for ``runs/exp1``), so the
lock exists before the folder does and survives the simulator's rename of a finished ``.partial`` folder
onto the destination. The kernel drops a flock when its process dies, so the lock of a killed process is
stale by construction and simply taken over (the file still names the dead PID; a note says so).
The holder writes ``PID HOST COMMAND`` into the file for the error message and deletes the file when it
releases the lock; an acquirer that locked a file that was deleted meanwhile retries on the new one.

Under ``torchrun`` only rank 0 takes the lock (the other ranks write nothing). Locks are re-entrant within a
process, so a command may lock its output and the library code it calls may lock it again.

``flock`` works on local file systems and on NFS (Linux emulates it with POSIX record locks there). On
systems without ``fcntl`` (Windows) the lock is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from voxuda.atomic import pid_alive
from voxuda.errors import VoxudaError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["FolderInUseError", "LockHolder", "lock_path_for", "output_lock", "read_holder"]


class FolderInUseError(VoxudaError, RuntimeError):
    """Another live process holds the lock of an output folder or file (a runtime error: exit code 1)."""

    exit_code = 1


class LockHolder:
    """Who holds (or held) a lock, as recorded in its lock file."""

    def __init__(self, pid: int | None, host: str = "", command: str = "") -> None:
        self.pid, self.host, self.command = pid, host, command

    @classmethod
    def parse(cls, text: str) -> LockHolder:
        parts = text.strip().split(" ", 2)
        try:
            pid = int(parts[0])
        except (ValueError, IndexError):
            return cls(None)
        return cls(pid, parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else "")

    def describe(self) -> str:
        if self.pid is None:
            return "PID unknown"
        where = f" on {self.host}" if self.host and self.host != socket.gethostname() else ""
        return f"PID {self.pid}{where}" + (f", {self.command}" if self.command else "")


#: lock file (resolved) -> [open descriptor, nesting depth] of the locks this process holds
_HELD: dict[Path, list[int]] = {}


def lock_path_for(target: str | os.PathLike[str]) -> Path:
    """The lock file of an output folder or file: ``.NAME.lock`` beside it, or ``.voxuda.lock`` inside an
    existing folder whose parent this user may not write to (``--out .`` in a read-only parent)."""
    target = Path(os.path.abspath(target))
    if target.is_dir() and target.parent.is_dir() and not os.access(target.parent, os.W_OK):
        return target / ".voxuda.lock"
    return target.parent / f".{target.name}.lock"


def _is_lock_rank() -> bool:
    """True unless this is a non-zero rank of a ``torchrun`` launch (rank 0 locks for the whole job)."""
    try:
        return int(os.environ.get("RANK", "0")) == 0
    except ValueError:
        return True


def read_holder(lock: str | os.PathLike[str]) -> LockHolder:
    """The holder recorded in a lock file (``PID unknown`` when the file is missing or empty)."""
    try:
        return LockHolder.parse(Path(lock).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return LockHolder(None)


def _holder_of(fd: int) -> LockHolder:
    """The holder's record; a holder that just locked may not have written it yet, so look a few times."""
    holder = LockHolder(None)
    for _ in range(10):
        holder = LockHolder.parse(os.pread(fd, 4096, 0).decode("utf-8", errors="replace"))
        if holder.pid is not None:
            break
        time.sleep(0.05)
    return holder


def _try_flock(fd: int, block: bool) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def _acquire(lock: Path, target: Path, wait: bool, command: str,
             note: Callable[[str], None]) -> tuple[int, LockHolder]:
    """Lock ``lock`` (retrying while holders release and delete it); returns the descriptor and the previous
    record (a dead process's, when a stale lock was taken over)."""
    waited = False
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if not _try_flock(fd, block=False):
                holder = _holder_of(fd)
                if not wait:
                    raise FolderInUseError(
                        f"{target}: in use by another voxuda process ({holder.describe()}); wait for it to "
                        f"finish or choose another output folder (lock file {lock})"
                    )
                if not waited:
                    note(f"waiting for {target}, in use by {holder.describe()}")
                    waited = True
                _try_flock(fd, block=True)
            try:
                same = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder deleted this file while releasing it: lock the new one
                os.close(fd)
                continue
            previous = LockHolder.parse(os.pread(fd, 4096, 0).decode("utf-8", errors="replace"))
            record = f"{os.getpid()} {socket.gethostname()} {command}".strip() + "\n"
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode("utf-8"), 0)
            return fd, previous
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise


def _stderr_note(message: str) -> None:
    print(f"voxuda: note: {message}", file=sys.stderr)


@contextlib.contextmanager
def output_lock(target: str | os.PathLike[str], *, command: str = "", wait: bool = False,
                note: Callable[[str], None] = _stderr_note) -> Iterator[Path | None]:
    """Hold the exclusive lock of output folder or file ``target`` for the block; yields the lock file.

    ``wait=False`` (commands' own outputs): raise :class:`FolderInUseError` at once when another live process
    holds it. ``wait=True`` (shared inputs that one process creates, e.g. a simulated dataset): wait for it,
    with one ``note``. ``command`` is recorded for the other process's message (e.g. ``voxuda train``).
    Creates ``target``'s parent folder (the lock file lives there). Yields ``None`` (no lock) on ranks other
    than 0 of a torchrun launch and where ``fcntl`` is missing.
    """
    if fcntl is None or not _is_lock_rank():
        yield None
        return
    lock = lock_path_for(target)
    key = Path(os.path.realpath(lock.parent)) / lock.name
    held = _HELD.get(key)
    if held is not None:  # re-entrant: this process already holds it
        held[1] += 1
        try:
            yield lock
        finally:
            held[1] -= 1
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd, previous = _acquire(lock, Path(os.path.abspath(target)), wait, command, note)
    here = previous.host in ("", socket.gethostname())
    if previous.pid is not None and previous.pid != os.getpid() and here and not pid_alive(previous.pid):
        note(f"took over the stale lock of {Path(os.path.abspath(target))} left by {previous.describe()} "
             "(no longer running)")
    _HELD[key] = [fd, 1]
    try:
        yield lock
    finally:
        del _HELD[key]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)  # while still holding it: a waiter that locked this file sees it gone and retries
        os.close(fd)
