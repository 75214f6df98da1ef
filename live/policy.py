"""When to play: phrase ends for call and response, a rolling horizon for accompaniment.

Pure decisions over injected times (seconds on the daemon's monotonic clock); the daemon
asks and acts. A phrase is over when every key and the pedal have been up for ``silence``
seconds; the answer lasts as long as the call, clamped to [min_response, max_response].
"""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("respond", "accompany")


@dataclass
class PolicyConfig:
    mode: str = "respond"
    silence: float = 0.5  # seconds of all-keys-up that end a phrase
    min_response: float = 2.0
    max_response: float = 12.0
    horizon: float = 2.0  # accompany: seconds generated ahead of now
    replan_interval: float = 0.25  # accompany: at most one re-plan per this many seconds
    idle_stop: float = 4.0  # accompany: stop this long after the player's last note


class PhrasePolicy:
    """Tracks the player's phrase: where it started, when it goes silent, when it ends."""

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config
        self.phrase_start: float | None = None
        self.last_release: float | None = None  # all keys and pedal went up here
        self.last_input: float | None = None

    def on_note_on(self, t: float) -> None:
        ended = self.phrase_end()
        if self.phrase_start is None or (ended is not None and t >= ended):
            self.phrase_start = t  # a new phrase (the previous one was answered)
        self.last_release = None
        self.last_input = t

    def on_release(self, t: float, holding: bool) -> None:
        """A key or the pedal went up; ``holding`` tells whether anything is still down."""
        self.last_input = t
        if not holding and self.phrase_start is not None:
            self.last_release = t

    def on_hold(self, t: float) -> None:
        """The pedal went down (a key still sounding keeps the phrase open)."""
        self.last_release = None
        self.last_input = t

    def phrase_end(self) -> float | None:
        """When the current phrase will be over if nothing else is played, else None."""
        if self.phrase_start is None or self.last_release is None:
            return None
        return self.last_release + self.config.silence

    def response_seconds(self, end: float) -> float:
        assert self.phrase_start is not None
        call = max(0.0, end - self.config.silence - self.phrase_start)
        return min(max(call, self.config.min_response), self.config.max_response)

    def reset(self) -> None:
        self.phrase_start = None
        self.last_release = None
