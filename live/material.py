"""Varied playing for ``antiphon bench --live`` and the end-to-end tests, made from a seed.

A benchmark that plays only the phrases its author chose proves little, so the phrases come
from a seeded generator that mixes what keyboard players and DAWs send: single notes in
even, dotted and swung rhythms, staccato and legato (the next note-on before the previous
note-off), block and rolled chords, the sustain pedal held through a phrase or pressed
after its last chord (syncopated pedalling), the same pitch struck again while it sounds,
notes on several channels, and every velocity. Between phrases it can add what a phrase
must survive: a burst of malformed messages and sysex, a flood of notes, a key whose
note-off is lost, a pedal that never comes up, a DAW's All Notes Off.

Times are seconds from the start of the item. Each phrase knows when it ends by the
daemon's documented rule (``policy.PhrasePolicy``), computed here anew from the events.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from antiphon.live.policy import CHORD_WINDOW

Event = tuple[float, list[int]]  # (seconds from the item's start, one raw MIDI message)

PHRASE_KINDS = (
    "melody",
    "legato",
    "staccato",
    "dotted",
    "chords",
    "rolled",
    "pedal",
    "late-pedal",
    "restrike",
    "channels",
)
DISTURBANCES = ("garbage", "flood", "lost-note-off", "lost-pedal-up", "all-notes-off")


@dataclass
class Phrase:
    kind: str
    events: list[Event]
    release: float = 0.0  # when the phrase's last gesture is up (its end, before the silence)


@dataclass
class Disturbance:
    kind: str
    events: list[Event]


@dataclass
class Step:
    """One phrase, what comes just before it, and when the next one starts."""

    phrase: Phrase
    before: Disturbance | None = None
    # Seconds after the answer's first note at which the next phrase barges in (None: let
    # the answer play out).
    barge_after: float | None = None
    gap: float = 0.3  # seconds of rest before the phrase when nothing barges in
    extra: dict = field(default_factory=dict)


def release_time(events: list[Event], window: float = CHORD_WINDOW) -> float:
    """When the phrase of ``events`` is released, by the daemon's phrase rule: the latest
    release of a key or pedal that nothing was played over (no note struck more than
    ``CHORD_WINDOW`` after it went down had been released before); a key's note-off
    releases it, whatever strikes came before."""
    down: dict[tuple, float] = {}
    played_over = float("-inf")
    release = 0.0
    for t, m in sorted(events, key=lambda e: e[0]):
        kind, ch = m[0] & 0xF0, m[0] & 0x0F
        if kind == 0x90 and m[2] > 0:
            down[("key", ch, m[1])] = t
            release = max(release, t)
            continue
        if kind in (0x80, 0x90):
            hold: tuple = ("key", ch, m[1])
        elif kind == 0xB0 and m[1] == 64:
            hold = ("pedal", ch)
            if m[2] >= 64:
                down.setdefault(hold, t)
                continue
        else:
            continue
        pressed = down.pop(hold, None)
        if pressed is None:
            continue
        if played_over <= pressed + window:
            release = max(release, t)
        if hold[0] == "key":
            played_over = max(played_over, pressed)
    return release


# A strike this close to ``CHORD_WINDOW`` after a hold went down is on the rule's edge:
# JACK moves each message to a cycle start (up to 21 ms at 1,024 frames), so the daemon can
# hear 0.249 s where the material says 0.251, and end the phrase at another release.
EDGE = 0.025


def on_the_edge(events: list[Event]) -> bool:
    """Whether the phrase's end depends on which side of ``CHORD_WINDOW`` a strike falls by
    less than ``EDGE``: both are fair readings of what was played, so a benchmark that
    scores one of them as the truth must not play it (seen: a pedal phrase whose second
    chord came 0.25 s after the pedal, "answered" 222 ms before its end)."""
    return release_time(events, CHORD_WINDOW - EDGE) != release_time(events, CHORD_WINDOW + EDGE)


class Material:
    """``steps(n)``: n steps of varied playing; the same seed gives the same steps."""

    def __init__(
        self,
        seed: int = 0,
        *,
        disturb: float = 0.0,
        barge: float = 0.7,
        flood_seconds: float = 1.0,
        flood_rate: float = 17000.0,
        kinds: tuple[str, ...] = PHRASE_KINDS,
        disturbances: tuple[str, ...] = DISTURBANCES,
    ) -> None:
        self.rng = random.Random(seed)
        self.disturb, self.barge = disturb, barge
        self.flood_seconds, self.flood_rate = flood_seconds, flood_rate
        self.kinds, self.disturbances = kinds, disturbances

    def steps(self, n: int) -> list[Step]:
        out = []
        for _ in range(n):
            before = None
            if self.disturb and self.rng.random() < self.disturb:
                before = self.disturbance(self.rng.choice(self.disturbances))
            barge = None
            if self.rng.random() < self.barge:
                # anywhere from just after the first note to well into the answer
                barge = self.rng.choice([0.02, 0.1, 0.3, 0.6, 0.6, 1.0, 1.5, 2.2])
            out.append(
                Step(
                    self.phrase(self.rng.choice(self.kinds)),
                    before,
                    barge,
                    gap=self.rng.uniform(0.05, 0.6),
                )
            )
        return out

    # -- phrases ------------------------------------------------------------------------------
    def phrase(self, kind: str) -> Phrase:
        """A phrase of ``kind`` whose end is not on the phrase rule's edge (drawn again)."""
        while True:
            phrase = self._draw(kind)
            if not on_the_edge(phrase.events):
                return phrase

    def _draw(self, kind: str) -> Phrase:
        r = self.rng
        beat = 60.0 / r.uniform(80, 170)
        channel = 0 if kind != "channels" else None
        events: list[Event] = []
        t = 0.0
        root = r.randint(48, 72)

        def ch() -> int:
            return r.randrange(4) if channel is None else channel

        def note(at: float, pitch: int, length: float, c: int | None = None) -> None:
            c = ch() if c is None else c
            events.append((at, [0x90 | c, pitch, r.randint(20, 127)]))
            events.append((at + max(length, 0.01), [0x80 | c, pitch, r.choice([0, 0, 64])]))

        def melody_pitch(prev: int) -> int:
            return max(
                21, min(108, prev + r.choice([-7, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 7, 12]))
            )

        count = r.randint(3, 9)
        pitch = root
        if kind in ("melody", "legato", "staccato", "dotted", "channels", "restrike"):
            for i in range(count):
                if kind == "dotted":
                    dur = beat * (0.75 if i % 2 == 0 else 0.25)
                else:
                    dur = beat * r.choice([0.25, 0.5, 0.5, 1.0, 1.5])
                length = {
                    "legato": dur + r.uniform(0.01, 0.08),  # overlaps the next note-on
                    "staccato": dur * r.uniform(0.15, 0.4),
                }.get(kind, dur * r.uniform(0.6, 0.95))
                note(t, pitch, length)
                if kind == "restrike" and r.random() < 0.5:
                    # the same pitch struck again while it still sounds
                    c = events[-1][1][0] & 0x0F
                    events.append((t + length * 0.5, [0x90 | c, pitch, r.randint(30, 110)]))
                t += dur
                pitch = melody_pitch(pitch)
        elif kind in ("chords", "rolled", "pedal", "late-pedal"):
            if kind == "pedal":
                events.append((0.0, [0xB0, 64, 127]))
            for _ in range(max(2, count // 2)):
                dur = beat * r.choice([1.0, 1.0, 2.0, 0.5])
                size = r.randint(2, 5)
                chord = sorted(
                    {
                        max(21, min(108, root + r.choice([0, 3, 4, 7, 10, 12, 16, 19])))
                        for _ in range(size)
                    }
                )
                roll = 0.03 if kind == "rolled" else 0.008
                for k, p in enumerate(chord):
                    at = t + k * r.uniform(0, roll)
                    note(at, p, dur * r.uniform(0.7, 1.05) - (at - t))
                if kind == "late-pedal":
                    events.append((t + 0.05, [0xB0, 64, 127]))
                    events.append((t + dur * 0.9, [0xB0, 64, 0]))
                t += dur
                root = max(36, min(84, root + r.choice([-5, -2, 0, 2, 5, 7])))
            if kind == "pedal":
                # held across the phrase end: lifted after the keys, even after the silence
                events.append((t + r.uniform(0.05, 0.8), [0xB0, 64, 0]))
        events.sort(key=lambda e: e[0])
        return Phrase(kind, events, release_time(events))

    # -- what a phrase must survive -------------------------------------------------------------
    def disturbance(self, kind: str) -> Disturbance:
        r = self.rng
        ev: list[Event] = []
        if kind == "garbage":
            for i in range(r.randint(20, 80)):
                ev.append((i * 0.0005, self._garbage()))
        elif kind == "flood":
            n = int(self.flood_seconds * self.flood_rate / 2)
            for i in range(n):
                at = i * self.flood_seconds / n
                c, p = r.randrange(16), r.randint(21, 108)
                ev.append((at, [0x90 | c, p, r.randint(1, 127)]))
                ev.append((at + 0.0001, [0x80 | c, p, 0]))
            # a flood overflows the sender's own buffer; the DAW's panic at its end frees
            # whatever note-offs were lost on the way
            end = self.flood_seconds + 0.2
            ev += [(end, [0xB0 | c, 123, 0]) for c in range(16)]
        elif kind == "lost-note-off":
            p = r.randint(40, 90)
            ev.append((0.0, [0x90, p, 90]))  # and no note-off, ever
        elif kind == "lost-pedal-up":
            ev.append((0.0, [0xB0, 64, 127]))  # and no pedal-up
            ev.append((0.05, [0x90, 50, 70]))
            ev.append((0.3, [0x80, 50, 0]))
        elif kind == "all-notes-off":
            for p in (48, 52, 55):
                ev.append((0.0, [0x90, p, 80]))  # left down, then the DAW's panic
            ev.append((0.2, [0xB0, 123, 0]))
        return Disturbance(kind, ev)

    def _garbage(self) -> list[int]:
        r = self.rng
        choice = r.randrange(9)
        if choice == 0:
            return [r.randrange(0x80)]  # a stray data byte
        if choice == 1:
            return [r.choice([0xF4, 0xF5, 0xF9, 0xFD])]  # undefined status bytes
        if choice == 2:
            return [0xF0, *[r.randrange(0x80) for _ in range(r.randint(1, 12))], 0xF7]  # sysex
        if choice == 3:
            return [0x90 | r.randrange(16), r.randrange(128)]  # truncated note-on
        if choice == 4:
            return [0x80 | r.randrange(16), r.randrange(128), 0]  # note-off of nothing
        if choice == 5:
            return [0x90 | r.randrange(16), r.randrange(128), 0]  # velocity-0 note-on
        if choice == 6:
            return [0xE0 | r.randrange(16), r.randrange(128), r.randrange(128)]  # pitch bend
        if choice == 7:
            return [0xB0 | r.randrange(16), r.choice([7, 10, 11, 74, 91]), r.randrange(128)]
        return [0xA0 | r.randrange(16), r.randrange(128), r.randrange(128)]  # aftertouch
