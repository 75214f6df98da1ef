from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from antiphon.errors import UserError
from antiphon.live import ports
from antiphon.live.jack import JACK_LOCK, close_client
from antiphon.live.ports import (
    MemoryInput,
    MemoryOutput,
    MidiOutput,
    check_message,
    find_port,
    local_port_names,
    match_ports,
    native_backends,
    resolve_backend,
)

# --- pure helpers -------------------------------------------------------------------


def test_native_backends_per_platform() -> None:
    assert native_backends("linux") == ["alsa", "jack"]
    assert native_backends("darwin") == ["coremidi"]
    assert native_backends("win32") == ["winmm"]


def test_find_port_is_case_insensitive_and_deterministic() -> None:
    names = ["Digital Piano:MIDI 1 20:0", "antiphon:in2", "Antiphon:in", "Other"]
    assert find_port(names, "digital piano") == 0
    assert find_port(names, "antiphon:in") == 2  # an exact name beats a longer one
    assert find_port(names, "ANTIPHON") == 1  # otherwise the first of several
    assert match_ports(names, "AN") == [0, 1, 2]


def test_find_port_without_match_lists_the_ports() -> None:
    with pytest.raises(UserError, match=r"no MIDI input port matches 'synth'.*'Other'"):
        find_port(["Other"], "synth", "input")
    with pytest.raises(UserError, match="available: none"):
        find_port([], "synth")


def test_local_port_names() -> None:
    assert local_port_names("alsa", "antiphon", "in") == ("antiphon", "in", "antiphon:in")
    assert local_port_names("alsa", "antiphon", "out")[2] == "antiphon:out"
    # JACK clients need unique names, so the output gets its own.
    assert local_port_names("jack", "antiphon", "in")[2] == "antiphon:in"
    assert local_port_names("jack", "antiphon", "out") == (
        "antiphon-out",
        "out",
        "antiphon-out:out",
    )
    assert local_port_names("coremidi", "duet", "out") == ("duet", "duet:out", "duet:out")


@pytest.mark.parametrize(
    "msg",
    [[0x90, 60, 100], b"\x80\x3c\x00", [0xC0, 5], [0xF0, 1, 2, 0xF7], [0xF8], [0xF2, 1, 2]],
)
def test_check_message_accepts_valid_messages(msg: list[int] | bytes) -> None:
    assert check_message(msg) == list(msg)


@pytest.mark.parametrize(
    "msg",
    [
        [],
        [60, 100],
        [0x90, 60],
        [0x90, 60, 128],
        [0xC0, 5, 6],
        [0xF0, 1],
        [0xF0, 0x90, 0xF7],
        [256],
    ],
)
def test_check_message_rejects_malformed_messages(msg: list[int]) -> None:
    with pytest.raises(ValueError):
        check_message(msg)


def fake_backends(compiled: list[str], failing: set[str]) -> dict[str, Callable[..., object]]:
    return {
        "compiled": lambda: compiled,
        "check": lambda b: f"{b} is down" if b in failing else None,
    }


def test_auto_prefers_alsa_then_jack_on_linux() -> None:
    both = ["alsa", "jack"]
    assert resolve_backend("auto", platform="linux", **fake_backends(both, set())) == "alsa"
    assert resolve_backend("auto", platform="linux", **fake_backends(both, {"alsa"})) == "jack"


def test_auto_without_any_backend_names_the_fix() -> None:
    with pytest.raises(UserError) as err:
        resolve_backend(
            "auto", platform="linux", **fake_backends(["alsa", "jack"], {"alsa", "jack"})
        )
    assert "jackd" in str(err.value) and "snd-seq" in str(err.value)
    assert "antiphon ports" in str(err.value)


def test_auto_on_macos_and_windows() -> None:
    assert resolve_backend("auto", platform="darwin", **fake_backends(["coremidi"], set())) == (
        "coremidi"
    )
    assert resolve_backend("auto", platform="win32", **fake_backends(["winmm"], set())) == "winmm"


def test_named_backend_errors() -> None:
    with pytest.raises(UserError, match="unknown MIDI backend"):
        resolve_backend("oss")
    with pytest.raises(UserError, match="not compiled"):
        resolve_backend("coremidi", platform="linux", **fake_backends(["alsa", "jack"], set()))
    with pytest.raises(UserError, match="cannot start: jack is down"):
        resolve_backend("jack", platform="linux", **fake_backends(["alsa", "jack"], {"jack"}))


def test_port_listing_names_ports_and_why_a_backend_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    status = {"alsa": "no sequencer", "jack": None}
    monkeypatch.setattr(ports, "backend_status", lambda: status)
    monkeypatch.setattr(
        ports, "list_ports", lambda backend=None: {"jack": {"inputs": ["kbd"], "outputs": []}}
    )
    assert ports.port_listing() == [
        "alsa: unavailable (no sequencer)",
        "jack:",
        "  inputs (antiphon can listen to, --input):",
        "    kbd",
        "  outputs (antiphon can play into, --output):",
        "    (none)",
    ]
    assert ports.port_listing("alsa") == ["alsa: unavailable (no sequencer)"]


def test_windows_has_no_virtual_ports() -> None:
    with pytest.raises(UserError, match="loopMIDI"):
        ports._no_virtual_ports("winmm")
    ports._no_virtual_ports("jack")


# --- base ports ---------------------------------------------------------------------


def test_memory_output_records_validated_copies() -> None:
    t = [1.0]
    out = MemoryOutput(now=lambda: t[0])
    msg = [0x90, 60, 100]
    out.send(msg)
    msg[2] = 0  # the port holds a copy
    t[0] = 2.0
    out.send(b"\xb0\x40\x00")
    assert out.sent == [(1.0, [0x90, 60, 100]), (2.0, [0xB0, 64, 0])]
    with pytest.raises(ValueError):
        out.send([0x90, 60])


def test_output_close_waits_for_the_flush_once() -> None:
    waits: list[float] = []

    class Recording(MidiOutput):
        def _send(self, msg: list[int]) -> None:
            pass

    out = Recording(flush_seconds=0.05, wait=waits.append)
    out.send([0xF8])
    out.close()
    out.close()
    assert waits == [0.05]
    with pytest.raises(ValueError, match="closed"):
        out.send([0xF8])


def test_input_stamps_arrival_time_and_survives_callback_errors() -> None:
    got: list[tuple[list[int], float]] = []
    t = iter([5.0, 6.0, 7.0])

    def on_message(data: list[int], when: float) -> None:
        if data[0] == 0xFC:
            raise RuntimeError("consumer bug")
        got.append((data, when))

    inp = MemoryInput(on_message, now=lambda: next(t))
    inp.feed([0x90, 60, 1])
    inp.feed([0xFC])
    inp.feed([0xF0, 1, 0xF7])
    assert got == [([0x90, 60, 1], 5.0), ([0xF0, 1, 0xF7], 7.0)]
    assert inp.errors == 1 and "consumer bug" in (inp.last_error or "")


# --- real ports over JACK -------------------------------------------------------------
#
# Other test sessions may share the server, so client names are unique, peers connect by
# name (checking the port list did not move under them) and a link counts as up once a
# marker message has crossed it: JACK applies a connection a cycle or two late.

_names = itertools.count()
WAIT = 5.0  # seconds; a safety net for a wedged server, not a latency bound
MARKER = [0xBF, 0x7F, 0x7F]  # a controller no test sends otherwise


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}-{next(_names)}"


def eventually(predicate: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class Collector:
    """Gathers messages (markers apart) and signals when ``count`` have come."""

    def __init__(self, count: int) -> None:
        self.messages: list[list[int]] = []
        self.times: list[float] = []
        self.markers = 0
        self.count = count
        self.done = threading.Event()

    def __call__(self, data: list[int], t: float) -> None:
        if data == MARKER:
            self.markers += 1
            return
        self.messages.append(data)
        self.times.append(t)
        if len(self.messages) >= self.count:
            self.done.set()

    def expect(self, count: int) -> None:
        self.count = count
        self.markers = 0
        self.done.clear()


def link_up(send: Callable[[list[int]], None], got: Collector) -> None:
    assert eventually(lambda: send(MARKER) or got.markers > 0), "link never came up"


@pytest.fixture
def rtmidi(jack_server: None) -> Iterator[Any]:
    import rtmidi as module

    yield module


def open_peer(rtmidi: Any, cls: str, client: str, target: str) -> Any:
    """A second JACK client (a keyboard or a synth) connected to port ``target``."""
    with JACK_LOCK:
        peer = getattr(rtmidi, cls)(rtmidi.API_UNIX_JACK, name=client)
        for _ in range(10):
            names = peer.get_ports()
            peer.open_port(names.index(target))
            if peer.get_ports() == names:
                return peer
            peer.close_port()
    raise AssertionError("the JACK port list never held still")


def virtual_peer(rtmidi: Any, cls: str, client: str, port: str) -> Any:
    """A second JACK client with a virtual port of its own (opened as ports.py opens)."""
    with JACK_LOCK:
        peer = getattr(rtmidi, cls)(rtmidi.API_UNIX_JACK, name=client)
        peer.open_virtual_port(port)
    return peer


def drop(peer: Any) -> None:
    """Close a raw rtmidi client as ports.py does (the graph settled before and after)."""
    close_client(peer)


def on_callback(got: Collector) -> Callable[[tuple[list[int], float], object], None]:
    return lambda event, _: got(event[0], event[1])


SENT = [[0x90, 60, 100], [0xF0, 0x7D, 1, 2, 0xF7], [0xFA], [0xF8], [0xB0, 64, 127], [0x80, 60, 0]]


@pytest.mark.jack
def test_virtual_input_receives_from_another_client(rtmidi: Any) -> None:
    got = Collector(len(SENT))
    inp = ports.RtMidiInput(got, backend="jack", client=unique("ant"))
    try:
        assert inp.port_name.endswith(":in")
        player = open_peer(rtmidi, "MidiOut", unique("kbd"), inp.port_name)
        link_up(player.send_message, got)
        sent = []
        for msg in SENT:
            sent.append(time.perf_counter())
            player.send_message(msg)
            time.sleep(0.01)
        assert got.done.wait(WAIT)
        drop(player)
    finally:
        inp.close()
    assert got.messages == SENT  # sysex and MIDI clock get through
    # Stamped with the start of the JACK cycle that brought them, in order, within a few
    # periods of the send (the reader polls, but dates by the cycle). That cycle can have
    # begun just before the send call, if the sender's client had not yet run in it.
    times = got.times[-len(SENT) :]
    assert times == sorted(times)
    assert all(-0.002 <= t - s < 0.05 for t, s in zip(times, sent, strict=True))


def test_a_broken_sysex_does_not_swallow_what_follows() -> None:
    # rtmidi glues everything after a sysex start without its 0xF7 onto that sysex
    glued = [0xF0, 0x7E, 0x01, 0x90, 61, 90, 0xF8, 0x80, 61, 0, 0xF0, 0x7D, 0xF7]
    assert ports.split_stream(glued) == [
        [0xF0, 0x7E, 0x01],
        [0x90, 61, 90],
        [0xF8],
        [0x80, 61, 0],
        [0xF0, 0x7D, 0xF7],
    ]
    assert ports.split_stream([0xF0, 1, 2, 0xF7]) == [[0xF0, 1, 2, 0xF7]]
    assert ports.split_stream([0x90, 60, 1]) == [[0x90, 60, 1]]


@pytest.mark.jack
def test_a_burst_of_twenty_thousand_messages_a_second_is_not_dropped(rtmidi: Any) -> None:
    """While Python threads keep the GIL busy (as the daemon's input and engine threads do
    under a flood), the backend's thread must not wait for them: every message that reached
    the port (as a second listener on the same sender hears it) is delivered."""
    count = 20000
    got = Collector(count)
    inp = ports.RtMidiInput(got, backend="jack", client=unique("ant"))
    busy = threading.Event()

    def spin() -> None:  # pure-Python work that holds the GIL between switch intervals
        while not busy.is_set():
            sum(range(2000))

    # One spinner: it keeps the GIL contended without taking every core from JACK's own
    # (non-realtime here) threads, which the OS would then run too late to keep up.
    spinners = [threading.Thread(target=spin, daemon=True)]
    try:
        kbd = unique("kbd")
        player = open_peer(rtmidi, "MidiOut", kbd, inp.port_name)
        link_up(player.send_message, got)
        # the reference: a plain rtmidi queue (no Python on JACK's thread) on the same sender
        with JACK_LOCK:
            tap = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=unique("tap"), queue_size_limit=1 << 16)
            sources = tap.get_ports()
            tap.open_port(next(i for i, n in enumerate(sources) if n.startswith(kbd + ":")))
        time.sleep(0.1)
        for th in spinners:
            th.start()
        got.expect(count)
        t0 = time.perf_counter()
        for i in range(count // 2):
            player.send_message([0x90 | i % 16, 21 + i % 88, 1 + i % 127])
            player.send_message([0x80 | i % 16, 21 + i % 88, 0])
            if i % 50 == 49:  # 20 messages a millisecond, sent in bursts of 100
                time.sleep(max(0.0, t0 + (i + 1) / 10000 - time.perf_counter()))
        time.sleep(1.0)
        reached = 0
        while (m := tap.get_message()) is not None:
            reached += m[0] != MARKER
        got.done.wait(WAIT)
        drop(player)
        drop(tap)
    finally:
        busy.set()
        inp.close()
    assert inp.overflows == 0
    notes = [m for m in got.messages if m[0] < 0xF0]
    assert reached > count * 0.9  # the sender itself kept up
    # A Python callback on JACK's thread lost ~45 % here. What is left is JACK's own: on a
    # loaded machine without realtime scheduling, a client's thread now and then wakes a
    # cycle late and that cycle's events are gone for it, the reference's as well (whole
    # bursts of 100); realtime scheduling (jackd -R, ``antiphon live --realtime``) ends it.
    assert len(notes) >= min(reached, count) - 300


@pytest.mark.jack
def test_virtual_output_sends_to_another_client(rtmidi: Any) -> None:
    got = Collector(len(SENT))
    out = ports.RtMidiOutput(backend="jack", client=unique("ant"))
    try:
        assert out.port_name.endswith("-out:out")
        synth = open_peer(rtmidi, "MidiIn", unique("synth"), out.port_name)
        synth.ignore_types(sysex=False, timing=False)
        synth.set_callback(on_callback(got))
        link_up(out.send, got)
        for msg in SENT:
            out.send(msg)
    finally:
        out.close()  # waits for the JACK periods that carry the last messages
    assert got.done.wait(WAIT)
    drop(synth)
    assert got.messages == SENT


@pytest.mark.jack
def test_input_connects_by_pattern_and_reconnects(rtmidi: Any) -> None:
    kbd_name = unique("Keys")
    keyboard = virtual_peer(rtmidi, "MidiOut", kbd_name, "out")
    got = Collector(1)
    inp = ports.RtMidiInput(got, backend="jack", client=unique("ant"), port=kbd_name.lower())
    try:
        assert inp.peer == f"{kbd_name}:out"
        assert inp.is_connected()
        link_up(keyboard.send_message, got)
        keyboard.send_message([0x90, 61, 90])
        assert got.done.wait(WAIT)

        drop(keyboard)  # unplugged
        assert eventually(lambda: not inp.is_connected())
        assert inp.peer is None
        assert not inp.reconnect()

        keyboard = virtual_peer(rtmidi, "MidiOut", kbd_name, "out")
        assert inp.reconnect()
        assert inp.peer == f"{kbd_name}:out"
        got.expect(2)
        link_up(keyboard.send_message, got)
        keyboard.send_message([0x90, 62, 90])
        assert got.done.wait(WAIT)
        assert got.messages == [[0x90, 61, 90], [0x90, 62, 90]]
    finally:
        inp.close()
        drop(keyboard)


@pytest.mark.jack
def test_output_connects_by_pattern_and_reconnects(rtmidi: Any) -> None:
    synth_name = unique("Synth")
    synth = virtual_peer(rtmidi, "MidiIn", synth_name, "in")
    got = Collector(2)
    synth.set_callback(on_callback(got))
    out = ports.RtMidiOutput(backend="jack", client=unique("ant"), port=synth_name)
    try:
        assert out.peer == f"{synth_name}:in"
        assert out.is_connected()
        link_up(out.send, got)
        out.send([0x90, 72, 64])
        out.send([0x80, 72, 0])
        assert got.done.wait(WAIT)
        assert got.messages == [[0x90, 72, 64], [0x80, 72, 0]]

        drop(synth)  # the synth quits, then comes back
        assert eventually(lambda: not out.is_connected())
        synth = virtual_peer(rtmidi, "MidiIn", synth_name, "in")
        got.expect(3)
        synth.set_callback(on_callback(got))
        assert out.reconnect()
        link_up(out.send, got)
        out.send([0x90, 74, 64])
        assert got.done.wait(WAIT)
        assert got.messages[-1] == [0x90, 74, 64]
    finally:
        out.close()
        drop(synth)


@pytest.mark.jack
def test_missing_pattern_is_a_user_error(jack_server: None) -> None:
    with pytest.raises(UserError, match="no MIDI input port matches 'no-such-keyboard'"):
        ports.RtMidiInput(lambda d, t: None, backend="jack", port="no-such-keyboard")
    with pytest.raises(UserError, match="no MIDI output port matches 'no-such-synth'"):
        ports.RtMidiOutput(backend="jack", port="no-such-synth")


@pytest.mark.jack
def test_list_ports_and_resolve_with_a_jack_server(jack_server: None) -> None:
    assert resolve_backend("jack") == "jack"
    out = ports.RtMidiOutput(backend="jack", client=unique("ant"), flush_seconds=0)
    inp = ports.RtMidiInput(lambda d, t: None, backend="jack", client=unique("ant"))
    try:
        listed = ports.list_ports("jack")["jack"]
        assert out.port_name in listed["inputs"]  # antiphon's output is something to read
        assert inp.port_name in listed["outputs"]
        assert "jack" in ports.list_ports()
        assert ports.backend_status()["jack"] is None
    finally:
        out.close()
        inp.close()


@pytest.mark.jack
def test_a_truncated_sysex_from_a_peer_does_not_silence_the_input(rtmidi: Any) -> None:
    """rtmidi's JACK input glues everything after a sysex start without 0xF7 onto it until
    some event ends with 0xF7; the input's keep-alive ends it, and what came is kept."""
    got = Collector(3)
    inp = ports.RtMidiInput(got, backend="jack", client=unique("ant"))
    try:
        player = open_peer(rtmidi, "MidiOut", unique("kbd"), inp.port_name)
        link_up(player.send_message, got)
        got.expect(3)
        player.send_message([0xF0, 0x7E, 0x01])  # a sysex cut short (a cable pulled, a bug)
        time.sleep(0.01)
        player.send_message([0x90, 61, 90])
        player.send_message([0x80, 61, 0])
        assert got.done.wait(WAIT), got.messages
        drop(player)
    finally:
        inp.close()
    assert got.messages[-2:] == [[0x90, 61, 90], [0x80, 61, 0]]
    assert ports.KEEPALIVE not in got.messages  # the keep-alive itself never reaches the daemon


@pytest.mark.jack
def test_cycles_over_a_real_server_are_dated_by_its_timer(jack_server: None) -> None:
    """The server's word on when its driver began each cycle dates it: before the poll
    that saw it begun (the fallback, the poll's own time, is after)."""
    from antiphon.live.jack import JackCycles

    cycles = JackCycles.open(time.perf_counter, name=unique("cyc"))
    dated = []  # (when the poll began, the start it recorded)
    for _ in range(40):
        before, count = time.perf_counter(), len(cycles._starts)
        cycles.observe()
        if len(cycles._starts) > count:
            dated.append((before, cycles._starts[-1]))
        time.sleep(0.003)
    assert len(dated) >= 10
    # A cycle can begin between the poll's start and its read of the counter: seldom.
    assert sum(1 for before, start in dated if before - 0.5 < start < before) >= 0.8 * len(dated)
