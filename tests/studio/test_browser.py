"""The studio in a real headless browser (Debian's Chromium through its chromedriver) on a
real daemon over JACK: what is played shows on the page, what the page plays is heard and
answered, a slider reaches the engine, a dropped file comes back as variations to download,
and the in-page sampler makes sound."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from pathlib import Path

import mido
import pytest

from tests.live.conftest import SILENCE
from tests.studio.browser import chrome
from tests.studio.conftest import WEB, Page, studio_url

pytestmark = [pytest.mark.jack, pytest.mark.daemon_args(*WEB)]
# STUDIO_SCREENSHOT=docs/studio.png keeps the page's picture for the README.
SCREENSHOT = os.environ.get("STUDIO_SCREENSHOT")


@pytest.fixture
def browser(live, tmp_path):  # type: ignore[no-untyped-def]
    daemon, _player = live
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = chrome(downloads)
    driver.downloads = downloads  # type: ignore[attr-defined]
    driver.get(studio_url(daemon.ready_line))
    wait(driver, "return window.studio && window.studio.state.connected", 20)
    yield driver
    driver.quit()


def wait(driver, script: str, timeout: float, *args):  # type: ignore[no-untyped-def]
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        value = driver.execute_script(script, *args)
        if value:
            return value
        time.sleep(0.05)
    logs = [entry["message"] for entry in driver.get_log("browser")][-5:]
    raise AssertionError(f"not true within {timeout} s: {script} (console: {logs})")


NOTES_OF = (
    """return window.studio.state.notes.filter(n => n.part === arguments[0]).map(n => n.pitch)"""
)


def test_played_notes_and_the_answer_show_on_the_page(live, browser, tmp_path) -> None:
    _daemon, player = live
    player.phrase([60, 64, 67, 72, 71, 67])
    wait(browser, NOTES_OF + ".length >= 6", 5, "player")
    assert browser.execute_script(NOTES_OF, "player")[-6:] == [60, 64, 67, 72, 71, 67]
    wait(browser, NOTES_OF + ".length >= 3", SILENCE + 20, "antiphon")
    state = browser.execute_script(
        "const s = window.studio.state; return {planned: s.planned.length,"
        " marks: s.marks.map(m => m.kind), answers: s.answers.length}"
    )
    assert state["planned"] >= 3
    wait(browser, "return window.studio.state.answers.length > 0", 10)
    marks = browser.execute_script("return window.studio.state.marks.map(m => m.kind)")
    assert "phrase" in marks and "latency" in marks
    stats = browser.find_element("css selector", "#stats tbody tr").text
    assert " ms" in stats
    time.sleep(1.0)
    shot = tmp_path / "studio.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if SCREENSHOT:
        Path(SCREENSHOT).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, SCREENSHOT)


def test_clicking_on_screen_keys_is_heard_and_answered(live, browser) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    _daemon, player = live
    t0 = time.perf_counter()
    for pitch in (60, 62, 64):
        key = browser.find_element("css selector", f'.key[data-pitch="{pitch}"]')
        ActionChains(browser).move_to_element(key).click_and_hold().pause(0.12).release().perform()
        time.sleep(0.05)
    answer = player.wait_for(lambda r: r.t > t0 and r.data[0] & 0xF0 == 0x90 and r.data[2], 20)
    assert answer is not None, "the daemon did not answer the clicked keys"
    assert browser.execute_script(NOTES_OF, "player")[-3:] == [60, 62, 64]
    wait(browser, NOTES_OF + ".length > 0", 5, "antiphon")


def test_the_computer_keyboard_plays_too(live, browser) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    _daemon, _player = live
    body = browser.find_element("css selector", "body")
    for letter in "adg":  # C, E, G
        ActionChains(browser).move_to_element(body).key_down(letter).pause(0.1).key_up(
            letter
        ).perform()
    wait(browser, NOTES_OF + ".length >= 3", 5, "player")
    assert browser.execute_script(NOTES_OF, "player")[-3:] == [60, 64, 67]


def test_a_slider_changes_the_engine_and_a_cc_moves_the_slider(live, browser) -> None:
    from selenium.webdriver.common.keys import Keys

    daemon, player = live
    slider = browser.find_element("id", "control-transpose")
    browser.execute_script("arguments[0].focus()", slider)
    for _ in range(3):
        slider.send_keys(Keys.ARROW_RIGHT)
    wait(browser, "return window.studio.state.values.transpose === 3", 5)
    # What the engine holds, asked by another page. The page shows a slider's value as it
    # moves; the engine takes it a moment later (its inbox), so ask until it has.
    deadline = time.monotonic() + 5
    while True:
        other = Page(studio_url(daemon.ready_line))
        held = other.hello["values"]["transpose"]
        other.close()
        if held == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert held == 3
    player.send([0xB0, 2, 0])  # CC2: top-p at its lowest, 0.5
    wait(browser, "return document.getElementById('control-top_p').value === '0.5'", 5)


def test_drop_a_file_and_download_a_variation(live, browser, chorale) -> None:
    browser.find_element("id", "c-length").clear()
    browser.find_element("id", "c-length").send_keys("1")
    browser.find_element("id", "c-variations").clear()
    browser.find_element("id", "c-variations").send_keys("2")
    browser.find_element("id", "file").send_keys(str(chorale))
    wait(browser, "return document.querySelectorAll('.variation').length === 2", 120)
    link = browser.find_element("css selector", '.variation[data-variation="1"] a.mid')
    link.click()
    deadline = time.perf_counter() + 20
    files: list[Path] = []
    while time.perf_counter() < deadline:
        files = [p for p in browser.downloads.glob("*.mid")]
        if files:
            break
        time.sleep(0.1)
    assert files, "the variation was not downloaded"
    mid = mido.MidiFile(files[0])
    assert mid.tracks[-1].name == "antiphon"
    assert any(m.type == "note_on" and m.velocity for m in mid.tracks[-1])


DROP = """
const [name, size] = arguments;
const file = new File([new Uint8Array(size).fill(65)], name);
const data = new DataTransfer();
data.items.add(file);
const drop = new DragEvent('drop', {dataTransfer: data, bubbles: true});
document.getElementById('drop').dispatchEvent(drop);
"""


def test_a_wrong_or_huge_drop_gets_a_message(live, browser) -> None:
    browser.execute_script(DROP, "notes.txt", 1000)
    text = wait(
        browser,
        "const b = document.getElementById('banner'); return !b.hidden && b.textContent",
        10,
    )
    assert "notes.txt is not a MIDI file" in text
    browser.execute_script(DROP, "huge.mid", 50 * 2**20)
    text = wait(
        browser,
        "const t = document.getElementById('banner').textContent; return t.includes('huge') && t",
        10,
    )
    assert "50.0 MB" in text and "16 MB" in text
    assert browser.execute_script("return window.studio.state.takes.length") == 0
    assert browser.execute_script("return window.studio.state.connected")


def test_the_sampler_renders_sound_from_the_soundfont(live, browser) -> None:
    result = browser.execute_async_script(
        "const done = arguments[0];"
        " window.studio.renderOffline().then(done, e => done({error: String(e)}))"
    )
    assert "error" not in result, result
    assert result["sampled"], "the samples did not come from the SoundFont"
    assert result["rms"] > 0.01


def test_the_page_comes_back_after_a_daemon_restart(jack_server, trained_onnx) -> None:
    from antiphon.live.harness import DaemonProcess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["--model", str(trained_onnx), "--web", "--web-port", str(port)]
    daemon = DaemonProcess(args, name="antiphon-restart")
    driver = chrome()
    try:
        driver.get(studio_url(daemon.ready_line))
        wait(driver, "return window.studio.state.connected", 20)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
        wait(driver, "return !window.studio.state.connected", 10)
        daemon = DaemonProcess(args, name="antiphon-restart")
        wait(driver, "return window.studio.state.connected", 20)
        driver.execute_script("window.studio.send({type: 'note', pitch: 70, velocity: 90})")
        wait(driver, NOTES_OF + ".includes(70)", 5, "player")
    finally:
        driver.quit()
        daemon.kill()


def test_the_model_menu_switches_models_and_a_bad_one_is_a_message(jack_server, models) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.support.ui import Select

    from antiphon.live.harness import DaemonProcess, Player

    name = "antiphon-menu"
    daemon = DaemonProcess(["--model", str(models / "tiny.onnx"), *WEB], name=name)
    player = Player(daemon_name=name, client=name + "-kbd")
    driver = chrome()
    try:
        driver.get(studio_url(daemon.ready_line))
        wait(driver, "return window.studio.state.connected", 20)
        menu = Select(driver.find_element("id", "model-choice"))
        assert [o.text for o in menu.options] == ["broken.onnx", "midinet.onnx", "tiny.onnx"]
        assert menu.first_selected_option.text == "tiny.onnx"
        menu.select_by_visible_text("midinet.onnx")
        wait(driver, "return document.getElementById('model').textContent === 'midinet'", 30)
        assert menu.first_selected_option.text == "midinet.onnx"
        driver.execute_script("window.studio.send({type: 'note', pitch: 67, velocity: 90})")
        time.sleep(0.15)
        driver.execute_script("window.studio.send({type: 'note', pitch: 67, velocity: 0})")
        t_off = time.perf_counter()
        wait(driver, NOTES_OF + ".length > 0", SILENCE + 20, "antiphon")
        assert player.wait_for(lambda r: r.t > t_off and r.data[0] & 0xF0 == 0x90, 5)

        menu.select_by_visible_text("broken.onnx")
        text = wait(
            driver,
            "const b = document.getElementById('banner'); return !b.hidden && b.textContent",
            20,
        )
        assert "cannot switch models" in text and "not a loadable ONNX model" in text
        wait(driver, "return document.getElementById('model-choice').value === 'midinet.onnx'", 5)
        assert driver.find_element("id", "model").text == "midinet"
    finally:
        driver.quit()
        daemon.kill()
        player.close()


# A Web MIDI device, as the browser would present one: headless Chromium on a machine with
# no MIDI hardware has none, so the page is given this one before its scripts run. What is
# tested is the page's side: a device's notes and controllers reach the daemon.
FAKE_WEB_MIDI = """
const input = { name: "Test keys", onmidimessage: null };
const access = { inputs: new Map([["k", input]]), outputs: new Map(), onstatechange: null };
navigator.requestMIDIAccess = () => Promise.resolve(access);
window.__playMidi = (bytes) => input.onmidimessage({ data: new Uint8Array(bytes) });
"""


def test_a_web_midi_device_plays_into_the_daemon(live, tmp_path) -> None:  # type: ignore[no-untyped-def]
    daemon, player = live
    driver = chrome()
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": FAKE_WEB_MIDI})
        driver.get(studio_url(daemon.ready_line))
        wait(driver, "return window.studio.state.connected", 20)
        devices = wait(driver, "return document.getElementById('midi-devices').textContent", 10)
        assert "Test keys" in devices
        t0 = time.perf_counter()
        driver.execute_script("window.__playMidi([0xB0, 1, 0])")  # the mod wheel: temperature
        wait(driver, "return window.studio.state.values.temperature < 0.2", 5)
        for pitch in (64, 67, 71):
            driver.execute_script(f"window.__playMidi([0x90, {pitch}, 100])")
            time.sleep(0.1)
            driver.execute_script(f"window.__playMidi([0x80, {pitch}, 0])")
            time.sleep(0.03)
        wait(driver, NOTES_OF + ".slice(-3).join() === '64,67,71'", 5, "player")
        answer = player.wait_for(lambda r: r.t > t0 and r.data[0] & 0xF0 == 0x90 and r.data[2], 20)
        assert answer is not None, "the daemon did not answer the Web MIDI device's notes"
    finally:
        driver.quit()
