"""Every file antiphon writes is written atomically: the old file or the new, never half.

A writer gets a temporary file in the target's own folder (a rename across file systems
would not be atomic), writes it, and only once it is complete and fsynced is it renamed over
the target (then the folder is fsynced, so the rename itself survives a power cut). An
exception, a full disk or a ``kill -9`` at any point leaves the previous file byte-identical.

Temporary names say whose they are, ``.NAME.antiphon-tmp.PID.RANDOM.SUFFIX``: the temporary
file of a process that was killed is removed by the next write to the same target, and never
one that a live process is still writing.

An ``OSError`` (a full disk, a read-only or missing folder, a folder that is a file) becomes
a ``WriteError``: a ``UserError`` whose one line names the file, so a command's user sees the
cause and a non-zero exit, not a traceback. Callers that must not stop (the daemon's
recording) catch it.

Append-only logs (``--stats`` JSON lines, the corpus journal) are appended with
``append_text``: flushed and fsynced per call, a failed append truncated back, and a torn last
line (a power cut mid-append) dropped by the next append and skipped by ``read_lines``.

Only the standard library: every package (``live`` included) imports this.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from antiphon.errors import UserError

TEMP_TAG = ".antiphon-tmp."
PREVIOUS_TAG = ".prev"

_active: set[str] = set()  # this process's temporary files still being written
_active_lock = threading.Lock()

_HINTS = {
    errno.ENOSPC: "free some disk space",
    errno.EDQUOT: "free some space (disk quota)",
    errno.EFBIG: "the file is too large for this file system or limit",
    errno.EACCES: "choose a folder you can write to",
    errno.EPERM: "choose a folder you can write to",
    errno.EROFS: "the file system is read-only; choose another folder",
    errno.ENOTDIR: "part of the path is a file, not a folder",
    errno.EEXIST: "part of the path is a file, not a folder",
    errno.EISDIR: "the path is a folder; name a file",
    errno.ENOENT: "its folder does not exist",
}


class WriteError(UserError):
    """A file could not be written; the previous one, if any, is unchanged."""

    def __init__(self, path: Path, exc: OSError, what: str = "file") -> None:
        self.path, self.errno, self.oserror = path, exc.errno, exc
        reason = exc.strerror or str(exc) or type(exc).__name__
        hint = _HINTS.get(exc.errno or 0)
        kept = "the previous file is unchanged" if path.is_file() else "nothing was written"
        super().__init__(
            f"{path}: cannot write the {what} ({reason}){'; ' + hint if hint else ''}; {kept}"
        )


def _before_replace(tmp: Path, target: Path) -> None:
    """Called with the complete, fsynced temporary file just before it replaces the target.
    Nothing happens here: the kill tests replace it (in a wrapper process) to die at the
    worst moment."""


@contextlib.contextmanager
def atomic_path(
    target: str | Path, *, what: str = "file", keep_previous: bool = False
) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` for a writer that wants a path (``onnx.save``,
    a quantizer); once the block returns, the file there replaces ``target`` atomically.

    ``keep_previous``: the file being replaced is kept as ``previous_of(target)`` (a hard
    link, so at every moment both names hold complete files).
    """
    target = Path(target)
    if target.is_symlink():
        target = target.resolve()  # replace the file the link points to, keep the link
    if target.is_dir():
        raise WriteError(target, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)), what)
    if target.exists() and not target.is_file():
        # /dev/stdout, a FIFO: nothing to protect, and a rename would replace the device.
        try:
            yield target
        except OSError as exc:
            raise WriteError(target, exc, what) from None
        return
    tmp: Path | None = None
    reserved: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(target)
        tmp = reserved = _reserve(target)
        yield tmp
        _fsync(tmp)
        _copy_mode(target, tmp)
        _before_replace(tmp, target)
        if keep_previous and target.is_file():
            _link_previous(target)
        os.replace(tmp, target)
        tmp = None
        _fsync_dir(target.parent)
    except OSError as exc:
        raise WriteError(target, exc, what) from None
    except WriteError as exc:
        if tmp is None or exc.path != tmp:
            raise
        # An atomic write of the temporary file itself (a writer that rewrites what it
        # wrote, as export does with its metadata): the user's file is the one to name.
        raise WriteError(target, exc.oserror, what) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if reserved is not None:  # renamed or removed: no longer ours to protect
            _release(reserved)


@contextlib.contextmanager
def atomic_file(
    target: str | Path,
    mode: str = "wb",
    *,
    encoding: str | None = None,
    what: str = "file",
    keep_previous: bool = False,
) -> Iterator[IO[Any]]:
    """Yield an open file (``mode`` ``"wb"`` or ``"w"``) whose contents replace ``target``
    atomically once the block returns: ``torch.save(obj, f)``, ``MidiFile.save(file=f)``,
    ``np.savez(f, ...)``, ``fig.savefig(f)``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_file writes a whole file: mode 'w' or 'wb', not {mode!r}")
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    with (
        atomic_path(target, what=what, keep_previous=keep_previous) as tmp,
        open(tmp, mode, encoding=encoding) as f,  # closing flushes: a full disk fails here
    ):
        yield f


def write_bytes(target: str | Path, data: bytes, *, what: str = "file") -> Path:
    with atomic_file(target, "wb", what=what) as f:
        f.write(data)
    return Path(target)


def write_text(target: str | Path, text: str, *, what: str = "file") -> Path:
    return write_bytes(target, text.encode("utf-8"), what=what)


def append_text(path: str | Path, text: str, *, what: str = "file") -> None:
    """Append whole lines to a log and fsync them. A torn last line left by an earlier
    crash is dropped first; an append that fails part-way is truncated back, so the file
    holds exactly the lines that were written completely."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+b") as f:
            size = _drop_torn_tail(f)
            try:
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            except OSError:
                with contextlib.suppress(OSError):
                    f.truncate(size)
                raise
    except OSError as exc:
        raise WriteError(path, exc, what) from None


def read_lines(path: str | Path) -> list[str]:
    """The complete lines of a log written by ``append_text``; a torn last line (no newline
    yet: the writer died mid-append) is not a line."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    return [line for line in lines[:-1] if line]


def previous_of(target: str | Path) -> Path:
    """Where ``keep_previous`` keeps the file a write replaced: ``ckpt.pt`` -> ``ckpt.prev.pt``."""
    target = Path(target)
    return target.with_name(target.stem + PREVIOUS_TAG + target.suffix)


def remove_stale(target: str | Path) -> list[Path]:
    """Remove temporary files for ``target`` left by processes that no longer run (or by
    this one, if no write of it is in progress). Returns what was removed."""
    target = Path(target)
    prefix = f".{target.name}{TEMP_TAG}"
    removed = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid_text = entry.name[len(prefix) :].split(".", 1)[0]
        with _active_lock:
            busy = entry.path in _active
        if busy or (pid_text.isdigit() and _alive(int(pid_text))):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


# -- internals -------------------------------------------------------------------------------
def _reserve(target: Path) -> Path:
    while True:
        name = f".{target.name}{TEMP_TAG}{os.getpid()}.{secrets.token_hex(4)}{target.suffix}"
        tmp = target.with_name(name)
        with _active_lock:  # before it exists: another thread's sweep must not take it
            _active.add(str(tmp))
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            _release(tmp)
            continue
        except BaseException:
            _release(tmp)
            raise
        return tmp


def _release(tmp: Path) -> None:
    with _active_lock:
        _active.discard(str(tmp))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours, and not in _active: a write of ours that did not clean up
    if os.name == "nt":
        return True  # os.kill(pid, 0) would terminate it there: never remove on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)  # Windows refuses to flush a read-only descriptor
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform opens folders (Windows)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _copy_mode(target: Path, tmp: Path) -> None:
    """A rewritten file keeps its permissions (a new one gets the umask's, as ``open``)."""
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        return
    os.chmod(tmp, mode)


def _link_previous(target: Path) -> None:
    previous = previous_of(target)
    staged = _reserve(previous)
    try:
        os.unlink(staged)
        try:
            os.link(target, staged)
        except OSError:  # no hard links here (FAT, some network file systems): a copy
            import shutil

            shutil.copy2(target, staged)
            _fsync(staged)
        os.replace(staged, previous)
    finally:
        with contextlib.suppress(OSError):
            staged.unlink()
        _release(staged)


def _drop_torn_tail(f: IO[bytes]) -> int:
    """Truncate an unterminated last line; returns the size of what is kept."""
    size = f.seek(0, os.SEEK_END)
    end = size
    while end > 0:
        start = max(0, end - 4096)
        f.seek(start)
        chunk = f.read(end - start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            keep = start + cut + 1
            break
        end = start
    else:
        keep = 0
    if keep != size:
        f.truncate(keep)
    f.seek(0, os.SEEK_END)
    return keep
