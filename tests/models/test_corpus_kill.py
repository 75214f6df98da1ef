"""``kill -9`` of a music21 corpus build half-way: the next build resumes from the pieces
already converted, never serves a half-written entry, and leaves no temporary files.

The build runs in a wrapper process (``tests.killing``) that sends SIGKILL to itself while
the third MIDI file is being written: the first source (an opus of two tunes) is converted
and journaled, the second is not."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from antiphon.atomic import TEMP_TAG
from antiphon.models.corpus import resolve_corpus
from tests.killing import run_killed
from tests.models.test_corpus import SMALL, SMALL_FILES, _watch_parse, music21_corpus  # noqa: F401

BUILD = (
    "import sys; from pathlib import Path; from antiphon.models.corpus import resolve_corpus; "
    "resolve_corpus(sys.argv[1], cache_dir=Path(sys.argv[2]), progress=False, workers=1)"
)


def test_a_killed_build_resumes_from_the_converted_pieces(
    music21_corpus,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mido = pytest.importorskip("mido")
    done = run_killed(".mid", 3, BUILD, SMALL, str(tmp_path))
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
