from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from antiphon.live import ports
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

from antiphon.errors import UserError

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

_names = itertools.count()
WAIT = 5.0  # seconds; a safety net for a wedged server, not a latency bound


def unique(prefix: str) -> str:
    # Parallel test sessions share the JACK server: keep client names apart.
    return f"{prefix}{os.getpid()}-{next(_names)}"


def eventually(predicate: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class Collector:
    def __init__(self, count: int) -> None:
        self.messages: list[list[int]] = []
        self.times: list[float] = []
        self.count = count
        self.done = threading.Event()

    def __call__(self, data: list[int], t: float) -> None:
        self.messages.append(data)
        self.times.append(t)
        if len(self.messages) >= self.count:
            self.done.set()


@pytest.fixture
def rtmidi(jack_server: None) -> Iterator[object]:
    import rtmidi as module

    yield module


def open_peer(rtmidi: object, cls: str, client: str, target: str) -> object:
    """A second JACK client (a keyboard or a synth) connected to ``target``."""
    peer = getattr(rtmidi, cls)(rtmidi.API_UNIX_JACK, name=client)  # type: ignore[attr-defined]
    peer.open_port(peer.get_ports().index(target))
    return peer


SENT = [[0x90, 60, 100], [0xF0, 0x7D, 1, 2, 0xF7], [0xFA], [0xF8], [0xB0, 64, 127], [0x80, 60, 0]]


@pytest.mark.jack
def test_virtual_input_receives_from_another_client(rtmidi: object) -> None:
    got = Collector(len(SENT))
    clock = itertools.count(100)
    inp = ports.RtMidiInput(got, backend="jack", client=unique("ant"), now=lambda: next(clock))
    try:
        assert inp.port_name.endswith(":in")
        player = open_peer(rtmidi, "MidiOut", unique("kbd"), inp.port_name)
        for msg in SENT:
            player.send_message(msg)  # type: ignore[attr-defined]
        assert got.done.wait(WAIT)
        player.delete()  # type: ignore[attr-defined]
    finally:
        inp.close()
    assert got.messages == SENT  # sysex and MIDI clock get through
    assert got.times == list(range(100, 100 + len(SENT)))  # stamped by the injected clock


@pytest.mark.jack
def test_virtual_output_sends_to_another_client(rtmidi: object) -> None:
    got = Collector(len(SENT))
    out = ports.RtMidiOutput(backend="jack", client=unique("ant"))
    assert out.port_name.endswith("-out:out")
    synth = open_peer(rtmidi, "MidiIn", unique("synth"), out.port_name)
    synth.ignore_types(sysex=False, timing=False)  # type: ignore[attr-defined]
    synth.set_callback(lambda event, _: got(event[0], event[1]))  # type: ignore[attr-defined]
    for msg in SENT:
        out.send(msg)
    out.close()  # waits for the JACK periods that carry the last messages
    assert got.done.wait(WAIT)
    synth.delete()  # type: ignore[attr-defined]
    assert got.messages == SENT


@pytest.mark.jack
def test_input_connects_by_pattern_and_reconnects(rtmidi: object) -> None:
    kbd_name = unique("Keys")
    keyboard = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=kbd_name)  # type: ignore[attr-defined]
    keyboard.open_virtual_port("out")
    got = Collector(1)
    inp = ports.RtMidiInput(got, backend="jack", client=unique("ant"), port=kbd_name.lower())
    try:
        assert inp.peer == f"{kbd_name}:out"
        assert inp.is_connected()
        keyboard.send_message([0x90, 61, 90])
        assert got.done.wait(WAIT)

        keyboard.delete()  # unplugged
        assert eventually(lambda: not inp.is_connected())
        assert inp.peer is None
        assert not inp.reconnect()

        keyboard = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=kbd_name)  # type: ignore[attr-defined]
        keyboard.open_virtual_port("out")
        assert inp.reconnect()
        assert inp.peer == f"{kbd_name}:out"
        got.done.clear()
        got.count = 2
        keyboard.send_message([0x90, 62, 90])
        assert got.done.wait(WAIT)
        assert got.messages == [[0x90, 61, 90], [0x90, 62, 90]]
    finally:
        inp.close()
        keyboard.delete()


@pytest.mark.jack
def test_output_connects_by_pattern(rtmidi: object) -> None:
    synth_name = unique("Synth")
    synth = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=synth_name)  # type: ignore[attr-defined]
    synth.open_virtual_port("in")
    got = Collector(2)
    synth.set_callback(lambda event, _: got(event[0], event[1]))
    out = ports.RtMidiOutput(backend="jack", client=unique("ant"), port=synth_name)
    try:
        assert out.peer == f"{synth_name}:in"
        assert out.is_connected()
        out.send([0x90, 72, 64])
        out.send([0x80, 72, 0])
        assert got.done.wait(WAIT)
        assert got.messages == [[0x90, 72, 64], [0x80, 72, 0]]

        synth.delete()  # the synth quits, then comes back
        assert eventually(lambda: not out.is_connected())
        synth = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=synth_name)  # type: ignore[attr-defined]
        synth.open_virtual_port("in")
        got.done.clear()
        got.count = 3
        synth.set_callback(lambda event, _: got(event[0], event[1]))
        assert out.reconnect()
        out.send([0x90, 74, 64])
        assert got.done.wait(WAIT)
        assert got.messages[-1] == [0x90, 74, 64]
    finally:
        out.close()
        synth.delete()


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
