// Input from the page: an on-screen keyboard (mouse and touch, through pointer events), the
// computer keyboard (A W S E D F T G Y H U J K O L P ; ' like a piano's white and black keys,
// Z / X an octave down / up) and Web MIDI devices where the browser has them.

const LOW = 48;
const HIGH = 84;
const BLACK = new Set([1, 3, 6, 8, 10]);
const LETTERS = "awsedftgyhujkolp;'";

export class Keyboard {
  constructor(element, play) {
    this.element = element;
    this.play = play; // (pitch, velocity) -> void; velocity 0 is a note-off
    this.keys = new Map();
    this.octave = 0;
    this.held = new Map(); // computer key -> pitch
    this.pointers = new Map(); // pointer id -> pitch
    this.build();
    this.bindPointer();
    this.bindKeys();
  }

  build() {
    const whites = [];
    for (let p = LOW; p <= HIGH; p++) if (!BLACK.has(p % 12)) whites.push(p);
    const width = 100 / whites.length;
    let i = 0;
    for (let p = LOW; p <= HIGH; p++) {
      const key = document.createElement("div");
      key.dataset.pitch = p;
      if (BLACK.has(p % 12)) {
        key.className = "key black";
        key.style.left = `${(i - 0.3) * width}%`;
        key.style.width = `${width * 0.6}%`;
      } else {
        key.className = "key white";
        key.style.left = `${i * width}%`;
        key.style.width = `${width}%`;
        if (p % 12 === 0) key.innerHTML = `<span class="label">C${p / 12 - 1}</span>`;
        i++;
      }
      this.element.appendChild(key);
      this.keys.set(p, key);
    }
  }

  bindPointer() {
    const pitchAt = (ev) => {
      const el = document.elementFromPoint(ev.clientX, ev.clientY);
      return el && el.closest(".key") ? +el.closest(".key").dataset.pitch : null;
    };
    const velocityOf = (ev) => {
      // Higher up the key is softer, as on many on-screen pianos; 60..120.
      const rect = this.element.getBoundingClientRect();
      return Math.round(60 + 60 * Math.min(1, Math.max(0, (ev.clientY - rect.top) / rect.height)));
    };
    const press = (ev) => {
      const pitch = pitchAt(ev);
      const old = this.pointers.get(ev.pointerId);
      if (pitch === old) return;
      if (old !== undefined && old !== null) this.release(old);
      this.pointers.set(ev.pointerId, pitch);
      if (pitch !== null) this.press(pitch, velocityOf(ev));
    };
    this.element.addEventListener("pointerdown", (ev) => { ev.preventDefault(); press(ev); });
    this.element.addEventListener("pointermove", (ev) => { if (this.pointers.has(ev.pointerId)) press(ev); });
    const up = (ev) => {
      const old = this.pointers.get(ev.pointerId);
      this.pointers.delete(ev.pointerId);
      if (old !== undefined && old !== null) this.release(old);
    };
    for (const kind of ["pointerup", "pointercancel"]) window.addEventListener(kind, up);
  }

  bindKeys() {
    window.addEventListener("keydown", (ev) => {
      if (ev.repeat || ev.ctrlKey || ev.metaKey || ev.altKey || ev.target.closest("input, select, textarea")) return;
      const k = ev.key.toLowerCase();
      if (k === "z" || k === "x") { this.octave = Math.max(-3, Math.min(3, this.octave + (k === "z" ? -1 : 1))); return; }
      const i = LETTERS.indexOf(k);
      if (i < 0 || this.held.has(k)) return;
      const pitch = 60 + 12 * this.octave + i;
      this.held.set(k, pitch);
      this.press(pitch, 96);
    });
    window.addEventListener("keyup", (ev) => {
      const k = ev.key.toLowerCase();
      const pitch = this.held.get(k);
      if (pitch === undefined) return;
      this.held.delete(k);
      this.release(pitch);
    });
    window.addEventListener("blur", () => { for (const [k, p] of this.held) this.release(p); this.held.clear(); });
  }

  press(pitch, velocity) { this.play(pitch, velocity); }
  release(pitch) { this.play(pitch, 0); }

  // What the daemon heard and what antiphon plays light the keys.
  show(part, pitch, on) {
    const key = this.keys.get(pitch);
    if (key) key.classList.toggle(part === "player" ? "down" : "answer", on);
  }
}

// Web MIDI: every input device plays into the daemon (notes, the pedal, other CCs).
export async function webMidi(send, report) {
  if (!navigator.requestMIDIAccess) { report("no Web MIDI in this browser"); return; }
  let access;
  try {
    access = await navigator.requestMIDIAccess();
  } catch (err) {
    report("Web MIDI refused"); return;
  }
  const attach = () => {
    const names = [];
    for (const input of access.inputs.values()) {
      names.push(input.name);
      input.onmidimessage = (ev) => {
        const [status, a, b] = ev.data;
        const kind = status & 0xf0;
        if (kind === 0x90) send({ type: "note", pitch: a, velocity: b });
        else if (kind === 0x80) send({ type: "note", pitch: a, velocity: 0 });
        else if (kind === 0xb0) send({ type: "cc", number: a, value: b });
      };
    }
    report(names.length ? `Web MIDI: ${names.join(", ")}` : "");
  };
  access.onstatechange = attach;
  attach();
}
