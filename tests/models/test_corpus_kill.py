"""``kill -9`` of a music21 corpus build half-way: the next build resumes from the pieces
already converted, never serves a half-written entry, and leaves no temporary files.

The build runs in a wrapper process that replaces ``antiphon.atomic``'s ``_before_replace``
hook (a no-op in antiphon: called with a complete temporary file just before its rename) by
one that sends SIGKILL to its own process while the third MIDI file is being written: the
first source (an opus of two tunes) is converted and journaled, the second is not."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from antiphon.atomic import TEMP_TAG
from antiphon.models.corpus import resolve_corpus
from tests.models.test_corpus import SMALL, SMALL_FILES, _watch_parse, music21_corpus  # noqa: F401

WRAPPER = """
import os, signal, sys
from pathlib import Path
import antiphon.atomic as atomic
from antiphon.models.corpus import resolve_corpus

written = 0

def die_on_the_third_file(tmp, target):
    global written
    if target.suffix == ".mid":
        written += 1
        if written == 3:
            os.kill(os.getpid(), signal.SIGKILL)

atomic._before_replace = die_on_the_third_file
resolve_corpus(sys.argv[1], cache_dir=Path(sys.argv[2]), progress=False, workers=1)
"""


def test_a_killed_build_resumes_from_the_converted_pieces(
    music21_corpus,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mido = pytest.importorskip("mido")
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, SMALL, str(tmp_path)], capture_output=True, timeout=300
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    [root] = (tmp_path / "corpora").iterdir()
    journal = root / "nottingham-dataset" / "journal.jsonl"
    assert [json.loads(line)["stem"] for line in journal.read_text().splitlines()] == [
        "nottingham-dataset/reelsa-c"
    ]
    first = {f: (root / f).stat().st_mtime_ns for f in SMALL_FILES[:2]}
    assert not (root / SMALL_FILES[2]).exists()  # never a half-written entry under its name
    assert [p for p in root.rglob("*") if TEMP_TAG in p.name]  # what the kill left

    calls = _watch_parse(monkeypatch, music21_corpus)
    corpus = resolve_corpus(SMALL, cache_dir=tmp_path, progress=False, workers=1)
    assert calls == ["movement2.mxl", "movement6.mxl"]  # only the unconverted source
    assert corpus.files == SMALL_FILES
    assert {f: (root / f).stat().st_mtime_ns for f in SMALL_FILES[:2]} == first
    for f in corpus.files:
        assert any(m.type == "note_on" for m in mido.MidiFile(root / f))
    assert not [p for p in root.rglob("*") if TEMP_TAG in p.name]
    assert not list(root.rglob("journal.jsonl")) and len(list(root.rglob("manifest.json"))) == 2
