"""When to play: phrase ends for call and response, a rolling horizon for accompaniment.

Pure decisions over injected times (seconds on the daemon's monotonic clock); the daemon
tells it what the player's keys and pedal do and asks when the phrase is over.

The phrase rule. A phrase is over ``silence`` seconds after the last of its keys and its
pedal went up — except what the player has played over: a key or pedal held while another
note, struck more than ``CHORD_WINDOW`` after it went down, was played and released (a
pedal point, a pedal held through the whole phrase, a key whose note-off was lost on the
way) no longer keeps the phrase open, and its release no longer moves the phrase's end.
So a held or rolled chord, the last note of a phrase held long, and a pedal pressed after
the last chord (syncopated pedalling) keep the phrase open as before. A key's note-off
releases it, whatever strikes came before (as ``models.notes.NoteStream`` does).

Keys that never come up: a key or pedal that stays down while nothing at all is played
for ``hold_limit`` seconds (longer than any held note of a real phrase) is treated as
released then, and the phrase ends a silence later; ``expire`` hands those to the daemon,
which releases them in the context and says so in its log. A pedal pressed again with no
pedal-up between (the same down value twice) is a new press: its pedal-up was lost, and
the log says so. The answer lasts as long as the call, clamped to [min_response,
max_response].
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

MODES = ("respond", "accompany", "vary")
# Modes answered at the end of the player's phrase; ``vary`` answers with a variation of it
# (voices that encode a phrase: ``live.vae_voice``).
PHRASE_MODES = ("respond", "vary")
CHORD_WINDOW = 0.25  # seconds: notes struck this close after a hold went down are its chord

Hold = tuple[Hashable, ...]  # ("key", channel, pitch) or ("pedal", channel)


@dataclass
class PolicyConfig:
    mode: str = "respond"
    silence: float = 0.5  # seconds after the last gesture's release that end a phrase
    min_response: float = 2.0
    max_response: float = 12.0
    horizon: float = 2.0  # accompany: seconds generated ahead of now
    replan_interval: float = 0.25  # accompany: at most one re-plan per this many seconds
    idle_stop: float = 4.0  # accompany: stop this long after the player's last note
    hold_limit: float = 8.0  # a key or pedal down this long with nothing played is released


class PhrasePolicy:
    """Tracks the player's phrase: where it started, what is held, when it ends."""

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config
        self.phrase_start: float | None = None
        self.last_on: float | None = None  # the latest note-on of the phrase
        self.last_release: float | None = None  # the latest release of a hold that counted
        self.last_input: float | None = None
        self.down: dict[Hold, float] = {}  # what the player holds -> when it went down
        self.pedal_value: dict[int, int] = {}  # each channel's last sustain value
        self.played_over = -1e18  # the latest strike of a key already released

    # -- what the player does ---------------------------------------------------------------
    def on_note_on(self, t: float, channel: int = 0, pitch: int = 60) -> None:
        ended = self.phrase_end()
        if self.phrase_start is None or (ended is not None and t >= ended):
            self.phrase_start = t  # a new phrase (the previous one was answered)
        self.last_on = t
        self.last_release = None
        self.last_input = t
        self.down[("key", channel, pitch)] = t

    def on_note_off(self, t: float, channel: int = 0, pitch: int = 60) -> None:
        self._up(("key", channel, pitch), t)

    def on_pedal(self, t: float, channel: int, value: int) -> bool:
        """The sustain pedal's controller value (64 and over: down). Returns whether this
        was a press whose pedal-up was lost on the way, and one that matters: the same
        down value again, after the old press had been played over. A switch pedal sends
        only 0 and 127 and a continuous one sends a value only when it changes, so the same
        value twice is a new press; taken as the old one, the phrase it opens would end at
        its last key, ignoring the new pedal (seen in a soak: a pedal phrase 15 phrases
        after a lost pedal-up answered while its chord still rang)."""
        self.last_input = t
        hold = ("pedal", channel)
        last = self.pedal_value.get(channel)
        self.pedal_value[channel] = value
        if value < 64:
            self._up(hold, t)
            return False
        pressed = self.down.get(hold)
        if pressed is None:
            self.down[hold] = t
            return False
        if value != last:
            return False  # a continuous pedal moving while down: the same press
        self.down[hold] = t
        return not self._counts(pressed)

    def on_all_notes_off(self, t: float, channel: int) -> None:
        """A DAW's All Notes Off: the channel's keys go up (its pedal stays)."""
        for hold in [h for h in self.down if h[0] == "key" and h[1] == channel]:
            self._up(hold, t)

    def _up(self, hold: Hold, t: float) -> None:
        self.last_input = t
        pressed = self.down.pop(hold, None)
        # A release of something never pressed (its note-on was lost) moves nothing.
        if pressed is None:
            return
        if self._counts(pressed):
            self.last_release = t if self.last_release is None else max(self.last_release, t)
        if hold[0] == "key":
            self.played_over = max(self.played_over, pressed)

    # -- decisions ------------------------------------------------------------------------------
    def _counts(self, pressed: float) -> bool:
        """Whether a hold that went down at ``pressed`` keeps the phrase open: nothing
        struck more than ``CHORD_WINDOW`` after it has been played and released since."""
        return self.played_over <= pressed + CHORD_WINDOW

    @property
    def holding(self) -> bool:
        """Whether a key or the pedal that counts is still down."""
        return any(self._counts(p) for p in self.down.values())

    def phrase_end(self) -> float | None:
        """When the current phrase will be over if nothing else is played, else None."""
        if self.phrase_start is None or self.last_on is None or self.holding:
            return None
        release = self.last_on if self.last_release is None else self.last_release
        return release + self.config.silence

    def expire(self, now: float) -> list[tuple[Hold, float]]:
        """Holds down for ``hold_limit`` with nothing played meanwhile: they are released
        here and returned with how long each was down. The phrase then ends a silence
        later, as after any release: ending it at once left the answer no time to be
        prepared, and on a loaded machine its first note went out 47-79 ms after its
        phrase end (flagged late) where every other answer was on time."""
        if not self.down or self.last_input is None:
            return []
        if now - self.last_input < self.config.hold_limit:
            return []
        gone = [(h, now - p) for h, p in self.down.items()]
        blocked = self.holding
        self.down.clear()
        self.last_input = now
        if blocked:
            self.last_release = now  # let go now: the phrase ends a silence later
        return gone

    def response_seconds(self, end: float) -> float:
        assert self.phrase_start is not None
        call = max(0.0, end - self.config.silence - self.phrase_start)
        return min(max(call, self.config.min_response), self.config.max_response)

    def reset(self) -> None:
        self.phrase_start = None
        self.last_on = None
        self.last_release = None
