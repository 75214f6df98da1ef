from __future__ import annotations

import json

import pytest

from antiphon.errors import UserError
from antiphon.models.midi.notes import read_performance
from antiphon.models.midi.tokenizer import Tokenizer


@pytest.mark.parametrize("kind", ["midilike", "remi", "tsd"])
def test_params_round_trip_rebuilds_the_same_tokenizer(kind: str, chorale, tmp_path) -> None:
    tok = Tokenizer.create(kind)
    saved = tmp_path / "tok.json"
    saved.write_text(json.dumps(tok.to_params()))
    back = Tokenizer.from_params(json.loads(saved.read_text()))
    assert back == tok
    assert back.vocab == tok.vocab
    assert back.grid == tok.grid
    assert back.encode_file(chorale) == tok.encode_file(chorale)


def test_default_is_midilike_with_pedal_and_piano_range() -> None:
    tok = Tokenizer.create()
    assert tok.kind == "MIDILike"
    assert {"Pedal_0", "PedalOff_0", "NoteOn_21", "NoteOff_108", "BOS_None", "EOS_None"} <= set(
        tok.vocab
    )
    assert "NoteOn_109" not in tok.vocab
    assert not any(t.startswith(("TimeSig", "Tempo", "Program")) for t in tok.vocab)


def test_decode_inverts_encode_on_a_real_file(chorale) -> None:
    tok = Tokenizer.create()
    perf = read_performance(chorale, tok.grid)
    back = tok.decode(tok.encode(perf))
    key = lambda n: (n.start, n.pitch, n.end, n.velocity)  # noqa: E731
    assert sorted(map(key, back.notes)) == sorted(map(key, perf.notes))


def test_unknown_kind_and_foreign_params_are_user_errors() -> None:
    with pytest.raises(UserError, match="unknown tokenizer"):
        Tokenizer.create("octuple-ish")
    with pytest.raises(UserError, match="unsupported tokenizer"):
        Tokenizer.from_params({"tokenization": "Octuple", "config": {}})
