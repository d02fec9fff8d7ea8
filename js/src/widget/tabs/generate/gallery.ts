// The queue (jobs waiting or running, with progress and the live preview; failures with their
// cause) and the gallery (each image with its parameters and its actions). Used by the Panel's
// Generate tab and by the kernel-free sidebar, which feed it the same row shape.
import { h } from "../../dom";

export interface JobRow {
  id: string;
  state: "queued" | "running" | "succeeded" | "failed" | "cancelled";
  mode: string;
  seed: number;
  step: number;
  steps: number;
  error: string;
  backend?: string;
  created: number;
  images: { n: number; seed: number; filename?: string }[];
  params: Record<string, unknown>;
}

export interface GalleryActions {
  send?(row: JobRow, n: number, mode: "img2img" | "inpaint"): void;
  rerun?(row: JobRow, n: number): void;
  cancel?(id: string): void;
}

const STATE_LABEL: Record<string, string> = {
  queued: "Queued", running: "Running", succeeded: "Done", failed: "Failed", cancelled: "Cancelled",
};
const LIVE = new Set(["queued", "running"]);

const short = (s: unknown, n = 40): string => {
  const t = String(s ?? "");
  return t.length > n ? `${t.slice(0, n - 1)}…` : t;
};
const stem = (s: unknown): string => String(s ?? "").replace(/^.*\//, "").replace(/\.[^.]+$/, "");

/** "seed 1 · 512×512 · euler / normal · 20 steps · CFG 7 · model" */
export function paramLine(p: Record<string, unknown>, seed?: number, mode = ""): string {
  return paramBits(p, seed, mode).join(" · ");
}

export function paramBits(p: Record<string, unknown>, seed?: number, mode = ""): string[] {
  const bits = [
    seed != null ? `seed ${seed}` : "",
    `${p.width ?? "?"}×${p.height ?? "?"}`,
    [p.sampler, p.scheduler].filter(Boolean).join(" / "),
    p.steps != null ? `${p.steps} steps` : "",
    p.cfg != null ? `CFG ${p.cfg}` : "",
    p.denoise != null && mode !== "txt2img" ? `denoise ${p.denoise}` : "", // REST params always carry it
    p.checkpoint ? stem(p.checkpoint) : "",
  ];
  return bits.filter(Boolean);
}

interface QueueEls { el: HTMLElement; state: HTMLElement; fill: HTMLElement; text: HTMLElement; prev: HTMLImageElement; err: HTMLElement; cancel: HTMLButtonElement }

export class QueueView {
  readonly el = h("div", { class: "sdp-gen-queue", role: "list" });
  private rows = new Map<string, QueueEls>();

  constructor(private actions: GalleryActions) {}

  /** Live jobs, plus failed / cancelled ones (their cause stays visible). */
  update(jobs: JobRow[], preview: (id: string) => string | undefined): void {
    const shown = jobs.filter((j) => j.state !== "succeeded");
    const seen = new Set<string>();
    shown.forEach((j, i) => {
      seen.add(j.id);
      let x = this.rows.get(j.id);
      if (!x) this.rows.set(j.id, (x = this.make(j)));
      this.fill(x, j, preview(j.id));
      if (this.el.children[i] !== x.el) this.el.insertBefore(x.el, this.el.children[i] ?? null);
    });
    for (const [id, x] of this.rows) if (!seen.has(id)) { x.el.remove(); this.rows.delete(id); }
    this.el.hidden = shown.length === 0;
  }

  private make(j: JobRow): QueueEls {
    const x = {
      state: h("span", { class: "sdp-gen-state" }), fill: h("span", {}), text: h("span", { class: "sdp-gen-qtext" }),
      prev: h("img", { class: "sdp-gen-prev", alt: "" }), err: h("div", { class: "sdp-gen-qerr" }),
      cancel: h("button", { class: "sdp-btn sdp-gen-mini", type: "button", "data-act": "cancel" }, "Cancel"),
    };
    x.cancel.addEventListener("click", () => { x.cancel.disabled = true; this.actions.cancel?.(j.id); });
    const el = h("div", { class: "sdp-gen-qrow", role: "listitem", "data-job": j.id },
      x.prev,
      h("div", { class: "sdp-gen-qmain" },
        h("div", { class: "sdp-gen-qhead" }, h("span", { class: "sdp-gen-qprompt" }, short(j.params.prompt, 80)), x.state),
        h("div", { class: "sdp-gen-bar" }, x.fill), x.text, x.err),
      x.cancel);
    return { ...x, el };
  }

  private fill(x: QueueEls, j: JobRow, preview: string | undefined): void {
    x.el.dataset.state = j.state;
    x.state.textContent = STATE_LABEL[j.state] ?? j.state;
    x.state.className = `sdp-gen-state sdp-gen-s-${j.state}`;
    const frac = j.steps ? Math.min(1, j.step / j.steps) : 0;
    x.fill.style.width = `${(j.state === "running" ? frac : 0) * 100}%`;
    x.text.textContent = j.state === "running" ? `step ${j.step} of ${j.steps} · ${j.mode}${j.backend ? ` on ${j.backend}` : ""}`
      : j.state === "queued" ? `waiting · ${j.mode}` : `${j.mode} · ${paramLine(j.params, j.seed, j.mode)}`;
    x.err.textContent = j.error;
    x.err.hidden = !j.error;
    if (preview && x.prev.src !== preview) x.prev.src = preview;
    x.prev.hidden = !preview;
    x.cancel.hidden = !LIVE.has(j.state);
    x.cancel.disabled = false;
  }
}

export class GalleryView {
  readonly el = h("div", { class: "sdp-gen-gallery" });
  private sig = "";

  constructor(private actions: GalleryActions, private compact = false) {}

  update(jobs: JobRow[], src: (id: string, n: number) => string | undefined): void {
    const items = jobs.filter((j) => j.state === "succeeded").flatMap((j) => j.images.map((im) => ({ j, im, url: src(j.id, im.n) })));
    const sig = items.map((i) => `${i.j.id}/${i.im.n}=${i.url ?? ""}`).join("|");
    if (sig === this.sig) return;
    this.sig = sig;
    this.el.replaceChildren(...items.map(({ j, im, url }) => this.card(j, im.n, im.seed, url)));
    this.el.hidden = items.length === 0;
  }

  private card(j: JobRow, n: number, seed: number, url: string | undefined): HTMLElement {
    const p = j.params;
    const btn = (act: string, label: string, title: string, fn: () => void) =>
      h("button", { class: "sdp-btn sdp-gen-mini", type: "button", "data-act": act, title, onclick: fn }, label);
    const acts = this.compact ? [] : [
      btn("to-img2img", "img2img", "Use this image as the img2img input", () => this.actions.send?.(j, n, "img2img")),
      btn("to-inpaint", "Inpaint", "Paint a mask on this image", () => this.actions.send?.(j, n, "inpaint")),
      btn("rerun", "Re-run", `Run these parameters again with seed ${seed}`, () => this.actions.rerun?.(j, n)),
    ];
    const file = `${j.id}-${String(n).padStart(2, "0")}.png`;
    const pic = url
      ? h("a", { class: "sdp-gen-pic", href: url, target: "_blank", rel: "noopener", title: "Open full size" },
        h("img", { src: url, alt: short(p.prompt, 120) }))
      : h("div", { class: "sdp-gen-pic sdp-gen-missing" }, "image not loaded");
    return h("figure", { class: "sdp-gen-card", "data-job": j.id, "data-n": String(n) },
      pic,
      h("figcaption", {},
        h("div", { class: "sdp-gen-cprompt", title: String(p.prompt ?? "") }, String(p.prompt ?? "")),
        p.negative_prompt ? h("div", { class: "sdp-gen-cneg", title: String(p.negative_prompt) }, `− ${String(p.negative_prompt)}`) : null,
        // One span per parameter: a line breaks between them, never inside "256×192".
        h("div", { class: "sdp-gen-cmeta sdp-mono" }, ...[j.mode, ...paramBits(p, seed, j.mode)].map((b) => h("span", {}, b))),
        h("div", { class: "sdp-gen-cacts" }, ...acts,
          url ? h("a", { class: "sdp-btn sdp-gen-mini", href: url, download: file, title: "Save the PNG (parameters embedded)" }, "Save") : null)));
  }
}
