from __future__ import annotations

import mido

from antiphon.live.recorder import Recorder


def test_two_tracks_and_held_keys_closed_at_the_end(tmp_path) -> None:
    r = Recorder(bpm=120)
    r.add("player", 10.0, [0x90, 60, 90])
    r.add("player", 10.5, [0x80, 60, 0])
    r.add("player", 11.0, [0x90, 62, 90])  # still held at exit
    r.add("player", 11.0, [0xB0, 64, 127])  # pedal still down
    r.add("player", 11.0, [0xF8])  # clock is not recorded
    r.add("antiphon", 12.0, [0x91, 70, 80])
    r.add("antiphon", 12.25, [0x81, 70, 0])
    path = r.write(tmp_path / "s.mid", end=13.0)
    mid = mido.MidiFile(path)
    player, own = mid.tracks[1], mid.tracks[2]
    assert [m.type for m in player if not m.is_meta] == [
        "note_on",
        "note_off",
        "note_on",
        "control_change",
        "note_off",
        "control_change",
    ]
    ticks = 0
    times = []
    for m in own:
        ticks += m.time
        if not m.is_meta:
            times.append(ticks)
    assert times == [2 * 960, 2 * 960 + 240]  # seconds -> ticks at 120 bpm, 480 per beat
    assert r.notes("player") == 2 and r.notes("antiphon") == 1


def _session(r: Recorder, first: int, n: int) -> None:
    """Notes ``first`` .. ``first + n - 1``, one a second, each answered."""
    for i in range(first, first + n):
        r.add("player", i, [0x90, 60 + i % 12, 90])
        r.add("player", i + 0.5, [0x80, 60 + i % 12, 0])
        r.add("antiphon", i + 0.6, [0x90, 72, 80])
        r.add("antiphon", i + 0.9, [0x80, 72, 0])


def test_saving_in_steps_writes_the_same_file_as_saving_once(tmp_path) -> None:
    once, steps = Recorder(bpm=100), Recorder(bpm=100)
    _session(once, 0, 20)
    for k in range(4):
        _session(steps, 5 * k, 5)
        steps.write(tmp_path / "s.mid", end=5 * k + 0.55)  # a save between batches
    assert steps.to_bytes(100.0) == once.to_bytes(100.0)
    assert once.to_midi(100.0).tracks[1][-1].type == "end_of_track"


def _notes_in(path) -> int | None:
    try:
        mid = mido.MidiFile(path)
    except (OSError, EOFError, ValueError):
        return None
    return sum(m.type == "note_on" and m.velocity > 0 for m in mid.tracks[1])


def _until(predicate, timeout: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_the_saver_keeps_the_file_current_while_the_session_runs(tmp_path) -> None:
    import time

    path = tmp_path / "rec.mid"
    r = Recorder(bpm=120)
    r.keep_saved(path, time.perf_counter)
    try:
        assert _until(lambda: _notes_in(path) == 0)  # readable from the start
        t = time.perf_counter()
        r.add("player", t, [0x90, 60, 90])
        r.answered()
        assert _until(lambda: _notes_in(path) == 1)  # a held key: closed in the file
        r.add("player", t + 0.1, [0x80, 60, 0])
        r.add("player", t + 0.2, [0x90, 62, 90])
        assert _until(lambda: _notes_in(path) == 2)  # without an answer: the interval
    finally:
        r.stop_saving()
    assert not r._saver and not [p for p in tmp_path.iterdir() if p.name != "rec.mid"]


def test_a_failing_disk_is_one_warning_and_the_saver_recovers(tmp_path, caplog) -> None:
    import time

    blocker = tmp_path / "later-a-folder"
    blocker.write_text("a file where the recording's folder should be")
    path = blocker / "rec.mid"
    r = Recorder(bpm=120)
    with caplog.at_level("WARNING", logger="antiphon.live.recorder"):
        r.keep_saved(path, time.perf_counter)
        try:
            for i in range(3):  # three failed saves
                r.add("player", time.perf_counter(), [0x90, 60 + i, 90])
                r.answered()
                assert _until(lambda: r._saver.saved_version != r.version and r._saver.failing)
                time.sleep(0.3)
            assert len(caplog.records) == 1
            assert f"{path}: cannot write the recording" in caplog.records[0].getMessage()
            assert "still playing" in caplog.records[0].getMessage()
            blocker.unlink()
            blocker.mkdir()  # the user frees the path: the next save succeeds
            r.answered()
            assert _until(lambda: _notes_in(path) == 3)
        finally:
            r.stop_saving()
    assert len(caplog.records) == 2 and "saved again" in caplog.records[1].getMessage()


def test_a_save_allocates_about_one_copy_of_the_recording() -> None:
    """The saver encodes the whole session every few seconds: each save must build the file
    in one buffer, not leave a copy per track, chunk and join behind (RSS grew in a soak)."""
    import tracemalloc

    r = Recorder(bpm=120)
    _session(r, 0, 20_000)
    first = r.to_bytes(30_000.0)  # encodes the events once
    tracemalloc.start()
    try:
        again = r.to_bytes(30_000.0)
        _size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert again == first and len(first) > 200_000
    assert peak < 1.6 * len(first)


def test_the_saver_streams_the_file_without_a_copy_of_it(tmp_path) -> None:
    """Each save rewrites the whole file: a whole-file buffer every few seconds (a few MB,
    allocated and freed over and over) grew a 30-minute soak's heap by 22 MB."""
    import tracemalloc

    r = Recorder(bpm=120)
    _session(r, 0, 20_000)
    r.write(tmp_path / "a.mid", 30_000.0)  # encodes the events once
    _session(r, 20_000, 10)
    tracemalloc.start()
    try:
        path = r.write(tmp_path / "b.mid", 40_000.0)
        _size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = path.stat().st_size
    assert size > 200_000 and peak < 0.1 * size
    r.add("player", 40_001.0, [0x90, 61, 80])  # the body still grows after a save
    r.write(tmp_path / "c.mid", 40_002.0)
    assert mido.MidiFile(tmp_path / "c.mid").tracks[1][-3].note == 61
