"""``antiphon.atomic``: a failed write leaves the previous file byte-identical and no
temporary file behind. The failures are real where a test can make them real as root
(a path through a file, a folder as the target, a file-size limit that the kernel enforces
part-way through a write) and injected where it cannot (a full disk)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from antiphon import atomic
from antiphon.atomic import (
    TEMP_TAG,
    WriteError,
    append_text,
    atomic_file,
    atomic_path,
    previous_of,
    read_lines,
    write_bytes,
    write_text,
)
from antiphon.errors import UserError

OLD = b"the earlier take\n" * 100


def temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if TEMP_TAG in p.name]


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / "take.mid"
    path.write_bytes(OLD)
    return path


def test_a_write_replaces_the_file_and_keeps_its_mode(target: Path) -> None:
    target.chmod(0o640)
    write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o640
    assert temps(target.parent) == []


def test_a_full_disk_part_way_leaves_the_previous_file(target: Path) -> None:
    with pytest.raises(WriteError) as err, atomic_file(target) as f:
        f.write(b"half of the new take")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert target.read_bytes() == OLD
    assert temps(target.parent) == []
    message = str(err.value)
    assert isinstance(err.value, UserError) and "\n" not in message
    assert str(target) in message and "No space left" in message and "unchanged" in message


def test_a_failing_flush_at_close_leaves_the_previous_file(
    target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError, match="No space left"):
        write_bytes(target, b"new" * 1000)
    monkeypatch.setattr(os, "fsync", real)
    assert target.read_bytes() == OLD and temps(target.parent) == []


def test_any_exception_in_the_writer_leaves_the_previous_file(target: Path) -> None:
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise ValueError("message time must be non-negative")
    assert target.read_bytes() == OLD and temps(target.parent) == []


def test_the_kernel_stopping_a_write_part_way_leaves_the_previous_file(target: Path) -> None:
    # RLIMIT_FSIZE makes the kernel refuse a write past 4 KiB with EFBIG, as a full disk
    # refuses one with ENOSPC: a real failure in the middle of a real write, even as root.
    code = f"""
import resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
from antiphon.atomic import write_bytes
write_bytes({str(target)!r}, b"x" * 100_000)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0
    assert "WriteError" in done.stderr and "File too large" in done.stderr
    assert target.read_bytes() == OLD and temps(target.parent) == []


def test_unwritable_targets_are_one_line_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(OLD)
    with pytest.raises(WriteError, match=r"not-a-folder/out\.mid: cannot write") as err:
        write_text(blocker / "out.mid", "x")
    assert "part of the path is a file" in str(err.value)
    with pytest.raises(WriteError, match="is a folder"):
        write_text(tmp_path, "x")
    assert blocker.read_bytes() == OLD and temps(tmp_path) == []


def test_stale_temps_of_dead_writers_go_and_live_ones_stay(target: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    stale = target.with_name(f".{target.name}{TEMP_TAG}{dead.stdout.strip()}.0badcafe.mid")
    live = target.with_name(f".{target.name}{TEMP_TAG}1.0badcafe.mid")  # pid 1 runs
    other = target.with_name(f".other.mid{TEMP_TAG}{dead.stdout.strip()}.0badcafe.mid")
    for p in (stale, live, other):
        p.write_bytes(b"torn")
    write_bytes(target, b"new")
    assert not stale.exists() and live.exists() and other.exists()


def test_keep_previous_keeps_both_complete(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    for n in (b"1", b"2", b"3"):
        with atomic_file(path, keep_previous=True) as f:
            f.write(n)
    assert path.read_bytes() == b"3" and previous_of(path).read_bytes() == b"2"
    assert previous_of(path).name == "ckpt.prev.pt" and temps(tmp_path) == []


def test_devices_are_written_in_place_not_replaced() -> None:
    write_text("/dev/null", "nothing")
    assert Path("/dev/null").is_char_device()


def test_append_drops_a_torn_line_and_a_failed_append_is_undone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "stats.jsonl"
    append_text(log, '{"a": 1}\n')
    with log.open("ab") as f:
        f.write(b'{"a": 2, "tor')  # a power cut mid-append
    assert read_lines(log) == ['{"a": 1}']
    append_text(log, '{"a": 3}\n')
    assert log.read_text() == '{"a": 1}\n{"a": 3}\n'
    before = log.read_bytes()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError, match=r"stats\.jsonl: cannot write"):
        append_text(log, '{"a": 4}\n' * 100)
    assert log.read_bytes() == before


def test_the_hook_sees_a_complete_temp_before_the_rename(
    target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    monkeypatch.setattr(
        atomic, "_before_replace", lambda tmp, t: seen.append((tmp.read_bytes(), t.read_bytes()))
    )
    write_bytes(target, b"new")
    assert seen == [(b"new", OLD)]


def test_what_a_process_keeps_of_its_writes_stays_bounded(target: Path) -> None:
    """A daemon rewrites its recording every few seconds for hours: each finished write
    forgets its temporary file, whether it was renamed or failed."""
    before = len(atomic._active)
    for i in range(50):
        atomic.write_bytes(target, b"x" * i)
    with pytest.raises(RuntimeError), atomic.atomic_file(target, "wb") as f:
        f.write(b"half")
        raise RuntimeError("the writer failed")
    assert len(atomic._active) == before
