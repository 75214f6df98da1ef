// The side panel and the continue section: one widget per live control (built from the
// server's table, so a new control needs no page change), the sound mixer, the session, and
// the takes of "continue a file".

import { drawNotes } from "./roll.js";

const shown = (spec, v) => {
  if (v === null || v === undefined) return "—";
  if (spec.off && !v) return "off";
  const digits = spec.kind === "int" ? 0 : spec.step < 0.1 ? 2 : spec.step < 1 ? 1 : 0;
  return `${Number(v).toFixed(digits)}${spec.unit ? " " + spec.unit : ""}`;
};

export class Controls {
  constructor(element, send) {
    this.element = element;
    this.send = send;
    this.widgets = new Map();
    this.dragging = null;
    this.timers = new Map();
  }

  build(specs, values) {
    this.element.innerHTML = "";
    this.widgets.clear();
    for (const spec of specs) {
      if (spec.kind === "action") continue; // panic has its own button
      const box = document.createElement("div");
      box.className = "control";
      box.dataset.control = spec.name;
      const label = document.createElement("label");
      label.textContent = spec.label;
      const out = document.createElement("output");
      let input;
      if (spec.kind === "choice") {
        input = document.createElement("select");
        for (const c of spec.choices) input.add(new Option(c, c));
        input.addEventListener("change", () => this.send({ type: "control", name: spec.name, value: input.value }));
      } else if (spec.kind === "seed") {
        input = document.createElement("input");
        input.type = "number";
        input.min = spec.low; input.max = spec.high; input.step = 1;
        input.placeholder = "free";
        input.addEventListener("change", () => {
          const v = input.value === "" ? null : Number(input.value);
          this.send({ type: "control", name: spec.name, value: v });
        });
      } else {
        input = document.createElement("input");
        input.type = "range";
        input.min = spec.low; input.max = spec.high; input.step = spec.step;
        const push = () => {
          out.textContent = shown(spec, Number(input.value));
          this.throttle(spec.name, Number(input.value));
        };
        input.addEventListener("input", push);
        input.addEventListener("pointerdown", () => { this.dragging = spec.name; });
        input.addEventListener("pointerup", () => { this.dragging = null; });
        input.addEventListener("change", () => { this.dragging = null; this.flush(spec.name, Number(input.value)); });
      }
      input.name = spec.name;
      input.id = `control-${spec.name}`;
      label.htmlFor = input.id;
      box.append(label, input, out);
      this.element.appendChild(box);
      this.widgets.set(spec.name, { spec, input, out });
    }
    this.update(values);
  }

  throttle(name, value) {
    if (this.timers.has(name)) { this.timers.get(name).value = value; return; }
    const entry = { value };
    this.timers.set(name, entry);
    entry.timer = setTimeout(() => { this.timers.delete(name); this.send({ type: "control", name, value: entry.value }); }, 60);
  }

  flush(name, value) {
    // The pending throttled send is cancelled: left to fire, it sent an older value after
    // this one (three arrow keys within 60 ms left the engine at the first step).
    const pending = this.timers.get(name);
    if (pending) clearTimeout(pending.timer);
    this.timers.delete(name);
    this.send({ type: "control", name, value });
  }

  update(values) {
    for (const [name, { spec, input, out }] of this.widgets) {
      if (!(name in values) || this.dragging === name) continue;
      const v = values[name];
      if (spec.kind === "seed") {
        if (document.activeElement !== input) input.value = v === null ? "" : v;
        out.textContent = v === null ? "free" : "locked";
      } else {
        input.value = v;
        out.textContent = spec.kind === "choice" ? "" : shown(spec, v);
      }
      input.dataset.value = v === null ? "" : String(v);
    }
  }
}

export function mixer(element, sampler) {
  element.innerHTML = "";
  for (const name of ["player", "antiphon"]) {
    const row = document.createElement("div");
    row.className = "sound-part";
    const label = document.createElement("span");
    label.textContent = name === "player" ? "You" : "antiphon";
    const volume = document.createElement("input");
    volume.type = "range"; volume.min = 0; volume.max = 1; volume.step = 0.01;
    volume.value = sampler.part(name).volume;
    volume.id = `volume-${name}`;
    volume.addEventListener("input", () => sampler.setVolume(name, Number(volume.value)));
    const mute = document.createElement("button");
    mute.id = `mute-${name}`;
    mute.textContent = "Mute";
    mute.addEventListener("click", () => {
      const muted = !sampler.part(name).muted;
      sampler.setMuted(name, muted);
      mute.classList.toggle("on", muted);
      if (muted) sampler.allOff(name);
    });
    row.append(label, volume, mute);
    element.appendChild(row);
  }
  const info = document.createElement("div");
  info.id = "soundinfo";
  element.appendChild(info);
  sampler.onchange = () => { info.textContent = sampler.info; };
  sampler.onchange();
}

export function stats(tbody, answers) {
  tbody.innerHTML = "";
  for (const row of answers.slice(-10).reverse()) {
    const tr = document.createElement("tr");
    const ms = (v) => (v === null || v === undefined ? "—" : `${v.toFixed(1)} ms`);
    const cells = [ms(row.latency_ms), row.notes, row.tokens, ms(row.generation_ms), row.cut ? "cut" : row.unsounded ? "silent" : ""];
    for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
    tbody.appendChild(tr);
  }
}

export class TakesView {
  constructor(element, send, sampler) {
    this.element = element;
    this.send = send;
    this.sampler = sampler;
    this.stopPlaying = null;
  }

  render(takes) {
    this.element.innerHTML = "";
    const take = takes[takes.length - 1];
    if (!take) return;
    const box = document.createElement("div");
    box.className = "take";
    box.dataset.take = take.id;
    const o = take.options;
    const length = o.bars !== null ? `${o.bars} bars` : `${o.seconds} s`;
    box.innerHTML = `<div class="row"><b>${escape(take.name)}</b> — ${length}, temperature ${o.temperature}, seeds ${take.seed}…${take.seed + take.variations.length - 1} <span class="dim">(take ${take.id}, ${takes.length} in the history)</span></div>`;
    const grid = document.createElement("div");
    grid.className = "variations";
    for (const v of take.variations) {
      const card = document.createElement("div");
      card.className = "variation";
      card.dataset.variation = v.index;
      const canvas = document.createElement("canvas");
      const row = document.createElement("div");
      row.className = "row";
      row.innerHTML = `<span>#${v.index + 1} · seed ${v.seed} · +${v.added} notes</span>`;
      const play = document.createElement("button");
      play.textContent = "Play";
      play.className = "play";
      play.addEventListener("click", () => this.play(v, canvas, play));
      const mid = link(v.mid, "mid", ".mid");
      const wav = link(v.wav, "wav", ".wav");
      const more = document.createElement("button");
      more.textContent = "Continue this one";
      more.className = "continue-this";
      more.addEventListener("click", () => this.send({ type: "continue_from", take: take.id, variation: v.index }));
      row.append(play, mid, wav, more);
      card.append(canvas, row);
      grid.appendChild(card);
      requestAnimationFrame(() => drawNotes(canvas, v.notes, v.prompt_end));
    }
    box.appendChild(grid);
    this.element.appendChild(box);
  }

  play(v, canvas, button) {
    if (this.stopPlaying) { this.stopPlaying(); this.stopPlaying = null; if (button.textContent === "Stop") { button.textContent = "Play"; return; } }
    for (const b of this.element.querySelectorAll("button.play")) b.textContent = "Play";
    if (!this.sampler.ctx) return;
    const stop = this.sampler.playNotes(v.notes);
    const t0 = this.sampler.ctx.currentTime + 0.1;
    const end = Math.max(0, ...v.notes.map((n) => n[1]));
    button.textContent = "Stop";
    let frame;
    const tick = () => {
      const t = this.sampler.ctx.currentTime - t0;
      drawNotes(canvas, v.notes, v.prompt_end, t);
      if (t < end + 0.5 && button.textContent === "Stop") frame = requestAnimationFrame(tick);
      else { button.textContent = "Play"; drawNotes(canvas, v.notes, v.prompt_end); }
    };
    frame = requestAnimationFrame(tick);
    this.stopPlaying = () => { stop(); cancelAnimationFrame(frame); drawNotes(canvas, v.notes, v.prompt_end); };
  }
}

function link(href, cls, text) {
  const a = document.createElement("a");
  a.href = href; a.className = cls; a.textContent = text; a.setAttribute("download", "");
  return a;
}

function escape(text) {
  const d = document.createElement("div");
  d.textContent = text;
  return d.innerHTML;
}
