"""The miditok tokenizer antiphon trains on, and its full parameters as JSON.

MIDILike is the default because the daemon can extend it one incoming event at a time; REMI
and TSD are selectable for offline work. Every checkpoint and ONNX file carries
``Tokenizer.to_params()``; ``Tokenizer.from_params`` rebuilds the identical tokenizer.
Files reach miditok through ``notes`` (merged, quantized, one voice), so the live
context and this offline path see the same notes.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from antiphon.errors import UserError
from antiphon.models.midi.codec import MidiLikeCodec
from antiphon.models.midi.notes import Grid, Note, Pedal, Performance, read_performance

KINDS = {"midilike": "MIDILike", "remi": "REMI", "tsd": "TSD"}
PIANO = (21, 108)


def import_miditok() -> ModuleType:
    """miditok without torch: it imports torch when it can, which costs the daemon ~2 s."""
    if "miditok" in sys.modules:
        return sys.modules["miditok"]
    block = "torch" not in sys.modules
    if block:
        sys.modules["torch"] = None  # type: ignore[assignment]  # makes `import torch` fail
    try:
        import miditok
    finally:
        if block:
            del sys.modules["torch"]
    return miditok


def default_config(**overrides: Any) -> Any:
    miditok = import_miditok()
    params: dict[str, Any] = dict(
        pitch_range=PIANO,
        beat_res={(0, 4): 8, (4, 12): 4},
        num_velocities=32,
        special_tokens=["PAD", "BOS", "EOS", "MASK"],
        use_sustain_pedals=True,
        sustain_pedal_duration=False,
        use_time_signatures=False,
        use_tempos=False,
        use_programs=False,
        use_pitchdrum_tokens=False,
        remove_duplicated_notes=True,
    )
    params.update(overrides)
    return miditok.TokenizerConfig(**params)


class Tokenizer:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        cfg = inner.config
        self.kind: str = type(inner).__name__
        self.vocab: list[str] = [t for t, _ in sorted(inner.vocab.items(), key=lambda kv: kv[1])]
        self.grid = Grid(
            tpq=int(cfg.max_num_pos_per_beat),
            pitch_lo=int(cfg.pitch_range[0]),
            pitch_hi=int(cfg.pitch_range[1]),
            velocities=tuple(int(v) for v in inner.velocities),
        )
        ids = {t: i for i, t in enumerate(self.vocab)}
        self.pad, self.bos, self.eos = ids["PAD_None"], ids["BOS_None"], ids["EOS_None"]

    @classmethod
    def create(cls, kind: str = "midilike", **overrides: Any) -> Tokenizer:
        if kind.lower() not in KINDS:
            raise UserError(f"unknown tokenizer {kind!r}; choose one of {', '.join(KINDS)}")
        miditok = import_miditok()
        return cls(getattr(miditok, KINDS[kind.lower()])(default_config(**overrides)))

    def to_params(self) -> dict:
        return json.loads(json.dumps(self.inner.to_dict()))

    @classmethod
    def from_params(cls, params: dict | str) -> Tokenizer:
        params = json.loads(params) if isinstance(params, str) else params
        name = params.get("tokenization")
        if name not in KINDS.values():
            raise UserError(f"unsupported tokenizer {name!r} in the model's metadata")
        miditok = import_miditok()
        # miditok rebuilds a tokenizer from a JSON file only (it fixes up tuple keys there).
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "tokenizer.json"
            path.write_text(json.dumps(params))
            return cls(getattr(miditok, name)(params=path))

    def __len__(self) -> int:
        return len(self.vocab)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.to_params() == other.to_params()

    def codec(self) -> MidiLikeCodec:
        if self.kind != "MIDILike":
            raise UserError(f"{self.kind} cannot be encoded one event at a time; use MIDILike")
        return MidiLikeCodec(self.vocab, self.grid)

    # -- offline encode / decode -------------------------------------------------------
    def encode(self, perf: Performance) -> list[int]:
        seq = self.inner.encode(to_score(perf), encode_ids=False)
        seq = seq[0] if isinstance(seq, list) else seq
        return list(seq.ids)

    def encode_file(self, path: str | Path) -> list[int]:
        return self.encode(read_performance(path, self.grid))

    def decode(self, ids: list[int]) -> Performance:
        """Tokens back to notes on the grid (miditok's decoder; unclosed notes are dropped)."""
        ids = [i for i in ids if i not in (self.pad, self.bos, self.eos)]
        if not ids:
            return Performance(self.grid, [], [])
        score = self.inner.decode([ids])
        notes: list[Note] = []
        pedals: list[Pedal] = []
        scale = self.grid.tpq / score.ticks_per_quarter
        for track in score.tracks:
            for n in track.notes:
                start = round(n.start * scale)
                notes.append(Note(start, max(start + 1, round(n.end * scale)), n.pitch, n.velocity))
            for p in track.pedals:
                pedals.append(Pedal(round(p.start * scale), round(p.end * scale)))
        notes.sort(key=lambda n: (n.start, n.pitch))
        return Performance(self.grid, notes, pedals)


def to_score(perf: Performance) -> Any:
    """A one-track symusic Score on the grid, notes sorted as miditok's dedup sorts them."""
    import symusic

    score = symusic.Score(perf.grid.tpq)
    track = symusic.Track(program=0, is_drum=False)
    for n in sorted(perf.notes, key=lambda n: (n.start, n.pitch)):
        assert n.end is not None
        track.notes.append(symusic.Note(n.start, n.end - n.start, n.pitch, n.velocity))
    for p in perf.pedals:
        assert p.end is not None
        track.pedals.append(symusic.Pedal(p.start, p.end - p.start))
    score.tracks.append(track)
    return score
