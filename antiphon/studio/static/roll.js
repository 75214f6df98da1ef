// The live piano roll: time runs right to left past the playhead; the player's notes and
// antiphon's in two colours, antiphon's planned notes ahead of the playhead, and marks for
// phrase ends, barge-ins and each answer's latency. Also the small rolls of variations.

const LOW = 21;
const HIGH = 108;
const PAST = 9; // seconds shown before the playhead
const AHEAD = 4; // seconds shown after it
const BLACK = new Set([1, 3, 6, 8, 10]);
const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

function fit(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = Math.round(canvas.clientWidth * ratio);
  const h = Math.round(canvas.clientHeight * ratio);
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  return [w, h, ratio];
}

function lanes(g, w, h, low, high) {
  const row = h / (high - low + 1);
  for (let p = low; p <= high; p++) {
    g.fillStyle = BLACK.has(p % 12) ? "#0c0d11" : "#12151b";
    g.fillRect(0, h - (p - low + 1) * row, w, row);
    if (p % 12 === 0) { g.fillStyle = "#232833"; g.fillRect(0, h - (p - low) * row, w, 1); }
  }
  return row;
}

export function drawRoll(canvas, state, now) {
  const [w, h, ratio] = fit(canvas);
  const g = canvas.getContext("2d");
  const row = lanes(g, w, h, LOW, HIGH);
  const span = PAST + AHEAD;
  const x = (t) => ((t - (now - PAST)) / span) * w;
  const y = (p) => h - (p - LOW + 1) * row;
  const colours = { player: css("--player"), antiphon: css("--antiphon") };

  g.setLineDash([4 * ratio, 3 * ratio]);
  g.strokeStyle = colours.antiphon;
  g.lineWidth = ratio;
  for (const n of state.planned) {
    if (n.end < now - PAST || n.start > now + AHEAD) continue;
    g.strokeRect(x(n.start), y(n.pitch) + 0.5, Math.max(2, x(n.end) - x(n.start)), row - 1);
  }
  g.setLineDash([]);
  for (const n of state.notes) {
    const end = n.end === null ? now : n.end;
    if (end < now - PAST || n.start > now + AHEAD) continue;
    g.globalAlpha = 0.45 + 0.55 * (n.velocity / 127);
    g.fillStyle = colours[n.part];
    g.fillRect(x(n.start), y(n.pitch) + 0.5, Math.max(2, x(end) - x(n.start)), row - 1);
  }
  g.globalAlpha = 1;
  g.font = `${11 * ratio}px system-ui, sans-serif`;
  for (const m of state.marks) {
    if (m.t < now - PAST || m.t > now + AHEAD) continue;
    const mx = x(m.t);
    if (m.kind === "latency") {
      g.fillStyle = css("--phrase");
      g.fillText(m.text, mx + 3 * ratio, 14 * ratio);
      continue;
    }
    g.fillStyle = m.kind === "phrase" ? css("--phrase") : css("--barge");
    g.fillRect(mx, 0, Math.max(1, ratio * (m.kind === "phrase" ? 1 : 2)), h);
    if (m.kind === "barge") g.fillText("barge-in", mx + 3 * ratio, h - 6 * ratio);
  }
  g.fillStyle = "rgba(255,255,255,0.5)";
  g.fillRect(x(now), 0, ratio, h);
}

// A variation: the prompt's notes in the player's colour, the continuation in antiphon's.
export function drawNotes(canvas, notes, promptEnd, cursor) {
  const [w, h, ratio] = fit(canvas);
  const g = canvas.getContext("2d");
  let low = 127, high = 0, end = 1;
  for (const [, e, p] of notes) { low = Math.min(low, p); high = Math.max(high, p); end = Math.max(end, e); }
  if (low > high) { low = 48; high = 84; }
  low = Math.max(0, low - 2); high = Math.min(127, high + 2);
  const row = lanes(g, w, h, low, high);
  const x = (t) => (t / end) * w;
  for (const [s, e, p, v, isNew] of notes) {
    g.globalAlpha = 0.5 + 0.5 * (v / 127);
    g.fillStyle = isNew ? css("--antiphon") : css("--player");
    g.fillRect(x(s), h - (p - low + 1) * row, Math.max(1, x(e) - x(s)), Math.max(1, row - 0.5));
  }
  g.globalAlpha = 1;
  g.fillStyle = css("--phrase");
  g.fillRect(x(promptEnd), 0, ratio, h);
  if (cursor !== undefined && cursor !== null) {
    g.fillStyle = "rgba(255,255,255,0.7)";
    g.fillRect(x(cursor), 0, ratio, h);
  }
}
