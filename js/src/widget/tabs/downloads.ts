// Downloads tab: a row per file (name, kind, size, progress, speed, ETA, state, the error's
// cause and fix) with pause/resume/cancel/retry, all-files actions, totals, and sound cues.
// Python owns every number (the `downloads` trait, ≤ 10 updates/s); the browser sends intents
// ("downloads.pause" …) and keeps only view state. Rows are updated in place, keyed by id, so
// bars animate smoothly and a button never vanishes under the pointer between updates.
import { humanBytes } from "../../common/system";
import { h } from "../dom";
import type { PanelModel, TabContext, TabModule } from "../types";
import { type Cue, onSoundChange, play, soundReady, unlock } from "./downloads/sound";
import "./downloads.css";

interface Row {
  id: string; name: string; kind: string; state: string; done: number; total: number | null;
  speed: number; eta: number | null; error: string | null; reason: string | null; sha: string;
}
interface Totals { done: number; total: number; speed: number; eta: number | null; counts: Record<string, number> }
interface Notice { id: string; message: string; retry: boolean }
interface Downloads { rows?: Row[]; totals?: Totals; hidden?: number; notices?: Notice[]; muted?: boolean }

const LABEL: Record<string, string> = {
  active: "Downloading", queued: "Queued", paused: "Paused", done: "Done", failed: "Failed", cancelled: "Cancelled",
};
const ACTIONS: Record<string, [string, string][]> = {
  active: [["pause", "Pause"], ["cancel", "Cancel"]],
  queued: [["pause", "Pause"], ["cancel", "Cancel"]],
  paused: [["resume", "Resume"], ["cancel", "Cancel"]],
  failed: [["retry", "Retry"], ["cancel", "Discard"]],
  cancelled: [["retry", "Retry"]],
  done: [],
};

// A speaker icon (inline SVG: emoji glyphs are missing from many Linux browsers' fonts).
function speaker(state: "on" | "off" | "locked"): SVGSVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "sdp-dl-icon");
  svg.setAttribute("aria-hidden", "true");
  const paths = ["M4 9h4l5-4v14l-5-4H4z"];
  if (state === "on") paths.push("M16 8.5a5 5 0 0 1 0 7", "M18.5 6a8.5 8.5 0 0 1 0 12");
  if (state === "off") paths.push("M17 9l5 6", "M22 9l-5 6");
  if (state === "locked") paths.push("M16.5 10v4");
  for (const d of paths) {
    const p = document.createElementNS(ns, "path");
    p.setAttribute("d", d);
    svg.append(p);
  }
  return svg;
}

const data = (model: PanelModel): Downloads => (model.get("downloads") ?? {}) as Downloads;

export function eta(s: number | null | undefined): string {
  if (s == null || !isFinite(s)) return "";
  const n = Math.max(0, Math.round(s));
  if (n < 60) return `${n}s`;
  if (n < 3600) return `${Math.floor(n / 60)}m ${String(n % 60).padStart(2, "0")}s`;
  return `${Math.floor(n / 3600)}h ${String(Math.floor((n % 3600) / 60)).padStart(2, "0")}m`;
}
const speed = (bps: number): string => (bps > 0 ? `${humanBytes(bps)}/s` : "");
const pct = (r: Row): number | null => (r.total ? Math.min(100, (100 * r.done) / r.total) : r.state === "done" ? 100 : null);

interface RowEls {
  el: HTMLElement; name: HTMLElement; kind: HTMLElement; state: HTMLElement; bar: HTMLElement;
  fill: HTMLElement; pct: HTMLElement; size: HTMLElement; speed: HTMLElement; eta: HTMLElement;
  error: HTMLElement; acts: HTMLElement; actsKey: string;
}

function render({ model, el, act }: TabContext): () => void {
  const summary = h("div", { class: "sdp-dl-summary" });
  const soundBtn = h("button", { class: "sdp-btn sdp-dl-sound", type: "button" });
  const cancelAll = h("button", { class: "sdp-btn", type: "button", "data-act": "cancel-all" }, "Cancel all");
  const bulk = (verb: string, label: string, cls = "") =>
    h("button", { class: `sdp-btn ${cls}`, type: "button", "data-act": `${verb}-all`, onclick: () => act(`downloads.${verb}`) }, label);
  const pauseAll = bulk("pause", "Pause all");
  const resumeAll = bulk("resume", "Resume all");
  const clear = bulk("clear", "Clear finished");
  const notices = h("div", { class: "sdp-dl-notices" });
  const list = h("div", { class: "sdp-dl-list", role: "list" });
  const empty = h("p", { class: "sdp-empty sdp-dl-empty" },
    "No downloads yet. Pick models in the Models tab (or MODEL_PRESETS / MODEL_LINKS in the Settings cell) and run the Download cell.");
  const hidden = h("p", { class: "sdp-muted sdp-dl-hidden" });
  el.append(
    h("div", { class: "sdp-dl-bar-top" }, summary,
      h("div", { class: "sdp-dl-bulk" }, pauseAll, resumeAll, cancelAll, clear, soundBtn)),
    notices, list, empty, hidden,
  );

  // "Cancel all" deletes every partial file: ask once more, on the button itself.
  let confirmTimer = 0;
  cancelAll.addEventListener("click", () => {
    if (!confirmTimer) {
      cancelAll.textContent = "Confirm cancel all";
      cancelAll.classList.add("sdp-danger");
      confirmTimer = window.setTimeout(resetCancel, 4000);
      return;
    }
    resetCancel();
    act("downloads.cancel");
  });
  function resetCancel(): void {
    window.clearTimeout(confirmTimer);
    confirmTimer = 0;
    cancelAll.textContent = "Cancel all";
    cancelAll.classList.remove("sdp-danger");
  }

  const drawSound = () => {
    const muted = Boolean(data(model).muted);
    const ready = soundReady();
    soundBtn.dataset.muted = String(muted);
    soundBtn.dataset.ready = String(ready);
    soundBtn.replaceChildren(speaker(muted ? "off" : ready ? "on" : "locked"),
      muted ? "Sound off" : ready ? "Sound on" : "Enable sound");
    soundBtn.title = muted ? "Sound cues are muted (saved in settings). Click to turn them on."
      : ready ? "Sounds play when a file or the whole queue is done, or on an error. Click to mute."
        : "Your browser allows sound only after a click in the page: click to enable the cues.";
    soundBtn.classList.toggle("sdp-on", !muted && ready);
  };
  soundBtn.addEventListener("click", () => {
    const muted = Boolean(data(model).muted);
    if (!muted && !soundReady()) {
      unlock(); // first click only enables sound; the next one mutes
      return;
    }
    if (muted) unlock();
    act("downloads.mute", { muted: !muted });
  });

  const rows = new Map<string, RowEls>();
  const makeRow = (r: Row): RowEls => {
    const els = {
      name: h("span", { class: "sdp-dl-name" }), kind: h("span", { class: "sdp-dl-kind" }),
      state: h("span", { class: "sdp-dl-state" }), fill: h("span", {}),
      pct: h("span", { class: "sdp-dl-pct" }), size: h("span", { class: "sdp-dl-size" }),
      speed: h("span", { class: "sdp-dl-speed" }), eta: h("span", { class: "sdp-dl-eta" }),
      error: h("div", { class: "sdp-dl-error" }), acts: h("div", { class: "sdp-dl-acts" }), actsKey: "",
    } as Omit<RowEls, "el" | "bar">;
    const bar = h("div", { class: "sdp-dl-progress" }, els.fill);
    const el = h("div", { class: "sdp-dl-row", role: "listitem", "data-id": r.id },
      h("div", { class: "sdp-dl-main" },
        h("div", { class: "sdp-dl-head" }, els.name, els.kind, els.state),
        bar,
        h("div", { class: "sdp-dl-meta" }, els.pct, els.size, els.speed, els.eta),
        els.error),
      els.acts);
    return { ...els, el, bar };
  };
  const updateRow = (x: RowEls, r: Row) => {
    x.el.dataset.state = r.state;
    x.name.textContent = r.name;
    x.name.title = r.name;
    x.kind.textContent = r.kind;
    x.kind.hidden = !r.kind;
    x.state.textContent = LABEL[r.state] ?? r.state;
    x.state.className = `sdp-dl-state sdp-dl-s-${r.state}`;
    const p = pct(r);
    const moving = r.state === "active" || r.state === "queued" || r.state === "paused";
    x.bar.classList.toggle("sdp-dl-indet", p == null && r.state === "active");
    x.fill.style.width = `${p ?? 0}%`;
    x.pct.textContent = p == null || (!moving && r.state !== "done" && !r.done) ? ""
      : `${p >= 99.95 || r.state === "done" ? "100" : p.toFixed(1)}%`;
    const size = r.total ? humanBytes(r.total) : "";
    x.size.textContent = r.state === "done"
      ? `${humanBytes(r.total ?? r.done)}${r.sha ? ` · sha256 ${r.sha}…` : ""}`
      : r.state === "cancelled" ? [size, "partial file removed"].filter(Boolean).join(" · ")
        : r.total && (moving || r.done) ? `${humanBytes(r.done)} of ${size}`
          : size || (r.done ? humanBytes(r.done) : "size unknown");
    x.speed.textContent = r.state === "active" ? speed(r.speed) : "";
    const left = r.state === "active" ? eta(r.eta) : "";
    x.eta.textContent = left ? `${left} left` : "";
    x.error.textContent = r.error ?? "";
    x.error.hidden = !r.error;
    const key = r.state;
    if (x.actsKey !== key) {
      x.actsKey = key;
      x.acts.replaceChildren(...(ACTIONS[r.state] ?? []).map(([verb, label]) =>
        h("button", {
          class: `sdp-btn sdp-dl-act${verb === "retry" && r.state === "failed" ? " sdp-primary" : ""}`, type: "button", "data-act": verb,
          onclick: (ev: Event) => {
            (ev.currentTarget as HTMLButtonElement).disabled = true; // until Python answers
            act(`downloads.${verb}`, { id: r.id });
          },
        }, label)));
    } else {
      for (const b of x.acts.querySelectorAll("button")) b.disabled = false;
    }
  };

  const drawSummary = (t: Totals | undefined, all: Row[]) => {
    const c = t?.counts ?? {};
    const counts = ["active", "queued", "paused", "failed", "done", "cancelled"].filter((s) => c[s])
      .map((s) => h("span", { class: `sdp-dl-count sdp-dl-s-${s}` }, `${c[s]} ${s === "active" ? "downloading" : s}`));
    const live = (c.active ?? 0) + (c.queued ?? 0) + (c.paused ?? 0);
    const bytes = t && t.total ? `${humanBytes(t.done)} of ${humanBytes(t.total)}` : "";
    const line = [bytes, t ? speed(t.speed) : "", t && t.eta != null ? `${eta(t.eta)} left` : ""].filter(Boolean).join(" · ");
    summary.replaceChildren(
      h("div", { class: "sdp-dl-counts" }, ...(counts.length ? counts : [h("span", { class: "sdp-muted" }, all.length ? "" : "Queue empty")])),
      h("div", { class: "sdp-dl-totals sdp-mono" }, line));
    pauseAll.disabled = !((c.active ?? 0) + (c.queued ?? 0));
    resumeAll.disabled = !c.paused;
    cancelAll.disabled = !live && !c.failed;
    clear.disabled = !((c.done ?? 0) + (c.failed ?? 0) + (c.cancelled ?? 0));
  };

  const draw = () => {
    const d = data(model);
    const all = d.rows ?? [];
    const seen = new Set<string>();
    all.forEach((r, i) => {
      seen.add(r.id);
      let x = rows.get(r.id);
      if (!x) rows.set(r.id, (x = makeRow(r)));
      updateRow(x, r);
      if (list.children[i] !== x.el) list.insertBefore(x.el, list.children[i] ?? null);
    });
    for (const [id, x] of rows) if (!seen.has(id)) { x.el.remove(); rows.delete(id); }
    empty.hidden = all.length > 0;
    hidden.hidden = !d.hidden;
    hidden.textContent = d.hidden ? `${d.hidden} older finished download${d.hidden === 1 ? "" : "s"} not shown (Clear finished removes them).` : "";
    notices.replaceChildren(...(d.notices ?? []).map((n) =>
      h("div", { class: "sdp-dl-notice", "data-notice": n.id },
        h("span", {}, n.message),
        n.retry ? h("button", { class: "sdp-btn sdp-primary", type: "button", "data-act": "reload", onclick: () => act("downloads.reload", { notice: n.id }) }, "Retry") : null,
        h("button", { class: "sdp-btn", type: "button", "data-act": "dismiss", onclick: () => act("downloads.dismiss", { notice: n.id }) }, "Dismiss"))));
    drawSummary(d.totals, all);
    drawSound();
  };
  draw();
  model.on("change:downloads", draw);
  const offSound = onSoundChange(drawSound);
  return () => {
    resetCancel();
    offSound();
    model.off("change:downloads", draw);
  };
}

// ---- model-wide (once per model, from the widget's initialize) ---------------------------
let gestureHooked = 0;
const onGesture = (ev: Event) => {
  // Any click or key inside an sdpanel view counts as the gesture the autoplay policy wants.
  if ((ev.target as Element | null)?.closest?.(".sdpanel-root")) unlock();
};

function initialize(model: PanelModel): () => void {
  const onMsg = (msg: { type?: string; cue?: string }) => {
    if (msg?.type !== "cue" || !msg.cue) return;
    if (data(model).muted) return;
    play(msg.cue as Cue);
  };
  model.on("msg:custom", onMsg);
  if (gestureHooked++ === 0) {
    document.addEventListener("pointerdown", onGesture, true);
    document.addEventListener("keydown", onGesture, true);
  }
  return () => {
    model.off("msg:custom", onMsg);
    if (--gestureHooked === 0) {
      document.removeEventListener("pointerdown", onGesture, true);
      document.removeEventListener("keydown", onGesture, true);
    }
  };
}

export const downloadsTab: TabModule = { render, initialize };
