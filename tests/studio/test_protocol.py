"""The studio's protocol against the real server inside a real daemon over JACK (dummy
driver): a real WebSocket client is the page, a second JACK client the keyboard."""

from __future__ import annotations

import base64
import io
import time

import mido
import pytest

from antiphon.live import controls
from antiphon.live.harness import Player
from antiphon.studio import protocol
from antiphon.studio.hub import OUTBOX, Hub
from tests.live.conftest import SILENCE
from tests.studio.conftest import WEB, Page, get, studio_url


# -- the pure parts -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{nope", "not valid JSON"),
        ("[1, 2]", '"type"'),
        ('{"type": "dance"}', "unknown request type 'dance'"),
        ('{"type": "note", "pitch": 200, "velocity": 90}', "pitch must lie in 0..127"),
        ('{"type": "note", "pitch": 60.5, "velocity": 90}', "whole number"),
        ('{"type": "note", "pitch": 60}', "velocity needs a number"),
        ('{"type": "control"}', '"name"'),
        ('{"type": "record", "on": 1}', "true or false"),
        ('{"type": "continue", "data": "!!!"}', "not valid base64"),
        ('{"type": "continue", "data": "", "variations": 99}', "variations must lie in 1..8"),
    ],
)
def test_a_bad_request_is_refused_with_a_reason(text: str, says: str) -> None:
    with pytest.raises(protocol.ProtocolError, match=says):
        protocol.parse_request(text)


def test_a_good_request_is_taken() -> None:
    req = protocol.parse_request('{"type": "note", "pitch": 60, "velocity": 0}')
    assert (req.type, req.fields) == ("note", {"pitch": 60, "velocity": 0})
    data = base64.b64encode(b"MThd").decode()
    req = protocol.parse_request(f'{{"type": "continue", "data": "{data}", "seconds": 5}}')
    assert (
        req.fields["data"] == b"MThd" and req.fields["seconds"] == 5 and req.fields["bars"] is None
    )


VALUES = {"min_response": 2.0, "max_response": 12.0, "lowest": 0, "highest": 127}


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("volume", 1, "unknown control"),
        ("temperature", 5, r"0\.\.2"),
        ("temperature", "hot", "needs a number"),
        ("temperature", float("nan"), "needs a number"),
        ("mode", "jam", "respond, accompany"),
        ("transpose", 1.5, "whole number"),
        ("min_response", 20, "shortest answer"),
        ("lowest", 127.0, None),
    ],
)
def test_controls_validate_against_the_table(name: str, value: object, says: str | None) -> None:
    if says is None:
        assert controls.validate(name, value, {**VALUES, "highest": 127}) == 127
        return
    with pytest.raises(controls.ControlError, match=says):
        controls.validate(name, value, VALUES)


def test_the_hub_drops_and_counts_rather_than_waits() -> None:
    hub = Hub({}, 120.0)
    for i in range(OUTBOX + 5):
        hub.observe("player", {"t": float(i), "data": [0x90, 60, 90]})
    assert hub.dropped == 5
    out = hub.drain(now=10.0)
    assert len(out) == OUTBOX and '"part":"player"' in out[0]
    assert not hub.outbox


# -- the real server -----------------------------------------------------------------------
pytestmark_jack = pytest.mark.jack
web = pytest.mark.daemon_args(*WEB)


def phrase_and_answer(player: Player, page: Page, pitches=(60, 64, 67, 72)) -> float:
    t_off = player.phrase(pitches)
    page.wait_for(lambda m: m["type"] == "note" and m["part"] == "antiphon", SILENCE + 15, t_off)
    return t_off


@pytestmark_jack
@web
def test_every_page_sees_the_same_state(live, page) -> None:
    daemon, _player = live
    assert page.hello["model"].endswith(".onnx")
    assert {c["name"] for c in page.hello["controls"]} == set(controls.CONTROLS)
    assert page.hello["values"]["transpose"] == 0
    page.send(type="control", name="transpose", value=5)
    page.wait_for(lambda m: m["type"] == "controls" and m["values"]["transpose"] == 5, 5)
    second = Page(studio_url(daemon.ready_line))
    try:
        assert second.hello["values"]["transpose"] == 5
        assert second.hello["values"] == page.of("controls")[-1]["values"]
    finally:
        second.close()


@pytestmark_jack
@web
def test_the_page_sees_notes_plans_phrase_ends_and_latency(live, page) -> None:
    _daemon, player = live
    t0 = time.perf_counter()
    t_off = phrase_and_answer(player, page)
    heard = [m["pitch"] for m in page.of("note", t0) if m["part"] == "player" and m["velocity"]]
    assert heard == [60, 64, 67, 72]
    row = page.wait_for(lambda m: m["type"] == "answer", 10, t0)["row"]
    assert row["latency_ms"] is not None and row["latency_ms"] > 0
    # Every release cues a phrase end (the answer is made while the silence runs); the
    # last cue is the one the answer came from.
    assert page.of("phrase_end", t0)[-1]["t"] == pytest.approx(row["phrase_end"])
    # The plan is on the page before its notes sound, and they are the notes that sound.
    planned = page.of("planned", t0)
    assert planned and planned[0]["_at"] <= page.of("note", t_off)[-1]["_at"]
    first = next(m for m in page.of("note", t_off) if m["part"] == "antiphon" and m["velocity"])
    assert planned[0]["_at"] <= first["_at"]
    # Playing on while the answer was still being thought of is no barge-in.
    assert not page.of("barge_in", t0)
    plan = {(n[2]) for p in planned for n in p["notes"]}
    assert first["pitch"] in plan
    assert any(r.data[1] == first["pitch"] for r in player.note_ons(t_off))


@pytestmark_jack
@web
def test_a_note_from_the_page_is_heard_and_answered(live, page) -> None:
    _daemon, player = live
    t0 = time.perf_counter()
    for pitch in (62, 65, 69):
        page.send(type="note", pitch=pitch, velocity=100)
        time.sleep(0.1)
        page.send(type="note", pitch=pitch, velocity=0)
        time.sleep(0.03)
    answer = player.wait_for(lambda r: r.t > t0 and r.data[0] & 0xF0 == 0x90 and r.data[2], 8)
    assert answer is not None, "the daemon did not answer the page's notes"
    heard = [m["pitch"] for m in page.of("note", t0) if m["part"] == "player" and m["velocity"]]
    assert heard == [62, 65, 69]  # the daemon heard them as notes on its input


@pytestmark_jack
@web
def test_a_cc_moves_the_page_and_a_control_changes_the_engine(live, page) -> None:
    _daemon, player = live
    t0 = time.perf_counter()
    player.send([0xB0, 1, 127])  # the mod wheel: temperature
    msg = page.wait_for(lambda m: m["type"] == "controls", 5, t0)
    assert msg["values"]["temperature"] == pytest.approx(1.5)
    page.send(type="control", name="temperature", value=0.7)
    page.send(type="control", name="notes", value=2)  # at most two notes an answer
    page.wait_for(lambda m: m["type"] == "controls" and m["values"]["notes"] == 2, 5, t0)
    assert page.of("controls")[-1]["values"]["temperature"] == pytest.approx(0.7)
    t_off = phrase_and_answer(player, page)
    time.sleep(2.5)
    assert 1 <= len(player.note_ons(t_off)) <= 2
    assert page.wait_for(lambda m: m["type"] == "answer", 5, t_off)["row"]["notes"] <= 2


@pytestmark_jack
@web
def test_a_bad_request_gets_an_error_and_changes_nothing(live, page) -> None:
    daemon, _player = live
    before = page.hello["values"]
    bad = [
        {"type": "control", "name": "volume", "value": 3},
        {"type": "control", "name": "temperature", "value": 9},
        {"type": "control", "name": "min_response", "value": 30},  # longer than the longest
        {"type": "note", "pitch": 128, "velocity": 1},
    ]
    for msg in bad:
        page.send(**msg)
    page.ws.send("{this is not json")
    errors = [page.wait_for(lambda m, n=n: len(page.of("error")) > n, 5) for n in range(5)]
    texts = [m["message"] for m in page.of("error")]
    assert len(errors) == 5 and len(texts) == 5
    assert "unknown control 'volume'" in texts[0] and "temperature must lie in" in texts[1]
    assert "shortest answer" in texts[2] and "pitch must lie" in texts[3]
    assert "not valid JSON" in texts[4]
    time.sleep(0.3)
    again = Page(studio_url(daemon.ready_line))
    try:
        assert again.hello["values"] == before
        assert not [m for m in page.of("note") if m["part"] == "player"]
    finally:
        again.close()


@pytestmark_jack
@web
def test_panic_releases_what_antiphon_plays(live, page) -> None:
    _daemon, player = live
    page.send(type="control", name="min_response", value=6)
    page.wait_for(lambda m: m["type"] == "controls" and m["values"]["min_response"] == 6, 5)
    phrase_and_answer(player, page)
    t = time.perf_counter()
    page.send(type="control", name="panic")
    cleared = player.wait_for(lambda r: r.t > t and r.data[:2] == [0xB0, 123], 2)
    assert cleared is not None, "no All Notes Off after the page's panic"
    assert not player.hanging()


@pytestmark_jack
@web
def test_a_barge_in_is_marked_and_the_plan_cancelled(live, page) -> None:
    _daemon, player = live
    page.send(type="control", name="min_response", value=6)
    page.wait_for(lambda m: m["type"] == "controls" and m["values"]["min_response"] == 6, 5)
    phrase_and_answer(player, page)
    t = player.send([0x90, 62, 90])
    barge = page.wait_for(lambda m: m["type"] == "barge_in", 3, t)
    page.wait_for(lambda m: m["type"] == "cancel" and m["t"] == barge["t"], 3, t)
    player.send([0x80, 62, 0])


@pytestmark_jack
@web
def test_record_and_download_the_session(live, page) -> None:
    daemon, player = live
    url = studio_url(daemon.ready_line)
    assert get(url + "session.mid")[0] == 404  # nothing recorded yet
    page.send(type="record", on=True)
    page.wait_for(lambda m: m["type"] == "recording" and m["on"], 5)
    t_off = phrase_and_answer(player, page)
    page.wait_for(lambda m: m["type"] == "answer", 10, t_off)
    t_stop = time.perf_counter()
    page.send(type="record", on=False)
    done = page.wait_for(lambda m: m["type"] == "recording" and not m["on"], 5, t_stop)
    assert done["notes"] >= 5
    status, body = get(url + "session.mid")
    assert status == 200
    mid = mido.MidiFile(file=io.BytesIO(body))
    names = [t.name for t in mid.tracks]
    ons = {t.name: [m.note for m in t if m.type == "note_on" and m.velocity] for t in mid.tracks}
    assert "player" in names and "antiphon" in names
    assert ons["player"] == [60, 64, 67, 72] and ons["antiphon"]


@pytestmark_jack
@web
def test_continue_a_file_variations_undo_regenerate(live, page, chorale, tmp_path) -> None:
    daemon, _player = live
    url = studio_url(daemon.ready_line)
    data = base64.b64encode(chorale.read_bytes()).decode()
    page.send(type="continue", name="bwv66.6.mid", data=data, bars=1, variations=2, seed=5)
    take = page.wait_for(lambda m: m["type"] == "takes" and m["takes"] and not m["busy"], 120)
    first = take["takes"][-1]
    assert [v["seed"] for v in first["variations"]] == [5, 6]
    v = first["variations"][0]
    assert v["added"] > 0 and any(n[4] for n in v["notes"]) and v["prompt_end"] > 0
    status, body = get(url + v["mid"].lstrip("/"))
    assert status == 200
    out = mido.MidiFile(file=io.BytesIO(body))
    assert len(out.tracks) == len(mido.MidiFile(chorale).tracks) + 1
    status, wav = get(url + v["wav"].lstrip("/"))
    assert status == 200 and wav[:4] == b"RIFF"

    t = time.perf_counter()
    page.send(type="continue_from", take=first["id"], variation=1)
    nxt = page.wait_for(
        lambda m: m["type"] == "takes" and len(m["takes"]) == 2 and not m["busy"], 120, t
    )
    assert nxt["takes"][-1]["name"].endswith("/ 2")
    t = time.perf_counter()
    page.send(type="undo")
    page.wait_for(lambda m: m["type"] == "takes" and len(m["takes"]) == 1, 10, t)
    t = time.perf_counter()
    page.send(type="regenerate")
    regen = page.wait_for(
        lambda m: m["type"] == "takes" and len(m["takes"]) == 2 and not m["busy"], 120, t
    )
    assert [v["seed"] for v in regen["takes"][-1]["variations"]] == [7, 8]

    # Not MIDI, and far too big: a clear message, and the takes stay as they were.
    n = len(page.of("error"))
    page.send(type="continue", name="notes.txt", data=base64.b64encode(b"hello").decode())
    err = page.wait_for(lambda m: m["type"] == "error", 10, page.of("takes")[-1]["_at"])
    assert "notes.txt is not a MIDI file" in err["message"] and len(page.of("error")) == n + 1
    big = Page(url)
    try:
        big.ws.send('{"type": "continue", "data": "' + "A" * (50 * 2**20) + '"}')
        deadline = time.perf_counter() + 10
        while big.closed is None and time.perf_counter() < deadline:
            time.sleep(0.05)
        assert big.ws.close_code == 1009  # message too big: refused before it is read
    finally:
        big.close()
    after = Page(url)
    try:
        assert [t["id"] for t in after.hello["takes"]] == [t["id"] for t in regen["takes"]]
    finally:
        after.close()


@pytestmark_jack
@web
def test_only_loopback_names_are_answered(live) -> None:
    daemon, _player = live
    url = studio_url(daemon.ready_line)
    assert get(url)[0] == 200
    assert get(url, {"Host": "attacker.example"})[0] == 403  # DNS rebinding
    with pytest.raises(Exception, match="403"):
        Page(url, origin="http://attacker.example")
    assert get(url + "static/../../etc/passwd")[0] == 404
    status, wav = get(url + "samples/0/60.wav")
    assert status == 200 and wav[:4] == b"RIFF"
