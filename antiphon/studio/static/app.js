// The studio page: one WebSocket to the daemon (protocol.py documents the messages), the
// state the roll and the panels draw, and the wiring of the inputs. `window.studio` exposes
// the state for the end-to-end tests and for anyone curious in the console.

import { Keyboard, webMidi } from "./keys.js";
import { Controls, TakesView, mixer, stats } from "./panel.js";
import { drawRoll } from "./roll.js";
import { Sampler, renderOffline } from "./sound.js";

const $ = (id) => document.getElementById(id);
const KEEP_SECONDS = 120;

const state = {
  connected: false,
  hello: null,
  values: {},
  notes: [], // {part, pitch, velocity, start, end|null}
  open: new Map(),
  planned: [], // {answer, start, end, pitch, velocity}
  marks: [], // {kind: phrase|barge|latency, t, text}
  answers: [],
  takes: [],
  busy: false,
  recording: { on: false, notes: 0 },
  dropped: 0,
  errors: [],
  offsets: [],
  heard: 0, // notes the daemon told us about (the tests count them)
};

const sampler = new Sampler();
let socket = null;
let retry = 500;

function pageNow() { return performance.now() / 1000; }
function offset() { return state.offsets.length ? Math.min(...state.offsets) : 0; }
function daemonNow() { return pageNow() - offset(); }
function sample(now) {
  state.offsets.push(pageNow() - now);
  if (state.offsets.length > 20) state.offsets.shift();
}

function send(msg) {
  if (socket && socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify(msg)); return true; }
  showError("not connected to the daemon: the request was not sent");
  return false;
}

function showError(text) {
  state.errors.push(text);
  const banner = $("banner");
  banner.textContent = text;
  banner.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => { banner.hidden = true; }, 8000);
}

function setStatus(text, on) {
  const el = $("status");
  el.textContent = text;
  el.className = "status " + (on ? "on" : "off");
  el.dataset.state = on ? "connected" : "disconnected";
}

// -- messages --------------------------------------------------------------------------
function onNote(m, live) {
  const key = `${m.part}:${m.pitch}`;
  const open = state.open.get(key);
  if (open) { open.end = m.t; state.open.delete(key); }
  if (m.velocity > 0 && m.part === "player") {
    // A phrase end cued while the silence ran is void once the player plays before it.
    state.marks = state.marks.filter((k) => k.kind !== "phrase" || !k.tentative || k.t <= m.t);
  }
  if (m.velocity > 0) {
    const n = { part: m.part, pitch: m.pitch, velocity: m.velocity, start: m.t, end: null };
    state.notes.push(n);
    state.open.set(key, n);
    state.heard++;
  }
  if (!live) return;
  keyboard.show(m.part, m.pitch, m.velocity > 0);
  if (m.velocity > 0) sampler.noteOn(m.part, m.pitch, m.velocity);
  else sampler.noteOff(m.part, m.pitch);
}

function handle(m, live = true) {
  switch (m.type) {
    case "hello": return onHello(m);
    case "note": return onNote(m, live);
    case "pedal": return;
    case "planned":
      for (const [start, end, pitch, velocity] of m.notes) state.planned.push({ answer: m.answer, start, end, pitch, velocity });
      return;
    case "cancel":
      state.planned = state.planned.filter((n) => n.start < m.t);
      for (const n of state.planned) n.end = Math.min(n.end, m.t);
      if (live) sampler.allOff("antiphon");
      return;
    case "phrase_end": state.marks.push({ kind: "phrase", t: m.t, tentative: true }); return;
    case "barge_in": state.marks.push({ kind: "barge", t: m.t }); return;
    case "answer": return onAnswer(m.row, live);
    case "controls":
      state.values = m.values;
      controls.update(m.values);
      return;
    case "clock":
      sample(m.now);
      state.dropped = m.dropped;
      $("dropped").textContent = m.dropped ? `${m.dropped} events were too many for the page and were dropped` : "";
      return;
    case "recording":
      state.recording = { on: m.on, notes: m.notes };
      $("record").textContent = m.on ? "Stop recording" : "Record";
      $("record").classList.toggle("on", m.on);
      $("recinfo").textContent = m.on ? "recording…" : "";
      $("session-download").hidden = m.on || !m.notes;
      return;
    case "takes":
      state.takes = m.takes;
      state.busy = m.busy;
      $("busy").hidden = !m.busy;
      takes.render(m.takes);
      return;
    case "model":
      return showModel(m.model, m.family, m.models);
    case "error":
      if (m.request === "model" && state.hello) showModel(state.hello.model, state.hello.family, state.hello.models);
      return showError(m.message);
    default:
      return;
  }
}

function onAnswer(row, live) {
  state.answers.push(row);
  if (row.latency_ms !== null && row.latency_ms !== undefined) {
    state.marks.push({ kind: "latency", t: row.phrase_end, text: `${row.latency_ms.toFixed(1)} ms` });
  }
  stats($("stats").querySelector("tbody"), state.answers);
}

// The model menu: every .onnx of the daemon's --models folder; choosing one switches the
// daemon to it (the menu shows the old one again if the daemon refuses).
function showModel(model, family, models) {
  Object.assign(state.hello, { model, family, models });
  const menu = $("model-choice");
  menu.innerHTML = "";
  for (const name of models.includes(model) ? models : [model, ...models]) menu.add(new Option(name, name));
  menu.value = model;
  menu.disabled = false;
  $("model").textContent = family;
}

$("model-choice").addEventListener("change", () => {
  const menu = $("model-choice");
  send({ type: "model", name: menu.value });
  menu.disabled = true;
  $("model").textContent = "loading…";
});

function onHello(m) {
  state.hello = m;
  state.offsets = [];
  sample(m.now);
  Object.assign(state, { notes: [], open: new Map(), planned: [], marks: [], answers: [] });
  showModel(m.model, m.family, m.models || []);
  $("ports").textContent = `in ${m.ports.in} · out ${m.ports.out}`;
  controls.build(m.controls, m.values);
  state.values = m.values;
  for (const h of m.history) handle(h, false);
  for (const row of m.answers) if (!state.answers.includes(row)) onAnswer(row, false);
  handle({ type: "takes", takes: m.takes, busy: m.busy });
}

function connect() {
  const ws = new WebSocket(`ws://${location.host}/ws`);
  socket = ws;
  ws.onopen = () => { retry = 500; state.connected = true; setStatus("connected", true); };
  ws.onmessage = (ev) => {
    try { handle(JSON.parse(ev.data)); } catch (err) { console.error(err); }
  };
  ws.onclose = (ev) => {
    state.connected = false;
    if (ev.code === 1009) showError("that upload was too big for the studio (the limit is 16 MB)");
    setStatus("daemon not reachable — retrying", false);
    sampler.allOff();
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 4000);
  };
}

// -- inputs ------------------------------------------------------------------------------
const keyboard = new Keyboard($("keyboard"), (pitch, velocity) => {
  send({ type: "note", pitch, velocity });
});
const controls = new Controls($("controls"), send);
const takes = new TakesView($("takes"), send, sampler);
mixer($("sound"), sampler);

$("panic").addEventListener("click", () => send({ type: "control", name: "panic" }));
$("record").addEventListener("click", () => send({ type: "record", on: !state.recording.on }));
$("undo").addEventListener("click", () => send({ type: "undo" }));
$("regenerate").addEventListener("click", () => send({ type: "regenerate" }));

function startSound() {
  if (!state.hello || sampler.ctx) return;
  $("soundgate").hidden = true;
  sampler.start(state.hello.sound);
}
for (const kind of ["pointerdown", "keydown"]) window.addEventListener(kind, startSound, { capture: true });
$("soundgate").hidden = false;

function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function continueOptions() {
  const length = Number($("c-length").value);
  const opts = {
    temperature: Number($("c-temperature").value),
    variations: Number($("c-variations").value),
    seed: $("c-seed").value === "" ? null : Number($("c-seed").value),
  };
  opts[$("c-unit").value] = length;
  return opts;
}

async function upload(file) {
  const limit = state.hello ? state.hello.limits.upload : 16 * 2 ** 20;
  if (file.size > limit) {
    showError(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MB; the studio takes MIDI files up to ${limit / 2 ** 20} MB`);
    return;
  }
  const data = toBase64(await file.arrayBuffer());
  send({ type: "continue", name: file.name, data, ...continueOptions() });
}

const drop = $("drop");
for (const kind of ["dragenter", "dragover"]) {
  document.addEventListener(kind, (ev) => { ev.preventDefault(); drop.classList.add("over"); });
}
document.addEventListener("dragleave", () => drop.classList.remove("over"));
document.addEventListener("drop", (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
  const file = ev.dataTransfer.files[0];
  if (file) upload(file);
});
$("file").addEventListener("change", (ev) => { const f = ev.target.files[0]; if (f) upload(f); ev.target.value = ""; });

webMidi(send, (text) => { $("midi-devices").textContent = text; });

// -- drawing ---------------------------------------------------------------------------------
function frame() {
  const now = daemonNow();
  const old = now - KEEP_SECONDS;
  if (state.notes.length > 4000 || (state.notes[0] && state.notes[0].start < old)) {
    state.notes = state.notes.filter((n) => n.end === null || n.end > old);
    state.planned = state.planned.filter((n) => n.end > old);
    state.marks = state.marks.filter((m) => m.t > old);
  }
  drawRoll($("roll"), state, now);
  requestAnimationFrame(frame);
}

window.studio = { state, send, sampler, daemonNow, renderOffline: () => renderOffline(state.hello.sound) };
connect();
requestAnimationFrame(frame);
