"""Corpora: split rule, folders of MIDI files, and the incremental music21 -> MIDI build.

The music21 tests convert two tiny collections for real (schoenberg: 2 MusicXML scores;
nottingham-dataset: 1 ABC opus of 2 tunes), about two seconds in all.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from antiphon.errors import UserError
from antiphon.models.corpus import SPLITS, Corpus, resolve_corpus, split_of

SMALL = "music21:schoenberg,nottingham-dataset"
SMALL_FILES = (
    "nottingham-dataset/reelsa-c-1.mid",
    "nottingham-dataset/reelsa-c-2.mid",
    "schoenberg/opus19/movement2.mid",
    "schoenberg/opus19/movement6.mid",
)


# --- split rule ---------------------------------------------------------------------------


def test_split_is_deterministic_and_close_to_90_5_5() -> None:
    names = [f"set{i % 17}/sub{i % 5}/piece_{i}.mid" for i in range(20_000)]
    splits = [split_of(n) for n in names]
    assert splits == [split_of(n) for n in names]
    counts = Counter(splits)
    assert set(counts) == set(SPLITS)
    assert 0.88 < counts["train"] / len(names) < 0.92
    assert 0.04 < counts["valid"] / len(names) < 0.06
    assert 0.04 < counts["test"] / len(names) < 0.06


def test_split_rule_is_pinned() -> None:
    # Changing the rule reshuffles every corpus and leaks old test files into training.
    assert split_of("bach/bwv1.6.mid") == "train"
    assert split_of("piece12.mid") == "valid"
    assert split_of("piece64.mid") == "test"


def test_split_and_summary_partition_the_files(tmp_path: Path) -> None:
    files = tuple(sorted(f"d{i % 3}/p{i}.mid" for i in range(300)))
    corpus = Corpus(name="x", root=tmp_path, files=files, failed=2)
    parts = {name: corpus.split(name) for name in SPLITS}
    assert sorted(p for part in parts.values() for p in part) == [tmp_path / f for f in files]
    assert all(
        split_of(p.relative_to(tmp_path).as_posix()) == n for n, ps in parts.items() for p in ps
    )
    summary = corpus.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary == {
        "name": "x",
        "files": {name: len(parts[name]) for name in SPLITS},
        "failed": 2,
    }
    assert corpus.describe().startswith("x: 300 MIDI files (train ")
    with pytest.raises(ValueError, match="unknown split"):
        corpus.split("validation")


# --- a folder of MIDI files ---------------------------------------------------------------


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"MThd")  # never parsed here


def test_directory_corpus_finds_midi_recursively_in_any_case(tmp_path: Path) -> None:
    _touch(
        tmp_path,
        "a.mid",
        "B.MID",
        "sub/deep/c.Midi",
        "sub/notes.txt",
        "sub/d.mid.bak",
        ".hidden/e.mid",
        "sub/.git/f.mid",
        "sub/._a.mid",  # a macOS resource fork, not MIDI
    )
    corpus = resolve_corpus(str(tmp_path))
    assert corpus.files == ("B.MID", "a.mid", "sub/deep/c.Midi")
    assert corpus.root == tmp_path.resolve()
    assert corpus.name == str(tmp_path.resolve())
    assert corpus.failed == 0
    assert sum(len(corpus.split(s)) for s in SPLITS) == 3


def test_directory_corpus_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    _touch(tmp_path, "midi/x.midi")
    assert resolve_corpus("~/midi").files == ("x.midi",)


def test_bad_directories_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no such directory.*music21"):
        resolve_corpus(str(tmp_path / "missing"))
    _touch(tmp_path, "empty/readme.txt", "empty/.hidden/x.mid")
    with pytest.raises(UserError, match=r"no \.mid or \.midi files"):
        resolve_corpus(str(tmp_path / "empty"))
    _touch(tmp_path, "song.mid")
    with pytest.raises(UserError, match="is a file"):
        resolve_corpus(str(tmp_path / "song.mid"))
    with pytest.raises(UserError, match="--workers"):
        resolve_corpus(str(tmp_path), workers=0)


def test_music21_missing_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "music21", None)  # makes `import music21` fail
    with pytest.raises(UserError, match=r"antiphon\[train\]"):
        resolve_corpus("music21")


# --- the music21 corpus -------------------------------------------------------------------


@pytest.fixture
def music21_corpus():
    return pytest.importorskip(
        "music21.corpus", reason="music21 is not installed (pip install 'antiphon[train]')"
    )


def _watch_parse(monkeypatch: pytest.MonkeyPatch, corpus, stop_at: int = 0) -> list[str]:
    """Record the sources music21 parses in this process; raise Ctrl-C at call ``stop_at``."""
    real = corpus.parse
    calls: list[str] = []

    def parse(source, *args, **kwargs):
        calls.append(Path(source).name)
        if len(calls) == stop_at:
            raise KeyboardInterrupt
        return real(source, *args, **kwargs)

    monkeypatch.setattr(corpus, "parse", parse)
    return calls


def test_unknown_collection_lists_the_valid_ones(music21_corpus, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"unknown collection.*nosuch.*choose from:.*bach"):
        resolve_corpus("music21:bach,nosuch", cache_dir=tmp_path)
    with pytest.raises(UserError, match="no collection"):
        resolve_corpus("music21:", cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing built


def test_music21_build_writes_valid_midi_once(
    music21_corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mido = pytest.importorskip("mido")
    # Two workers: the process-pool path, as the CLI runs it.
    corpus = resolve_corpus(SMALL, cache_dir=tmp_path, progress=False, workers=2)
    assert corpus.name == "music21:nottingham-dataset,schoenberg"
    assert corpus.files == SMALL_FILES
    assert corpus.failed == 0
    assert corpus.root.parent == tmp_path / "corpora"
    for path in (corpus.root / f for f in corpus.files):
        notes = [m for m in mido.MidiFile(path) if m.type == "note_on" and m.velocity > 0]
        assert len(notes) > 10, path
    assert not [p for p in tmp_path.rglob("*") if ".antiphon-tmp." in p.name]

    calls = _watch_parse(monkeypatch, music21_corpus)
    assert resolve_corpus(SMALL, cache_dir=tmp_path, progress=False, workers=1) == corpus
    assert resolve_corpus("music21:schoenberg", cache_dir=tmp_path).files == SMALL_FILES[2:]
    assert calls == []


def test_music21_build_resumes_after_interrupt_and_adds_collections(
    music21_corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "corpora"
    calls = _watch_parse(monkeypatch, music21_corpus, stop_at=2)
    with pytest.raises(KeyboardInterrupt):
        resolve_corpus("music21:schoenberg", cache_dir=tmp_path, progress=False, workers=1)
    assert sorted(calls) == ["movement2.mxl", "movement6.mxl"]
    interrupted = calls[1]
    [journal] = folder.rglob("journal.jsonl")
    assert not list(folder.rglob("manifest.json"))

    calls.clear()
    corpus = resolve_corpus("music21:schoenberg", cache_dir=tmp_path, progress=False, workers=1)
    assert calls == [interrupted]  # the finished source is not parsed again
    assert corpus.files == SMALL_FILES[2:]
    assert not journal.exists()

    calls.clear()
    corpus = resolve_corpus(SMALL, cache_dir=tmp_path, progress=False, workers=1)
    assert calls == ["reelsa-c.abc"]  # only the new collection
    assert corpus.files == SMALL_FILES


def test_music21_sources_that_fail_are_counted_not_fatal(
    music21_corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = music21_corpus.parse

    def parse(source, *args, **kwargs):
        if Path(source).name == "movement6.mxl":
            raise ValueError("corrupt score")
        return real(source, *args, **kwargs)

    monkeypatch.setattr(music21_corpus, "parse", parse)
    corpus = resolve_corpus("music21:schoenberg", cache_dir=tmp_path, progress=False, workers=1)
    assert corpus.files == ("schoenberg/opus19/movement2.mid",)
    assert corpus.failed == 1
    assert corpus.summary()["failed"] == 1
    assert "1 music21 pieces could not be converted" in corpus.describe()
    [manifest] = (tmp_path / "corpora").rglob("manifest.json")
    failures = json.loads(manifest.read_text())["failures"]
    assert failures == ["schoenberg/opus19/movement6: ValueError: corrupt score"]

    def broken(source, *args, **kwargs):
        raise RuntimeError("music21 bug")

    monkeypatch.setattr(music21_corpus, "parse", broken)
    with pytest.raises(UserError, match="could not convert any"):
        resolve_corpus("music21:webern", cache_dir=tmp_path, progress=False, workers=1)
