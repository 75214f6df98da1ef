// The in-page sampler: the studio server renders one WAV every few semitones of a GM program
// from the SoundFont on the machine; a note plays the nearest sample, shifted in pitch.
// The player and antiphon each have a program, a volume and a mute. Without samples (no
// SoundFont or FluidSynth on the server) a plain synth voice plays, and the page says so.

const RELEASE = 0.25; // seconds of fade after a note-off

export async function loadSamples(ctx, program, pitches) {
  const buffers = new Map();
  await Promise.all(pitches.map(async (pitch) => {
    const res = await fetch(`/samples/${program}/${pitch}.wav`);
    if (!res.ok) throw new Error(await res.text());
    buffers.set(pitch, await ctx.decodeAudioData(await res.arrayBuffer()));
  }));
  return buffers;
}

function nearest(buffers, pitch) {
  let best = null;
  for (const p of buffers.keys()) {
    if (best === null || Math.abs(p - pitch) < Math.abs(best - pitch)) best = p;
  }
  return best;
}

// One sounding note into `dest` at `when`; returns stop(when).
export function voice(ctx, dest, buffers, pitch, velocity, when) {
  const gain = ctx.createGain();
  const level = Math.pow(velocity / 127, 1.5);
  gain.connect(dest);
  let src;
  if (buffers && buffers.size) {
    const base = nearest(buffers, pitch);
    src = ctx.createBufferSource();
    src.buffer = buffers.get(base);
    src.playbackRate.value = Math.pow(2, (pitch - base) / 12);
    gain.gain.setValueAtTime(level, when);
  } else {
    src = ctx.createOscillator();
    src.type = "triangle";
    src.frequency.value = 440 * Math.pow(2, (pitch - 69) / 12);
    gain.gain.setValueAtTime(0, when);
    gain.gain.linearRampToValueAtTime(level * 0.4, when + 0.01);
    gain.gain.setTargetAtTime(level * 0.15, when + 0.01, 0.4);
  }
  src.connect(gain);
  src.start(when);
  return (at) => {
    const t = Math.max(at, when);
    gain.gain.cancelScheduledValues(t);
    gain.gain.setValueAtTime(gain.gain.value, t);
    gain.gain.setTargetAtTime(0, t, RELEASE / 4);
    src.stop(t + RELEASE);
  };
}

export class Sampler {
  constructor() {
    this.ctx = null;
    this.parts = {};
    this.sounding = new Map();
    this.info = "sound off until the first click or key";
    this.sampled = false;
    this.onchange = () => {};
  }

  part(name) {
    if (!this.parts[name]) this.parts[name] = { volume: 0.8, muted: false, gain: null, buffers: null };
    return this.parts[name];
  }

  async start(sound) {
    if (this.ctx) return;
    this.ctx = new AudioContext();
    for (const [name, program] of Object.entries(sound.programs)) {
      const p = this.part(name);
      p.program = program;
      p.gain = this.ctx.createGain();
      p.gain.connect(this.ctx.destination);
      this.apply(name);
    }
    this.info = "loading samples from the SoundFont…";
    this.onchange();
    try {
      for (const [name, program] of Object.entries(sound.programs)) {
        this.part(name).buffers = await loadSamples(this.ctx, program, sound.pitches);
      }
      this.sampled = true;
      this.info = "sampled from the SoundFont on this machine";
    } catch (err) {
      this.info = `no samples (${String(err.message || err).slice(0, 160)}): a plain synth plays`;
    }
    this.onchange();
  }

  apply(name) {
    const p = this.part(name);
    if (p.gain) p.gain.gain.value = p.muted ? 0 : p.volume;
  }

  setVolume(name, volume) { this.part(name).volume = volume; this.apply(name); }
  setMuted(name, muted) { this.part(name).muted = muted; this.apply(name); }

  noteOn(name, pitch, velocity, at) {
    if (!this.ctx) return;
    const p = this.part(name);
    if (!p.gain) return;
    this.noteOff(name, pitch);
    const when = at === undefined ? this.ctx.currentTime : at;
    this.sounding.set(`${name}:${pitch}`, voice(this.ctx, p.gain, p.buffers, pitch, velocity, when));
  }

  noteOff(name, pitch, at) {
    const key = `${name}:${pitch}`;
    const stop = this.sounding.get(key);
    if (!stop) return;
    this.sounding.delete(key);
    stop(at === undefined ? this.ctx.currentTime : at);
  }

  allOff(name) {
    for (const key of [...this.sounding.keys()]) {
      if (!name || key.startsWith(name + ":")) this.noteOff(...key.split(":").map((x, i) => (i ? +x : x)));
    }
  }

  // Plays notes [start, end, pitch, velocity, isNew] from now; returns a stop function.
  playNotes(notes) {
    if (!this.ctx) return () => {};
    const t0 = this.ctx.currentTime + 0.1;
    const stops = notes.map(([s, e, pitch, vel, isNew]) => {
      const p = this.part(isNew ? "antiphon" : "player");
      const stop = voice(this.ctx, p.gain, p.buffers, pitch, vel, t0 + s);
      stop(t0 + Math.max(e, s + 0.05));
      return stop;
    });
    return () => stops.forEach((stop) => stop(this.ctx.currentTime));
  }
}

// The sampler's voice rendered offline: what the test (and a curious user) can measure.
export async function renderOffline(sound, pitches = [60, 64, 67]) {
  const rate = 44100;
  const ctx = new OfflineAudioContext(2, rate * 2, rate);
  let buffers = null;
  let sampled = false;
  try {
    buffers = await loadSamples(ctx, sound.programs.player, sound.pitches);
    sampled = true;
  } catch (err) {
    buffers = null;
  }
  pitches.forEach((pitch, i) => {
    const stop = voice(ctx, ctx.destination, buffers, pitch, 100, 0.1 + i * 0.3);
    stop(1.4);
  });
  const audio = await ctx.startRendering();
  let sum = 0;
  let count = 0;
  for (let c = 0; c < audio.numberOfChannels; c++) {
    const data = audio.getChannelData(c);
    for (let i = 0; i < data.length; i++) { sum += data[i] * data[i]; count++; }
  }
  return { rms: Math.sqrt(sum / count), sampled, seconds: audio.duration };
}
