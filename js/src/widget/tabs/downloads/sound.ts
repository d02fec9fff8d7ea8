// Synthesized sound cues (Web Audio, no asset files) for the Downloads tab.
// Browsers start an AudioContext "suspended" unless it is created or resumed inside a user
// gesture (autoplay policy), so the context is made only from a click/keypress in a panel
// view (unlock()); until then cues are skipped silently and the tab offers "Enable sound".

export type Cue = "file_done" | "queue_done" | "error";

interface Note {
  f: number; // Hz
  at: number; // seconds after the cue starts
  dur: number; // seconds
  type: OscillatorType;
  vol: number; // peak gain
  glide?: number; // Hz to slide to over the note (a falling "error" tone)
}

// Short and distinct: a bright two-note "ding" per file, a rising four-note arpeggio when
// the whole queue is done, a low falling buzz on an error.
const CUES: Record<Cue, Note[]> = {
  file_done: [
    { f: 880, at: 0, dur: 0.12, type: "sine", vol: 0.22 },
    { f: 1318.5, at: 0.09, dur: 0.22, type: "sine", vol: 0.2 },
  ],
  queue_done: [
    { f: 523.25, at: 0, dur: 0.16, type: "triangle", vol: 0.24 },
    { f: 659.25, at: 0.12, dur: 0.16, type: "triangle", vol: 0.24 },
    { f: 783.99, at: 0.24, dur: 0.16, type: "triangle", vol: 0.24 },
    { f: 1046.5, at: 0.36, dur: 0.42, type: "triangle", vol: 0.26 },
  ],
  error: [
    { f: 220, at: 0, dur: 0.18, type: "square", vol: 0.1, glide: 196 },
    { f: 174.61, at: 0.2, dur: 0.32, type: "square", vol: 0.1, glide: 146.83 },
  ],
};

export const cueLength = (cue: Cue): number => Math.max(...CUES[cue].map((n) => n.at + n.dur));

type Ctor = typeof AudioContext;
let ctx: AudioContext | null = null;
const listeners = new Set<() => void>();
let busyUntil = 0; // context time when the last cue ends: cues queue up instead of overlapping

/** True once a gesture has given us a running AudioContext. */
export const soundReady = (): boolean => ctx !== null && ctx.state === "running";

/** Call from a user gesture (click, keydown): create or resume the AudioContext. */
export function unlock(): void {
  const Impl: Ctor | undefined = window.AudioContext
    ?? (window as unknown as { webkitAudioContext?: Ctor }).webkitAudioContext;
  if (!Impl) return;
  try {
    if (!ctx) ctx = new Impl();
    if (ctx.state === "suspended") void ctx.resume().then(changed, changed);
  } catch {
    ctx = null; // no audio device: the panel simply stays silent
  }
  changed();
}

function changed(): void {
  for (const fn of listeners) fn();
}

/** Be told when sound becomes available (to redraw the sound button). */
export function onSoundChange(fn: () => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Play a cue now, or right after the one still sounding. False when no sound is possible. */
export function play(cue: Cue): boolean {
  const notes = CUES[cue];
  if (!ctx || ctx.state !== "running" || !notes) return false;
  const start = Math.max(ctx.currentTime + 0.01, busyUntil);
  busyUntil = start + cueLength(cue);
  for (const n of notes) {
    const t = start + n.at;
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = n.type;
    osc.frequency.setValueAtTime(n.f, t);
    if (n.glide) osc.frequency.linearRampToValueAtTime(n.glide, t + n.dur);
    // A quick attack and an exponential tail: no clicks at the start or the end.
    gain.gain.setValueAtTime(0.0001, t);
    gain.gain.linearRampToValueAtTime(n.vol, t + 0.012);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + n.dur);
    osc.connect(gain);
    gain.connect(ctx.destination);
    osc.start(t);
    osc.stop(t + n.dur + 0.02);
  }
  return true;
}
