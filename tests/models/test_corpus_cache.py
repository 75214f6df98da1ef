"""The music21 cache's validity (content, not versions), the keyboard works and their split,
and antiphon's own score -> MIDI conversion against music21's translator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from antiphon.models import corpus as corpus_module
from antiphon.models import dataset
from antiphon.models.corpus import (
    KEYBOARD_WORKS,
    Corpus,
    is_keyboard_file,
    resolve_corpus,
    split_of,
)
from tests.models.test_corpus import SMALL_FILES, _watch_parse, music21_corpus  # noqa: F401

SCHOENBERG = "music21:schoenberg"


def test_the_cache_outlives_a_music21_upgrade_that_ships_the_same_files(
    music21_corpus,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import music21

    first = resolve_corpus(SCHOENBERG, cache_dir=tmp_path, progress=False, workers=1)
    monkeypatch.setattr(music21, "__version__", "99.0.0")
    calls = _watch_parse(monkeypatch, music21_corpus)
    again = resolve_corpus(SCHOENBERG, cache_dir=tmp_path, progress=False, workers=1)
    assert calls == [] and again == first
    assert first.root == tmp_path / "corpora" / "music21"


def test_a_changed_source_is_converted_again_and_alone(
    music21_corpus,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = resolve_corpus(SCHOENBERG, cache_dir=tmp_path, progress=False, workers=1)
    kept = first.root / SMALL_FILES[2]
    mtime = kept.stat().st_mtime_ns
    real = corpus_module.source_digest

    def digest(source: str) -> str:  # movement6.mxl as a new music21 release ships it
        return "changed" if source.endswith("movement6.mxl") else real(source)

    monkeypatch.setattr(corpus_module, "source_digest", digest)
    calls = _watch_parse(monkeypatch, music21_corpus)
    again = resolve_corpus(SCHOENBERG, cache_dir=tmp_path, progress=False, workers=1)
    assert calls == ["movement6.mxl"]
    assert again.files == first.files
    assert kept.stat().st_mtime_ns == mtime  # the unchanged source's file was kept
    calls.clear()
    assert resolve_corpus(SCHOENBERG, cache_dir=tmp_path, progress=False, workers=1) == first
    assert calls == []  # and the new manifest is trusted from then on


def test_a_manifest_of_other_conversion_code_is_rebuilt(
    music21_corpus,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = resolve_corpus(SCHOENBERG, cache_dir=tmp_path, progress=False, workers=1)
    manifest = first.root / "schoenberg" / "manifest.json"
    old = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**old, "format": 1}))
    calls = _watch_parse(monkeypatch, music21_corpus)
    assert resolve_corpus(SCHOENBERG, cache_dir=tmp_path, progress=False, workers=1) == first
    assert calls == ["movement2.mxl", "movement6.mxl"]


def test_the_token_cache_key_holds_its_format_and_the_keyboard_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from antiphon.models.midi.tokenizer import Tokenizer

    (tmp_path / "a.mid").write_bytes(b"MThd")
    corpus = Corpus(name="x", root=tmp_path, files=("a.mid",), failed=0)
    tok = Tokenizer.create()
    key = dataset._cache_key(corpus, tok)
    assert dataset._cache_key(corpus, tok) == key
    keyboard = Corpus(
        name="x", root=tmp_path, files=("a.mid",), failed=0, keyboard=frozenset({"a.mid"})
    )
    assert dataset._cache_key(keyboard, tok) != key
    monkeypatch.setattr(dataset, "TOKEN_CACHE_FORMAT", dataset.TOKEN_CACHE_FORMAT + 1)
    assert dataset._cache_key(corpus, tok) != key


# --- keyboard works -------------------------------------------------------------------------


def test_keyboard_files_and_their_split_are_pinned() -> None:
    assert is_keyboard_file("joplin/maple_leaf_rag.mid")
    assert is_keyboard_file("schoenberg/opus19/movement2.mid")
    assert not is_keyboard_file("bach/bwv846x.mid") and not is_keyboard_file("bach/bwv66.6.mid")
    # A third of the keyboard works is held out; the pinned rule decides which, for good.
    splits = {w: split_of(f"{w}.mid", keyboard=True) for w in sorted(KEYBOARD_WORKS)}
    assert sorted(w for w, s in splits.items() if s == "test") == [
        "bach/bwv846",
        "schoenberg/opus19/movement2",
        "schumann_clara/polonaise_op1n1",
    ]
    assert set(splits.values()) == {"train", "test"}
    assert split_of("bach/bwv846.mid") == "train"  # the rule for every other file is unchanged


def test_the_piano_split_is_the_keyboard_works_of_the_test_split(tmp_path: Path) -> None:
    files = ("bach/bwv846.mid", "joplin/maple_leaf_rag.mid", "piece64.mid", "piece12.mid")
    keyboard = frozenset(f for f in files if is_keyboard_file(f))
    corpus = Corpus(name="m", root=tmp_path, files=files, failed=0, keyboard=keyboard)
    assert corpus.split("test") == [tmp_path / "bach/bwv846.mid", tmp_path / "piece64.mid"]
    assert corpus.split("test", keyboard=True) == [tmp_path / "bach/bwv846.mid"]
    assert corpus.split("train", keyboard=True) == [tmp_path / "joplin/maple_leaf_rag.mid"]
    assert corpus.summary()["keyboard_files"] == {"train": 1, "valid": 0, "test": 1}
    assert corpus.split("test", keyboard=True) == corpus.split("test", keyboard=True)


def test_music21_corpus_marks_its_keyboard_works(
    music21_corpus,  # noqa: F811
    tmp_path: Path,
) -> None:
    corpus = resolve_corpus(SCHOENBERG, cache_dir=tmp_path, progress=False, workers=1)
    assert corpus.keyboard == frozenset(SMALL_FILES[2:])
    assert corpus.split("train", keyboard=True) == [corpus.root / SMALL_FILES[3]]
    assert corpus.split("test", keyboard=True) == [corpus.root / SMALL_FILES[2]]


# --- score -> MIDI --------------------------------------------------------------------------


def _translated_tokens(source: str, tmp_path: Path) -> list[int]:
    from music21 import corpus
    from music21.midi import translate

    from antiphon.models.midi.tokenizer import Tokenizer

    mf = translate.music21ObjectToMidiFile(corpus.parse(source, forceSource=True))
    path = tmp_path / "music21.mid"
    mf.open(str(path), "wb")
    mf.write()
    mf.close()
    return Tokenizer.create().encode_file(path)


@pytest.mark.parametrize(
    "source",
    [
        "bach/bwv347.mxl",
        "joplin/maple_leaf_rag.mxl",
        "palestrina/Credo_16_e.krn",
    ],
)
def test_scores_convert_to_the_tokens_music21s_translator_gives(
    music21_corpus,  # noqa: F811
    tmp_path: Path,
    source: str,
) -> None:
    """A chorale with repeats, a rag with repeats and dynamics, a Humdrum mass movement."""
    from antiphon.models.midi.tokenizer import Tokenizer
    from antiphon.models.scoremidi import parse_for_midi, score_to_midi

    path = str(Path(music21_corpus.__file__).parent / source)
    ours = tmp_path / "ours.mid"
    score_to_midi(parse_for_midi(path)).save(str(ours))
    assert Tokenizer.create().encode_file(ours) == _translated_tokens(path, tmp_path)


def test_a_score_whose_repeats_music21_cannot_follow_is_converted_as_written(
    music21_corpus,  # noqa: F811
    tmp_path: Path,
) -> None:
    import mido
    from music21 import repeat

    from antiphon.models.scoremidi import parse_for_midi, score_to_midi

    path = str(Path(music21_corpus.__file__).parent / "chopin/mazurka06-2.krn")
    with pytest.raises(repeat.ExpanderException):  # music21's translator gives up
        _translated_tokens(path, tmp_path)
    out = tmp_path / "mazurka.mid"
    score_to_midi(parse_for_midi(path)).save(str(out))
    notes = [m for m in mido.MidiFile(out) if m.type == "note_on" and m.velocity > 0]
    assert len(notes) > 300


def _voice(*notes: tuple[str, float, float, str | None]) -> object:
    """A flat stream of (pitch, offset, quarter length, tie type) notes."""
    from music21 import note, stream, tie

    part = stream.Stream()
    for name, offset, length, kind in notes:
        n = note.Note(name, quarterLength=length)
        if kind:
            n.tie = tie.Tie(kind)
        part.insert(offset, n)
    return part.flatten()


def _beats(notes: list[tuple[int, int, int, int]]) -> list[tuple[float, float, int]]:
    from antiphon.models.scoremidi import TICKS_PER_QUARTER as Q

    return [(start / Q, end / Q, pitch) for start, end, pitch, _ in notes]


def test_tied_notes_join_by_pitch_as_one_note() -> None:
    from antiphon.models.scoremidi import _part_notes

    chain = _voice(
        ("C4", 0, 1, "start"),
        ("E4", 1, 1, None),
        ("C4", 1, 2, "continue"),
        ("C4", 3, 1, "stop"),
        ("C4", 4, 1, None),
    )
    assert _beats(_part_notes(chain)) == [(0, 4, 60), (1, 2, 64), (4, 5, 60)]
    # A tie no note stops ends on the next note of its pitch from where it ends.
    unstopped = _voice(("D5", 7, 1, "start"), ("D5", 8, 1, None), ("D5", 9, 1, None))
    assert _beats(_part_notes(unstopped)) == [(7, 9, 74), (9, 10, 74)]


def test_a_note_inside_a_tied_note_is_another_voice_not_its_continuation() -> None:
    from antiphon.models.scoremidi import _part_notes

    notes = _voice(
        ("D4", 52.5, 3, "start"),
        ("D4", 55.5, 6, "continue"),
        ("D4", 58.5, 1, None),
        ("D4", 61.5, 1.5, "stop"),
    )
    assert _beats(_part_notes(notes)) == [(52.5, 63, 62), (58.5, 59.5, 62)]
