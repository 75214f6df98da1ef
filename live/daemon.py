"""``antiphon live``: ports -> context -> policy -> engine -> scheduler -> ports.

Threads, each with one role: the input port's reader only enqueues; the input thread reads that
queue (the player's messages and the echo of everything antiphon sends) and turns it into
context tokens, phrase decisions and barge-ins; the engine thread (``Performer``) advances
the model and generates; the scheduler thread sends on time; the main thread waits for a
signal and watches the ports. Shutdown releases every note, then closes the output only
after JACK has had time to deliver the final messages.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from antiphon.errors import UserError
from antiphon.live import controls
from antiphon.live.clock import MidiClockFollower, parse_quantize
from antiphon.live.collector import Collector
from antiphon.live.context import OWN, StreamingContext
from antiphon.live.engine import open_voice
from antiphon.live.events import Events
from antiphon.live.heap import HeapTrim
from antiphon.live.jack import server_realtime
from antiphon.live.messages import ALL_NOTES_OFF, is_channel_message, parse
from antiphon.live.performer import Control, Cue, Heard, Performer, ResponseStats, Swap
from antiphon.live.policy import MODES, PHRASE_MODES, PhrasePolicy, PolicyConfig
from antiphon.live.ports import MidiInput, MidiOutput, RtMidiInput, RtMidiOutput
from antiphon.live.recorder import Recorder
from antiphon.live.sampling import Sampler, Sampling
from antiphon.live.scheduler import Scheduler
from antiphon.live.session import ModelFile
from antiphon.live.shaping import Shaping
from antiphon.live.statsfile import StatsFile
from antiphon.live.threadnames import name_this_python_thread
from antiphon.live.timeline import Timeline
from antiphon.sound.synth import LiveSynth, SynthOptions, player_channel_for

log = logging.getLogger(__name__)

DEFAULT_CC_MAP = {
    "temperature": 1,
    "top_p": 2,
    "mode": 80,
    "panic": 81,
    "vary": 82,
    "similarity": 83,
}
SELF = OWN  # source tag of antiphon's own notes in the context
MAX_GAP_BEATS = 8.0
# An answer whose first note has not gone out this long after it was planned never will
# (its notes were released or skipped): its line says why.
FIRST_NOTE_WINDOW = 0.5
# After a phrase's silence, how long its answer may take to be generated and scheduled: no
# full collection runs in that window (antiphon.live.collector).
ANSWER_ROOM = 0.5
LATE_MS = 10.0  # a first note sent this much after it was due is reported as late
# The input this far behind what was played (a message handled this long after it came
# in): a phrase played meanwhile is heard, and answered, late. Logged once it caught up.
BEHIND_S = 0.1
# Realtime: beside JACK's client threads (jackd -R's default -P 10 gives its own thread 10
# and clients' threads 5, as `ps -L -o cls,rtprio` shows), below its server's, above
# every ordinary thread; a thread of equal priority never preempts another.
REALTIME_PRIORITY = 5
# A JACK server that ran no cycle for this long is gone or hung (one waiting out a dead
# client under --sync moves on after 5 s).
SERVER_GONE_SECONDS = 10.0


def parse_cc_map(text: str | None) -> dict[str, int]:
    """``temperature=1,top_p=2,mode=80,panic=81`` (missing names keep their defaults;
    ``name=off`` disables one)."""
    mapping = dict(DEFAULT_CC_MAP)
    if not text:
        return mapping
    for item in text.split(","):
        name, _, value = item.strip().partition("=")
        if name not in DEFAULT_CC_MAP:
            raise UserError(
                f"--cc-map: unknown control {name!r}; choose from {', '.join(DEFAULT_CC_MAP)}"
            )
        if value == "off":
            mapping.pop(name)
            continue
        if not value.isdigit() or not 0 <= int(value) <= 127 or int(value) == 64:
            raise UserError(f"--cc-map: {name} needs a controller number 0-127 (not 64, the pedal)")
        mapping[name] = int(value)
    return mapping


@dataclass
class DaemonConfig:
    model: str | None = None
    name: str = "antiphon"
    backend: str = "auto"
    input: str | None = None
    output: str | None = None
    input_channel: int | None = None  # 1-16, None = all
    output_channel: int = 1  # 1-16
    bpm: float = 120.0
    clock: bool = False
    quantize: str = "1/16"
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    sampling: Sampling = field(default_factory=Sampling)
    shaping: Shaping = field(default_factory=Shaping)
    cc_map: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_CC_MAP))
    record: str | None = None
    stats: str | None = None
    threads: int = 1
    provider: str = "auto"  # onnxruntime's: auto|cpu|cuda
    # The note scheduler's thread asks for SCHED_FIFO: True (--realtime), False
    # (--no-realtime), None (the default): where the JACK server runs realtime, as its own
    # client threads do. Measured (bench --live --soak 30, quiet): an ordinary thread
    # sent 1 event 2.2 ms late in 30 min beside three SCHED_FIFO JACK clients; realtime, 0.
    realtime: bool | None = None
    synth: SynthOptions | None = None  # --synth: FluidSynth plays antiphon's notes
    synth_input: bool = False  # --synth-input: ... and the player's
    models: str | None = None  # --models: the folder of models to switch between (studio)

    def validate(self) -> DaemonConfig:
        if self.policy.mode not in MODES:
            raise UserError(f"--mode must be one of {', '.join(MODES)}")
        for label, ch in (
            ("--input-channel", self.input_channel),
            ("--output-channel", self.output_channel),
        ):
            if ch is not None and not 1 <= ch <= 16:
                raise UserError(f"{label} must be 1-16")
        if self.policy.silence <= 0:
            raise UserError("--silence-ms must be positive")
        if not 0 < self.policy.min_response <= self.policy.max_response:
            raise UserError("need 0 < --min-response <= --max-response")
        if not self.policy.hold_limit > self.policy.silence:
            raise UserError("--hold-limit must be longer than the silence (--silence-ms)")
        if not self.bpm > 0:
            raise UserError("--bpm must be positive")
        self.sampling.validate()
        return self


# Seconds ahead of its time each note goes out on JACK: more than the note thread's usual
# wake-up delay (40-200 us measured under --load 2), less than a period at any buffer size.
JACK_LEAD = 0.0003


class EchoOutput(MidiOutput):
    """Sends to the real port and hands every sent message back to the input thread, so
    antiphon's own notes enter the context (and the recording) exactly as played."""

    def __init__(
        self,
        inner: MidiOutput,
        echo: Callable[[list[int]], None],
        synth: LiveSynth | None = None,
    ) -> None:
        super().__init__(flush_seconds=0.0)
        self.inner, self.echo, self.synth = inner, echo, synth
        self.port_name = inner.port_name

    def _send(self, msg: list[int]) -> None:
        if self.synth is not None:  # first: a note-off reaches it even if the port is gone
            self.synth.send(msg)
        self.inner.send(msg)
        self.echo(msg)

    def _close(self) -> None:
        self.inner.close()

    def is_connected(self) -> bool:
        return self.inner.is_connected()

    def reconnect(self) -> bool:
        return self.inner.reconnect()

    def settle(self) -> None:  # owed note-offs were echoed when first sent
        self.inner.settle()


class Daemon:
    def __init__(
        self,
        config: DaemonConfig,
        *,
        now: Callable[[], float] = time.perf_counter,
        open_input: Callable[..., MidiInput] | None = None,
        open_output: Callable[..., MidiOutput] | None = None,
    ) -> None:
        self.config = config.validate()
        self.now = now
        self.stop_event = threading.Event()
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.malformed = 0
        self._behind = 0.0  # how far behind the input ran, the most since the last row
        self._episode: tuple[float, int] | None = None  # this one's worst, and its messages
        self.heap = HeapTrim()  # freed heap back to the system after a flood
        self.collector = Collector()
        self._stats_pending: list[ResponseStats] = []
        self._stats_lock = threading.Lock()
        self._lost: set[str] = set()
        self.events = Events()  # what happens, for observers (the studio)
        self.exit_status = 0

        self.voice = self._open_voice(
            config.model,
            config.policy.mode,
            "--mode vary: {family}; use a musicvae model, or --mode respond",
        )
        self.quantize = parse_quantize(config.quantize) if config.clock else None
        self.follower = MidiClockFollower() if config.clock else None
        self.timeline = Timeline(config.bpm, now(), self.follower)
        self.context = StreamingContext(self.voice.grid)
        self.phrase = PhrasePolicy(config.policy)
        self.recorder = Recorder(config.bpm) if config.record else None
        self.stats_file = StatsFile(config.stats) if config.stats else None
        self._last_cue = -1e9
        self._cued_end: float | None = None
        self._cue_due: Callable[[], None] | None = None

        open_output = open_output or (
            lambda: RtMidiOutput(backend=config.backend, client=config.name, port=config.output)
        )
        open_input = open_input or (
            lambda on_message: RtMidiInput(
                on_message,
                backend=config.backend,
                client=config.name,
                port=config.input,
                now=now,
                busy=self._playing,
            )
        )
        self.synth = (
            LiveSynth(config.synth, player_channel=player_channel_for(config.output_channel - 1))
            if config.synth is not None
            else None
        )
        try:
            self.output = EchoOutput(open_output(), self._echo, self.synth)
            try:
                self.input = open_input(self._on_message)
            except BaseException:
                self.output.close()
                raise
        except BaseException:
            if self.synth is not None:
                self.synth.close(tail=0)
            raise
        self.scheduler = Scheduler(
            self.output,
            now,
            channel=config.output_channel - 1,
            realtime_priority=REALTIME_PRIORITY if self._realtime() else None,
            realtime_asked=config.realtime is True,
            mark=lambda: self.input.cycle_now(),
            # JACK plays a send at the next cycle, so a send ahead by this much costs nothing
            # and puts a first note due on a cycle's start in that cycle (Scheduler.lead)
            lead=JACK_LEAD if getattr(self.output.inner, "backend", None) == "jack" else 0.0,
        )
        self.performer = Performer(
            self.voice,
            self.scheduler,
            self.timeline,
            Sampler(config.sampling),
            config.policy,
            channel=config.output_channel - 1,
            shaping=config.shaping,
            quantize=self.quantize,
            now=now,
            on_response=self._on_response,
            events=self.events,
        )
        self.input_thread = threading.Thread(
            target=self._input_loop, name="antiphon-input", daemon=True
        )

    def _realtime(self) -> bool:
        """Whether the note scheduler asks for SCHED_FIFO (see ``DaemonConfig.realtime``)."""
        if self.config.realtime is not None:
            return self.config.realtime
        return getattr(self.input, "backend", None) == "jack" and server_realtime() is True

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        # Threads hand the GIL over every 5 ms by default; the scheduler must wake sooner.
        sys.setswitchinterval(0.0005)
        # Last, once everything the session keeps is loaded: see antiphon.live.collector.
        self.collector.install(self.now())
        self.scheduler.start()
        self.performer.start()
        self.input_thread.start()
        if getattr(self.input, "backend", None) == "jack" and server_realtime() is False:
            # Measured (bench --live --load 2): such a server waits for a starved client
            # every cycle; 2 phrases in 200 went unanswered and p99 was 1.4 s. With jackd -R,
            # the same run: 200 of 200, p99 4 ms.
            log.warning(
                "the JACK server runs without realtime scheduling: on a busy machine its "
                "cycles stall, and every answer with them (start jackd with -R, its default)"
            )
        if self.recorder is not None and self.config.record:
            self.recorder.keep_saved(self.config.record, self.now)  # FILE stays current

    @property
    def ready_line(self) -> str:
        model = self.voice.model
        synth = self.synth
        return (
            f"antiphon ready: in={self.input.port_name} out={self.output.port_name} "
            f"model={model.path.name} ({model.info.family}) mode={self.config.policy.mode} "
            f"provider={model.provider}"
        ) + (f" synth={synth.driver}:{synth.soundfont.name}" if synth else "")

    def run(self, poll: float = 0.2) -> int:
        """Wait for ``stop_event`` (set by a signal handler), watching ports and threads;
        the exit status: 0, or 1 where the daemon stopped itself (the engine failed, the
        JACK server stopped)."""
        while not self.stop_event.wait(poll):
            self._watch()
        return self.exit_status

    def shutdown(self) -> None:
        """Release every note, stop the threads, flush and close the ports, write files."""
        with contextlib.suppress(Exception):
            self.input.close()  # no new notes start anything
        self.performer.stop(block=True)
        self.scheduler.stop(block=True, release=True)
        self.queue.put(None)
        self.input_thread.join(timeout=1.0)
        self.output.inner.settle()  # note-offs a stall of the server still owes
        self.output.inner.close()  # waits for JACK to deliver the final messages
        if self.synth is not None:
            self.synth.close()  # every note released, and its release heard
        self._flush_stats(final=True)
        if self._episode is not None:
            log.warning(
                "the input was still %.2f s behind what was played when antiphon stopped",
                self._episode[0],
            )
        self.collector.uninstall()
        if self.scheduler.late:
            log.warning(
                "%d events went out more than %.0f ms late this session (the worst %.1f ms late)",
                self.scheduler.late,
                self.scheduler.late_tolerance * 1e3,
                self.scheduler.max_lateness * 1e3,
            )
        if self.recorder is not None and self.config.record:
            self.recorder.stop_saving()
            self.recorder.write(self.config.record, self.now())

    # -- the input side ----------------------------------------------------------------------
    def _playing(self) -> bool:  # the input's reader: poll fast while a barge-in can come
        scheduler = getattr(self, "scheduler", None)
        return scheduler is not None and scheduler.busy()

    def _on_message(self, data: list[int], t: float) -> None:  # the port's reader thread
        self.heap.saw(t)
        if self.synth is not None and self.config.synth_input:
            self.synth.send_player(data)
        self.queue.put(("in", data, t))

    def _echo(self, data: list[int]) -> None:  # whichever thread sent
        self.queue.put((SELF, data, self.now()))

    def _input_loop(self) -> None:
        name_this_python_thread()
        while True:
            item = self.queue.get()
            if item is None:
                return
            source, data, t = item
            try:
                if source == "in":
                    self._measure_behind(t)
                self._handle_input(source, data, t)
                # Cues are made once the queue is drained: under a flood only the last
                # one could matter (every later message would void it).
                if self._cue_due is not None and self.queue.empty():
                    due, self._cue_due = self._cue_due, None
                    due()
            except Exception:  # one bad message must not stop the daemon
                self.malformed += 1
                log.exception("input message %r dropped", data)

    def _measure_behind(self, t: float) -> None:
        """How long after it came in a message of the player's is handled: the reader's
        and this thread's lag together. An episode over ``BEHIND_S`` gets one log line once
        it is over (a flood the machine could not keep up with); the worst since the last
        answer goes in its ``--stats`` row."""
        behind = self.now() - t
        self._behind = max(self._behind, behind)
        if behind >= BEHIND_S:
            worst, count = self._episode or (0.0, 0)
            self._episode = (max(worst, behind), count + 1)
        elif self._episode is not None and behind < BEHIND_S / 4:
            worst, count = self._episode
            self._episode = None
            log.warning(
                "the input ran up to %.2f s behind what was played (%d messages handled "
                "late: a flood?); phrases played meanwhile were heard and answered late",
                worst,
                count,
            )

    def _handle_input(self, source: str, data: Any, t: float) -> None:
        if source == "model":
            self._switch(data, t)
            return
        if source == "keepalive":
            self._cue_accompaniment(t, force=True)
            return
        if source == "tick":
            # Only with nothing waiting: the hold limit is about nothing played, and while
            # messages wait (a flood behind), keys whose note-offs wait too would be let go.
            if self.queue.empty():
                self._expire_holds(t)
            return
        if source != SELF and self.recorder is not None and is_channel_message(data):
            self.recorder.add("player", t, data)  # everything that reached the port
        msg = parse(data)
        if msg is None:
            self.malformed += source != SELF and not is_channel_message(data)
            return
        if msg.kind in ("clock", "start", "continue", "stop"):
            if self.follower is not None and source != SELF:
                self.follower.feed(data, t)
            return
        if source == SELF:
            self._own(msg, data, t)
            return
        ch = self.config.input_channel
        if ch is not None and msg.channel != ch - 1:
            return
        if msg.kind == "cc" and msg.a in ALL_NOTES_OFF:
            # Also what recovers keys whose note-offs a flooded transport dropped.
            ticks = self.context.all_notes_off(self.timeline.beat_at(t), ("in", msg.channel))
            self.phrase.on_all_notes_off(t, msg.channel)
            self.performer.inbox.put(Heard(ticks, player=True))
            self._cue_due = (
                self._cue_phrase_end if self.performer.policy.mode in PHRASE_MODES else None
            )
            return
        if msg.kind == "cc" and msg.a != 64:
            self._controller(msg.a, msg.b, t)
            return
        beat = self.timeline.beat_at(t)
        key = ("in", msg.channel)
        respond = self.performer.policy.mode in PHRASE_MODES
        if msg.kind == "on":
            self._cued_end = None
            # barge-in: released before anything else (a speculation is no barge-in)
            sounding = respond and bool(self.scheduler.sounding())
            if respond and self.performer.interrupt(t) and sounding:
                self.events.emit("barge_in", t=t)
            ticks = self.context.note_on(beat, msg.a, msg.b, key)
            self.phrase.on_note_on(t, msg.channel, msg.a)
        elif msg.kind == "off":
            ticks = self.context.note_off(beat, msg.a, key)
            self.phrase.on_note_off(t, msg.channel, msg.a)
        else:  # the sustain pedal
            ticks = self.context.pedal(beat, msg.b, key)
            if self.phrase.on_pedal(t, msg.channel, msg.b):
                log.warning(
                    "the pedal on channel %d went down again with no pedal-up between: "
                    "taken as a new press (its pedal-up was lost?)",
                    msg.channel + 1,
                )
        if ticks:  # most messages close no tick: nothing for the engine (nor a wake-up)
            self.performer.inbox.put(Heard(ticks, player=True))
        self.events.emit("player", t=t, data=data)
        if respond:
            self._cue_due = self._cue_phrase_end
        elif msg.kind == "on":
            self._cue_due = lambda: self._cue_accompaniment(t)

    def _expire_holds(self, t: float) -> None:
        """Keys and pedals down for ``hold_limit`` with nothing played: released (their
        note-offs were most likely lost on the way), so they cannot hold a phrase open."""
        gone = self.phrase.expire(t)
        if not gone:
            return
        beat = self.timeline.beat_at(t)
        ticks = []
        for hold, seconds in gone:
            if hold[0] == "key":
                _, channel, pitch = hold
                ticks += self.context.note_off(beat, pitch, ("in", channel))
                what = f"key {pitch} on channel {channel + 1}"
            else:
                ticks += self.context.pedal(beat, 0, ("in", hold[1]))
                what = f"the pedal on channel {hold[1] + 1}"
            log.warning(
                "%s held %.1f s with nothing else played: treated as released "
                "(a lost note-off or pedal-up?)",
                what,
                seconds,
            )
        self.performer.inbox.put(Heard(ticks, player=True))
        if self.performer.policy.mode in PHRASE_MODES:
            self._cue_phrase_end()

    def _own(self, msg: Any, data: list[int], t: float) -> None:
        if self.recorder is not None:
            self.recorder.add(SELF, t, data)
        beat = self.timeline.beat_at(t)
        if msg.kind == "on":
            ticks = self.context.note_on(beat, msg.a, msg.b, SELF)
        elif msg.kind == "off":
            ticks = self.context.note_off(beat, msg.a, SELF)
        elif msg.kind == "cc" and msg.a == 64:
            ticks = self.context.pedal(beat, msg.b, SELF)
        else:
            return
        if ticks:
            self.performer.inbox.put(Heard(ticks, player=False))
        self.events.emit("antiphon", t=t, data=data)

    def _cue_phrase_end(self) -> None:
        end = self.phrase.phrase_end()
        if end is None or end == self._cued_end:
            return
        if self._cued_end is not None:
            if self.now() >= self._cued_end:
                return  # answered already: only a new note starts a new phrase
            # The pedal went down and up again within the silence: the phrase ends later.
            self.performer.interrupt(end - self.config.policy.silence)
        self._cued_end = end
        self.events.emit("phrase_end", t=end)
        preview = self.context.preview(self.timeline.beat_of(end))
        seconds = self.phrase.response_seconds(end)
        self.performer.inbox.put(Cue(end, seconds, preview, self.performer.epoch))

    def _cue_accompaniment(self, t: float, force: bool = False) -> None:
        policy = self.performer.policy
        if not force and t - self._last_cue < policy.replan_interval:
            return
        self._last_cue = t
        step = 1.0 / self.voice.grid.tpq  # close the tick the player just played on
        preview = self.context.preview(self.timeline.beat_of(t) + step)
        self.performer.inbox.put(Cue(t, policy.horizon, preview, self.performer.epoch))

    def _controller(self, number: int, value: int, t: float) -> None:
        names = {cc: name for name, cc in self.config.cc_map.items()}
        name = names.get(number)
        if name == "temperature":
            self.control("temperature", 0.1 + 1.4 * value / 127, t)
        elif name == "top_p":
            self.control("top_p", 0.5 + 0.5 * value / 127, t)
        elif name == "mode":
            self.control("mode", "accompany" if value >= 64 else "respond", t)
        elif name == "vary":
            self.control("mode", "vary" if value >= 64 else "respond", t)
        elif name == "similarity":
            self.control("similarity", value / 127, t)
        elif name == "panic" and value > 0:
            self.control("panic", None, t)

    def control(self, name: str, value: object, t: float | None = None) -> None:
        """Change a live control (live/controls.py), as a CC or the studio asks; a name or
        value it cannot take raises ``ControlError`` here, and nothing changes."""
        value = controls.validate(name, value, controls.current(self.performer))
        if name == "panic":
            self.performer.interrupt(self.now() if t is None else t)
            self.scheduler.release_all()
            if self.synth is not None:
                self.synth.release_all()  # the player's notes in the synth too
            return
        self.performer.inbox.put(Control(name, value))

    # -- switching models -------------------------------------------------------------------
    @property
    def models_folder(self) -> Path:
        """Where the models to switch between are: ``--models``, else the current model's."""
        if self.config.models:
            return Path(self.config.models)
        return self.voice.model.path.parent

    def model_choices(self) -> list[str]:
        """The ``.onnx`` files of ``models_folder`` (the current model among them)."""
        folder = self.models_folder
        try:
            names = {p.name for p in folder.iterdir() if p.suffix == ".onnx" and p.is_file()}
        except OSError as exc:
            log.warning("--models %s: cannot list it (%s)", folder, exc)
            names = set()
        if self.voice.model.path.parent == folder:
            names.add(self.voice.model.path.name)
        return sorted(names)

    def load_model(self, name: str) -> Any:
        """The voice of model ``name`` of ``model_choices`` (slow: run it off the input
        and engine threads), opened and warmed up; a ``UserError`` says why it cannot be
        played, and nothing changes."""
        if not isinstance(name, str) or name not in self.model_choices():
            raise UserError(
                f"no model {name!r} in {self.models_folder}; the models are "
                f"{', '.join(self.model_choices()) or 'none'}"
            )
        return self._open_voice(
            self.models_folder / name,
            self.performer.policy.mode,
            f"{name}: {{family}}; switch the mode to respond first",
        )

    def _open_voice(self, path: str | Path | None, mode: str, cannot_vary: str) -> Any:
        """The voice of the model at ``path`` (None: the bundled one), warmed up;
        ``cannot_vary`` (with ``{family}``) is the error where ``mode`` is vary and the model
        cannot."""
        model = ModelFile.open(path, threads=self.config.threads, provider=self.config.provider)
        voice = open_voice(model, max_gap_beats=MAX_GAP_BEATS)
        if mode == "vary" and not hasattr(voice, "vary"):
            family = f"a {model.info.family} model cannot vary a phrase"
            raise UserError(cannot_vary.format(family=family))
        # The first run is slow, and the longest takes the most memory: both before the
        # first phrase it answers (a voice without ``warm`` runs its empty state).
        getattr(voice, "warm", voice.empty)()
        return voice

    def use_voice(self, voice: Any) -> None:
        """Play ``voice`` (from ``load_model``) from now on; the input thread switches."""
        self.queue.put(("model", voice, self.now()))

    def _switch(self, voice: Any, t: float) -> None:  # the input thread: it owns the context
        # What the old model played is released; the context starts again on the new
        # model's grid (the player's notes from now on), and the engine takes the voice
        # after whatever it was given before, so nothing of the new grid reaches the old.
        self.performer.interrupt(t)  # releases what sounds
        self.voice = voice
        self.context = StreamingContext(voice.grid)
        self._cued_end, self._cue_due = None, None
        self.performer.inbox.put(Swap(voice))
        model = voice.model
        log.warning("now playing %s (%s)", model.path.name, model.info.family)
        self.events.emit(
            "model", model=model.path.name, family=model.info.family, models=self.model_choices()
        )

    # -- the main thread: ports, threads, stats -------------------------------------------------
    def _watch(self) -> None:
        self.queue.put(("tick", [], self.now()))  # the input thread owns the policy
        for label, port in (("input", self.input), ("output", self.output)):
            if port.is_connected():
                if label in self._lost:
                    self._lost.discard(label)
                    log.warning("%s port is back: %s", label, port.port_name)
                continue
            if label not in self._lost:
                self._lost.add(label)
                log.warning(
                    "%s port %s disappeared; releasing notes and retrying", label, port.port_name
                )
                self.performer.interrupt(self.now())
                self.scheduler.release_all()
            port.reconnect()
        self.output.settle()  # a stall of the server may end after an answer's last note
        if self.performer.error is not None or (
            self.performer.thread and not self.performer.thread.is_alive()
        ):
            log.error("the engine stopped (%s); notes released", self.performer.error)
            self.scheduler.release_all()
            self.exit_status = 1
            self.stop_event.set()
        stalled = self.input.stalled_for()
        if stalled > SERVER_GONE_SECONDS:
            # Nothing can be heard or played any more; better one line and an exit than a
            # daemon that looks alive. (A JACK client cannot rejoin a restarted server.)
            log.error(
                "the JACK server has run no cycle for %.0f s (stopped, or hung): antiphon "
                "stops; start the server again, then antiphon",
                stalled,
            )
            self.exit_status = 1
            self.stop_event.set()
        if self.performer.policy.mode == "accompany":
            self._keep_accompanying()
        self._trim_heap()
        self.collector.maybe_collect(self.now(), self._room(self.now()))
        self._flush_stats()

    def _room(self, now: float) -> float:
        """Seconds before anything could be due: the next scheduled event, or none while
        a phrase's answer may be in the making (its silence half run out, and the answer
        not yet scheduled). Read from the watch thread: a stale value costs one late
        collection, not a late note (the next one waits for the same room)."""
        room = self.scheduler.room(now)
        last = self.phrase.last_input
        silence = self.performer.policy.silence
        if last is not None and silence / 2 <= now - last < silence + ANSWER_ROOM:
            return 0.0
        return room

    def _trim_heap(self) -> None:
        t = time.perf_counter()
        if self.heap.idle(self.now(), self._playing()):
            log.debug("freed heap returned in %.2f ms", 1000 * (time.perf_counter() - t))

    def _keep_accompanying(self) -> None:
        """While the player holds notes or played recently, keep a plan ahead of now."""
        policy = self.performer.policy
        now = self.now()
        recent = (
            self.phrase.last_input is not None and now - self.phrase.last_input < policy.idle_stop
        )
        if recent and now - self._last_cue > policy.horizon / 2:
            # The input thread owns the context: it makes the cue.
            self.queue.put(("keepalive", [], now))

    def _on_response(self, stats: ResponseStats) -> None:  # engine thread
        with self._stats_lock:
            self._stats_pending.append(stats)
        if self.recorder is not None:
            self.recorder.answered()

    def _flush_stats(self, final: bool = False) -> None:
        """One line per answer once it is known whether (and when) its first note went
        out: the scheduler keeps the send time of each answer's first note-on, so the
        figure is the daemon's own, never a guess from the timeline."""
        now = self.now()
        with self._stats_lock:
            pending, self._stats_pending = self._stats_pending, []
        rows, keep = [], []
        for s in pending:
            sent = self.scheduler.first_sent(s.answer)
            waiting = s.first_note_time is not None and now <= s.first_note_time + FIRST_NOTE_WINDOW
            if sent is None and waiting and not final and s.error is None:
                keep.append(s)  # planned, not yet due
                continue
            if sent is None:
                s.cut_at = self.performer.voided_at(s.epoch)
                s.cut = s.cut or s.cut_at is not None
                if s.cut_at is not None and s.cut_at < s.phrase_end:
                    continue  # a speculation the player played over before the silence ran out
            rows.append(self._stats_row(s, sent))
        with self._stats_lock:
            self._stats_pending = keep + self._stats_pending
        for row in rows:
            self.events.emit("answer", row=row)
            if row["late"]:
                log.warning(
                    "an answer started %.1f ms after its phrase ended (its first note was "
                    "due %.1f ms earlier)",
                    row["latency_ms"],
                    row["late_ms"],
                )
            elif row["heard_late"]:
                log.warning(
                    "an answer was heard %.1f ms after its phrase ended, its first note "
                    "sent on time: the JACK server ran no cycle meanwhile (stalled)",
                    row["latency_ms"],
                )
            elif row["first_note_sent"] is None and not row["cut"]:
                log.warning("an answer never sounded: %s", row["unsounded"])
        if not rows or self.stats_file is None:
            return
        with self.stats_file.batch() as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")

    def _stats_row(self, s: ResponseStats, sent: float | None) -> dict:
        unsounded = None
        if sent is None:
            if s.error is not None:
                unsounded = f"generation failed ({s.error})"
            elif s.cut:
                unsounded = "cut by barge-in before its first note"
            elif self.scheduler.skipped_of(s.answer):
                unsounded = "its first notes were due too long ago (the machine was too busy)"
            elif s.first_note_time is None:
                unsounded = "nothing to play (the model ended the answer without a note)"
            else:
                unsounded = "released before its first note"
        late_ms = heard = None
        error = 0.0
        if sent is not None and s.first_note_time is not None:
            late_ms = (sent - s.first_note_time) * 1e3
        if sent is not None:
            # Both on JACK's timeline, as a listener on the port hears them: the phrase end
            # from the start of the cycle that brought the last release, the answer from
            # the start of the cycle that carried its first note (JackCycles.heard: where
            # that could be either of two, the middle, and half their gap as the error).
            before, after, returned = self.scheduler.first_mark(s.answer)
            heard, error = self.input.heard_after(sent, after, before, returned)
        late_events, worst_late = self.scheduler.take_late()
        gc_pauses, gc_longest = self.collector.take()
        return {
            "phrase_end": s.phrase_end,
            "first_note_planned": s.first_note_time,
            "first_note_sent": sent,
            "latency_ms": None if heard is None else (heard - s.phrase_end) * 1e3,
            # how far latency_ms can be off: 0, or half a period where the first note went
            # out at a cycle's edge and either cycle may have carried it
            "latency_error_ms": None if heard is None else error * 1e3,
            "sent_ms": None if sent is None else (sent - s.phrase_end) * 1e3,
            "late": late_ms is not None and late_ms > LATE_MS,
            "late_ms": late_ms,
            # sent on time and heard late all the same, against when it was planned (an
            # answer may begin with a rest): the server stalled (seen once under load)
            "heard_late": heard is not None
            and s.first_note_time is not None
            and (heard - error - s.first_note_time) * 1e3 > LATE_MS
            and not (late_ms is not None and late_ms > LATE_MS),
            "unsounded": unsounded,
            "tokens": s.tokens,
            "notes": s.notes,
            "generation_ms": s.generation_seconds * 1e3,
            # Since the previous row, so each is counted once; a collector pause as long
            # beside them says the GIL, not the machine, held the notes up.
            "late_events": late_events,
            "worst_late_ms": worst_late * 1e3,
            "gc_pauses": gc_pauses,
            "gc_pause_ms": gc_longest * 1e3,
            "skipped_notes": self.scheduler.skipped_of(s.answer),
            "cut": s.cut,
            "mode": s.extra.get("mode"),
            "input_drops": getattr(self.input, "overflows", 0),
            # the most the input ran behind what was played since the previous row
            "input_behind_ms": self._take_behind() * 1e3,
        }

    def _take_behind(self) -> float:
        # Written by the input thread: a race loses one message's figure, not an episode's.
        behind, self._behind = self._behind, 0.0
        return behind

    def describe(self) -> dict:
        return {"config": asdict(self.config)}
