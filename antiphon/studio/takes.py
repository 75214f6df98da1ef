"""Continue a file from the page: takes of seeded variations, kept as a stack for undo.

A take is one call of ``antiphon continue``'s library function (live/continuation.py) on one
prompt: N variations with seeds ``seed, seed+1, ...``. "Continue this one" makes a new take
whose prompt is that variation's file; "regenerate" a new take of the same prompt with the
next seeds; "undo" drops the newest take. The continuation runs in a separate process (one
worker, kept between takes), so the model's token loop never holds the daemon's interpreter.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mido

from antiphon.atomic import write_bytes
from antiphon.errors import UserError
from antiphon.models.midi.notes import read_midi_file

MAX_TAKES = 50  # older takes (and their files) are forgotten


@dataclass
class Variation:
    index: int
    seed: int
    path: Path
    notes: list[list[float]]  # [start, end, pitch, velocity, new (1) or prompt (0)]
    prompt_end: float  # seconds: where the continuation starts
    added: int  # notes the continuation added

    def to_dict(self, take: int) -> dict[str, Any]:
        return {
            "index": self.index,
            "seed": self.seed,
            "notes": self.notes,
            "prompt_end": self.prompt_end,
            "added": self.added,
            "mid": f"/take/{take}/{self.index}.mid",
            "wav": f"/take/{take}/{self.index}.wav",
        }


@dataclass
class Take:
    id: int
    name: str
    prompt: Path
    options: dict[str, Any]
    seed: int
    variations: list[Variation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        opts = {k: v for k, v in self.options.items() if k != "seed"}
        return {
            "id": self.id,
            "name": self.name,
            "seed": self.seed,
            "options": opts,
            "variations": [v.to_dict(self.id) for v in self.variations],
        }


def file_notes(path: Path) -> tuple[list[list[float]], float]:
    """The notes of a continuation file in seconds, the last track's marked new, and when
    the new part starts (continue_file appends exactly one track)."""
    mid = mido.MidiFile(path)
    last = len(mid.tracks) - 1
    tempo, tpb = 500000, mid.ticks_per_beat
    # One tempo map for every track: the first track's tempo changes (type 1 files).
    changes = []
    for track in mid.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                changes.append((tick, msg.tempo))
    changes.sort()

    def seconds(tick: int) -> float:
        t, last_tick, current = 0.0, 0, tempo
        for at, value in changes:
            if at >= tick:
                break
            t += mido.tick2second(at - last_tick, tpb, current)
            last_tick, current = at, value
        return t + mido.tick2second(tick - last_tick, tpb, current)

    notes: list[list[float]] = []
    new_start = None
    for i, track in enumerate(mid.tracks):
        tick = 0
        down: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for msg in track:
            tick += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                down.setdefault((msg.channel, msg.note), []).append((tick, msg.velocity))
            elif msg.type in ("note_on", "note_off") and down.get((msg.channel, msg.note)):
                start, vel = down[(msg.channel, msg.note)].pop(0)
                s = seconds(start)
                notes.append([round(s, 4), round(seconds(tick), 4), msg.note, vel, int(i == last)])
                if i == last:
                    new_start = s if new_start is None else min(new_start, s)
    prompt_end = max((n[1] for n in notes if not n[4]), default=0.0)
    notes.sort(key=lambda n: (n[0], n[2]))
    return notes, prompt_end if new_start is None else min(prompt_end, new_start)


def run_take(prompt: str, out: str, model: str, opts: dict[str, Any]) -> list[str]:
    """In the worker process: ``continue_file`` with these options; the written paths."""
    from antiphon.live.continuation import ContinueOptions, continue_file
    from antiphon.live.sampling import Sampling

    options = ContinueOptions(
        seconds=opts["seconds"],
        bars=opts["bars"],
        sampling=Sampling(opts["temperature"], 0.95, opts["seed"]),
        variations=opts["variations"],
    )
    return [str(r.path) for r in continue_file(prompt, out, model, options)]


class Takes:
    """The stack of takes and the worker that makes them (the server's thread calls in)."""

    def __init__(self, folder: Path, model: str) -> None:
        self.folder, self.model = folder, model
        self.stack: list[Take] = []
        self._ids = 0
        self.busy = False
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")  # no fork of a threaded daemon
            self._pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            # The workers are read before shutdown, which sets the pool's table to None
            # (reading it after raised at every exit that had made a take, and the daemon's
            # own shutdown never ran).
            workers = list((getattr(self._pool, "_processes", None) or {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for proc in workers:
                proc.terminate()  # a take being made is not worth waiting for at exit
            for proc in workers:
                proc.join(5)  # gone before the caller removes the folder it writes into
            self._pool = None

    def find(self, take: int, variation: int) -> Variation:
        for t in self.stack:
            if t.id == take and 0 <= variation < len(t.variations):
                return t.variations[variation]
        raise UserError(f"there is no variation {variation + 1} of take {take}")

    def upload(self, name: str, data: bytes) -> Path:
        """Keep an uploaded file as a prompt; a file that is not MIDI is refused here."""
        self._ids += 1
        path = write_bytes(self.folder / f"upload-{self._ids}.mid", data, what="upload")
        try:
            read_midi_file(path)
        except UserError as exc:
            path.unlink(missing_ok=True)
            shown = os.path.basename(name) or "the file"
            raise UserError(f"{shown} is not a MIDI file we can continue ({exc})") from None
        return path

    def plan(self, name: str, prompt: Path, options: dict[str, Any]) -> Take:
        """A new take (not yet on the stack); the seed is the caller's or a fresh one."""
        self._ids += 1
        seed = options.get("seed")
        seed = secrets.randbelow(2**31 - 1000) if seed is None else seed
        return Take(self._ids, name, prompt, {**options, "seed": seed}, seed)

    def made(self, take: Take, paths: list[str]) -> Take:
        for i, p in enumerate(paths):
            notes, prompt_end = file_notes(Path(p))
            added = sum(1 for n in notes if n[4])
            take.variations.append(Variation(i, take.seed + i, Path(p), notes, prompt_end, added))
        self.stack.append(take)
        del self.stack[:-MAX_TAKES]
        return take

    def output_of(self, take: Take) -> Path:
        out = self.folder / f"take-{take.id}.mid"
        return out

    def regenerate(self) -> Take:
        if not self.stack:
            raise UserError("nothing to regenerate yet: drop a MIDI file first")
        last = self.stack[-1]
        opts = {**last.options, "seed": last.seed + last.options["variations"]}
        return self.plan(last.name, last.prompt, opts)

    def continue_from(self, take: int, variation: int) -> Take:
        v = self.find(take, variation)
        source = next(t for t in self.stack if t.id == take)
        opts = {**source.options, "seed": None}
        return self.plan(f"{source.name} / {variation + 1}", v.path, opts)

    def undo(self) -> None:
        if not self.stack:
            raise UserError("nothing to undo")
        self.stack.pop()

    def to_list(self) -> list[dict[str, Any]]:
        return [t.to_dict() for t in self.stack]
