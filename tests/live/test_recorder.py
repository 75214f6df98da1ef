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
