"""``kill -9`` of a music21 corpus build half-way: the next build resumes from the pieces
already converted, never serves a half-written entry, and leaves no temporary files.

The build runs in a wrapper process (``tests.killing``) that sends SIGKILL to itself while
the fourth MIDI file is being written. Sources go largest first: the two Schoenberg scores
are converted and journaled, then the opus of two tunes is killed half-way (its first tune
written, its second not), so it is not journaled and is converted whole on resume."""

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
    done = run_killed(".mid", 4, BUILD, SMALL, str(tmp_path))
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    [root] = (tmp_path / "corpora").iterdir()
    journal = root / "schoenberg" / "journal.jsonl"
    assert [json.loads(line)["stem"] for line in journal.read_text().splitlines()] == [
        "schoenberg/opus19/movement2",
        "schoenberg/opus19/movement6",
    ]
    assert not (root / "nottingham-dataset" / "journal.jsonl").exists()
    first = {f: (root / f).stat().st_mtime_ns for f in SMALL_FILES[2:]}
    assert not (root / SMALL_FILES[1]).exists()  # never a half-written entry under its name
    assert [p for p in root.rglob("*") if TEMP_TAG in p.name]  # what the kill left

    calls = _watch_parse(monkeypatch, music21_corpus)
    corpus = resolve_corpus(SMALL, cache_dir=tmp_path, progress=False, workers=1)
    assert calls == ["reelsa-c.abc"]  # only the source that was not journaled
    assert corpus.files == SMALL_FILES
    assert {f: (root / f).stat().st_mtime_ns for f in SMALL_FILES[2:]} == first
    for f in corpus.files:
        assert any(m.type == "note_on" for m in mido.MidiFile(root / f))
    assert not [p for p in root.rglob("*") if TEMP_TAG in p.name]
    assert not list(root.rglob("journal.jsonl")) and len(list(root.rglob("manifest.json"))) == 2
