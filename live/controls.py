"""The daemon's live controls: one table for a MIDI CC, the studio's sliders and the engine.

Every control a player can change while the daemon runs is declared once here, with its
range. ``validate`` checks a requested value against the table and the current settings (in
the caller's thread, so a bad value is refused before anything moves); ``apply`` changes
the engine (on the engine thread, which owns the sampler, the shaping and the seed; the
phrase policy's numbers are read by the input thread, which picks up a new one at its next
decision); ``current`` reads every value for a snapshot. A CC goes through the same
``validate``/``apply`` as a slider, so the two are one control.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from antiphon.errors import UserError
from antiphon.live.policy import MODES

if TYPE_CHECKING:
    from antiphon.live.performer import Performer

Value = float | int | str | None


class ControlError(UserError):
    """A control that does not exist, or a value it cannot take."""


@dataclass(frozen=True)
class ControlSpec:
    name: str
    kind: str  # "float" | "int" | "choice" | "seed" (an int, or None: free) | "action"
    label: str
    low: float = 0.0
    high: float = 0.0
    step: float = 1.0
    choices: tuple[str, ...] = ()
    unit: str = ""
    off: bool = False  # 0 means "no limit" (stored as None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SHAPING = {  # control -> Shaping field
    "transpose": "transpose",
    "lowest": "lowest",
    "highest": "highest",
    "polyphony": "polyphony",
    "max_note": "max_note_seconds",
    "notes": "max_notes",
    "velocity_scale": "velocity_scale",
    "tempo_scale": "tempo_scale",
}
POLICY = {"silence_ms": "silence", "min_response": "min_response", "max_response": "max_response"}

CONTROLS: dict[str, ControlSpec] = {
    c.name: c
    for c in (
        ControlSpec("mode", "choice", "Mode", choices=MODES),
        ControlSpec("temperature", "float", "Temperature", 0.0, 2.0, 0.01),
        ControlSpec("top_p", "float", "Top-p", 0.05, 1.0, 0.01),
        ControlSpec("similarity", "float", "Similarity (vary)", 0.0, 1.0, 0.01),
        ControlSpec("seed", "seed", "Seed lock", 0, 2**31 - 1, 1),
        ControlSpec("silence_ms", "float", "Silence that ends a phrase", 50, 5000, 10, unit="ms"),
        ControlSpec("min_response", "float", "Shortest answer", 0.5, 30, 0.5, unit="s"),
        ControlSpec("max_response", "float", "Longest answer", 0.5, 60, 0.5, unit="s"),
        ControlSpec("transpose", "int", "Transpose", -24, 24, 1, unit="st"),
        ControlSpec("lowest", "int", "Lowest pitch", 0, 127, 1),
        ControlSpec("highest", "int", "Highest pitch", 0, 127, 1),
        ControlSpec("polyphony", "int", "Polyphony", 0, 16, 1, off=True),
        ControlSpec("max_note", "float", "Longest note", 0, 8, 0.05, unit="s", off=True),
        ControlSpec("notes", "int", "Notes per answer", 0, 128, 1, off=True),
        ControlSpec("velocity_scale", "float", "Velocity scale", 0.0, 2.0, 0.05),
        ControlSpec("tempo_scale", "float", "Answer speed", 0.25, 4.0, 0.05, unit="x"),
        ControlSpec("bpm", "float", "Tempo (without --clock)", 20, 300, 1, unit="bpm"),
        ControlSpec("panic", "action", "Panic"),
    )
}


def current(performer: Performer) -> dict[str, Value]:
    """Every control's value as the engine has it now (``off`` controls: 0 for none)."""
    s, p, sh = performer.sampler.sampling, performer.policy, performer.shaping
    values: dict[str, Value] = {
        "mode": p.mode,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "similarity": s.similarity,
        "seed": performer.seed,
        "silence_ms": p.silence * 1000.0,
        "min_response": p.min_response,
        "max_response": p.max_response,
        "bpm": performer.timeline.tempo,
    }
    for name, attr in SHAPING.items():
        v = getattr(sh, attr)
        values[name] = 0 if v is None else v
    return values


def validate(name: object, value: object, values: dict[str, Value]) -> Value:
    """The value ``name`` would take, or a ``ControlError`` saying why not. ``values`` are
    the current ones (ranges that depend on each other are checked against them)."""
    if not isinstance(name, str) or name not in CONTROLS:
        raise ControlError(f"unknown control {name!r}; the controls are {', '.join(CONTROLS)}")
    spec = CONTROLS[name]
    if spec.kind == "action":
        return None
    if spec.kind == "choice":
        if value not in spec.choices:
            raise ControlError(f"{name} must be one of {', '.join(spec.choices)}, not {value!r}")
        return str(value)
    if spec.kind == "seed" and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ControlError(f"{name} needs a number, not {value!r}")
    if spec.kind in ("int", "seed"):
        if value != int(value):
            raise ControlError(f"{name} needs a whole number, not {value!r}")
        value = int(value)
    if not spec.low <= value <= spec.high:
        unit = f" {spec.unit}" if spec.unit else ""
        raise ControlError(f"{name} must lie in {spec.low:g}..{spec.high:g}{unit}, not {value!r}")
    after = {**values, name: value}
    if after["min_response"] > after["max_response"]:  # type: ignore[operator]
        raise ControlError("the shortest answer must not be longer than the longest")
    if after["lowest"] > after["highest"]:  # type: ignore[operator]
        raise ControlError("the lowest pitch must not be above the highest")
    return float(value) if spec.kind == "float" else value


def apply(performer: Performer, name: str, value: Value) -> None:
    """Change the engine (the engine thread; ``value`` came through ``validate``)."""
    s = performer.sampler.sampling
    if name in ("temperature", "top_p", "similarity"):
        setattr(s, name, float(value))  # type: ignore[arg-type]
    elif name == "mode" and value == "vary" and not hasattr(performer.voice, "vary"):
        raise ControlError(
            f"mode vary: a {performer.voice.model.info.family} model cannot vary a phrase"
        )
    elif name == "mode" and value in MODES and value != performer.policy.mode:
        performer.interrupt(performer.now())  # a mode change releases what the old mode played
        performer.policy.mode = str(value)
    elif name == "seed":
        performer.seed = None if value is None else int(value)  # type: ignore[arg-type]
    elif name in POLICY:
        scale = 1000.0 if name == "silence_ms" else 1.0
        setattr(performer.policy, POLICY[name], float(value) / scale)  # type: ignore[arg-type]
    elif name in SHAPING:
        spec = CONTROLS[name]
        v = None if spec.off and not value else value
        performer.shaping = replace(performer.shaping, **{SHAPING[name]: v})
    elif name == "bpm":
        performer.timeline.set_tempo(float(value), performer.now())  # type: ignore[arg-type]
