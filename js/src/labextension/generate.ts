// Kernel-free Generate in the "SD" sidebar: the compact form, submitted to the REST API of the
// jupyter-server extension through the typed client (ServerConnection adds token + XSRF),
// progress and previews over Server-Sent Events, results fetched from jobs/{id}/images/{n}.
// It needs no notebook and no kernel, only a running WebUI that the server can reach.
import type { ServerConnection as SC } from "@jupyterlab/services";
import {
  API_PREFIX, ApiError, backendNotice, cancelJob, createJob, fetchImage, type GenerateOptions, getOptions, type Job,
  type JobEvent, listJobs, type RequestFn, streamEvents,
} from "../common/generate-client";
import { h } from "../widget/dom";
import { GenerateForm } from "../widget/tabs/generate/form";
import { GalleryView, type JobRow, QueueView } from "../widget/tabs/generate/gallery";
import css from "../widget/tabs/generate.css";

const RECENT = 6; // finished jobs of the server's queue shown on open

function injectStyle(): void {
  if (document.getElementById("sdpanel-lab-generate-style")) return;
  const style = document.createElement("style");
  style.id = "sdpanel-lab-generate-style";
  style.textContent = css;
  document.head.append(style);
}

export function toRow(j: Job): JobRow {
  return {
    id: j.id, state: j.state, mode: j.mode, seed: j.seed, step: j.progress?.step ?? 0, steps: j.progress?.steps ?? 0,
    error: j.error ?? "", backend: j.backend ?? "", created: j.created ?? Date.now() / 1000,
    images: j.images.filter((im) => im.available !== false).map((im) => ({ n: im.n, seed: im.seed })), params: j.params ?? {},
  };
}

/** A success note goes away by itself; an error stays until the next try. */
export function fadeLater(el: HTMLElement, ms = 3000): void {
  const text = el.textContent;
  window.setTimeout(() => {
    if (el.textContent === text && el.classList.contains("sdp-gen-ok")) el.classList.add("sdp-gen-fade");
  }, ms);
}

export class SidebarGenerate {
  private root: HTMLElement;
  private form = new GenerateForm(true);
  private go = h("button", { class: "sdp-btn sdp-gen-go", type: "button", "data-act": "generate" }, "Generate");
  private status = h("div", { class: "sdp-gen-status", role: "status" });
  private notice = h("div", { class: "sdp-gen-notice" });
  private queue: QueueView;
  private gallery = new GalleryView({}, true);
  private rows = new Map<string, JobRow>();
  private previews = new Map<string, string>();
  private images = new Map<string, string>(); // "<id>/<n>" → blob: URL
  private following = new Map<string, AbortController>();
  private request: RequestFn;
  private loaded = false;

  constructor(host: HTMLElement, sc: typeof SC, private visible: () => boolean) {
    injectStyle();
    const settings = sc.makeSettings();
    const base = settings.baseUrl.replace(/\/?$/, "/") + API_PREFIX;
    this.request = (path, init = {}) => sc.makeRequest(base + path, init, settings);
    this.queue = new QueueView({ cancel: (id) => void this.cancel(id) });
    const refresh = h("button", { class: "sdp-btn sdp-gen-mini", type: "button", "data-act": "refresh", title: "Reload models and WebUIs" }, "Refresh");
    refresh.addEventListener("click", () => void this.load());
    this.go.addEventListener("click", () => void this.submit());
    this.form.el.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); void this.submit(); }
    });
    this.root = h("div", { class: "sdpanel-root sdp-sidebar sdp-gen-side", "data-view": "sidebar-generate" },
      h("div", { class: "sdp-gen-h" }, h("h3", {}, "Generate"), refresh),
      h("p", { class: "sdp-muted sdp-gen-sub" }, "Text to image through the server: no notebook or kernel needed."),
      this.notice, this.form.el,
      h("div", { class: "sdp-gen-footer" }, this.go, this.status),
      this.queue.el, this.gallery.el);
    host.append(this.root);
    this.draw();
  }

  start(): void {
    // Load when first shown: a hidden sidebar must not cost the server anything.
    const tick = () => {
      if (!this.loaded && this.visible()) void this.load();
    };
    window.setInterval(tick, 1000);
    tick();
  }

  async load(): Promise<void> {
    this.loaded = true;
    try {
      const opts = await getOptions(this.request);
      this.form.setOptions(opts);
      this.drawNotice(opts);
      const jobs = await listJobs(this.request);
      for (const j of jobs.slice(0, RECENT + 4)) {
        if (!this.rows.has(j.id)) this.rows.set(j.id, toRow(j));
        if (j.state === "queued" || j.state === "running") this.follow(j.id);
        else if (j.state === "succeeded") void this.fetchImages(this.rows.get(j.id) as JobRow);
      }
      this.draw();
    } catch (err) {
      this.notice.replaceChildren(h("div", { class: "sdp-gen-note sdp-gen-bad" },
        `Cannot reach the generation API: ${(err as Error).message}. Is the sdpanel server extension enabled?`));
    }
  }

  private drawNotice(o: GenerateOptions): void {
    const notes: HTMLElement[] = [];
    const where = backendNotice(o, "launch one (Launch cell or `sdpanel launch <webui>`)");
    if (where) notes.push(h("div", { class: "sdp-gen-note" }, where));
    if (!(o.models?.checkpoints ?? []).length) notes.push(h("div", { class: "sdp-gen-note" }, "The store has no checkpoint yet: download one first."));
    this.notice.replaceChildren(...notes);
  }

  private async submit(): Promise<void> {
    this.go.disabled = true;
    this.status.className = "sdp-gen-status";
    this.status.textContent = "Queuing…";
    try {
      const job = await createJob(this.request, { ...this.form.values(), mode: "txt2img" });
      this.form.showErrors({});
      this.rows.set(job.id, toRow(job));
      this.status.className = "sdp-gen-status sdp-gen-ok";
      this.status.textContent = "Queued.";
      fadeLater(this.status);
      this.follow(job.id);
    } catch (err) {
      const e = err as ApiError;
      const rest = e instanceof ApiError ? this.form.showErrors(e.errors) : {};
      const other = Object.entries(rest).map(([k, v]) => `${k}: ${v}`).join(" · ");
      this.status.className = "sdp-gen-status sdp-gen-bad";
      this.status.textContent = e instanceof ApiError && e.status === 400
        ? `Fix the marked fields and generate again.${other ? ` ${other}` : ""}`
        : (e.message || String(err)).replace(/^\d+ /, "");
    } finally {
      this.go.disabled = false;
      this.draw();
    }
  }

  private async cancel(id: string): Promise<void> {
    try {
      this.rows.set(id, toRow(await cancelJob(this.request, id)));
    } catch (err) {
      this.status.className = "sdp-gen-status sdp-gen-bad";
      this.status.textContent = (err as Error).message;
    }
    this.draw();
  }

  private follow(id: string): void {
    if (this.following.has(id)) return;
    const ctrl = new AbortController();
    this.following.set(id, ctrl);
    const onEvent = (ev: JobEvent) => {
      const row = this.rows.get(id);
      if (!row) return;
      switch (ev.kind) {
        case "queued": row.state = "queued"; row.seed = ev.data.seed; break;
        case "running": row.state = "running"; row.backend = ev.data.backend; break;
        case "progress": row.state = "running"; row.step = ev.data.step; row.steps = ev.data.steps; break;
        case "preview": this.previews.set(id, ev.data.image); break;
        case "done":
          row.state = "succeeded"; row.seed = ev.data.seed; row.step = row.steps;
          row.images = ev.data.images.map((im) => ({ n: im.n, seed: im.seed, filename: im.filename }));
          this.previews.delete(id);
          void this.fetchImages(row);
          break;
        case "error": row.state = ev.data.state; row.error = ev.data.message; break;
      }
      this.draw();
    };
    streamEvents(this.request, id, onEvent, { signal: ctrl.signal })
      .catch((err: Error) => {
        const row = this.rows.get(id);
        if (row && (row.state === "queued" || row.state === "running")) {
          row.error = `lost the job's progress: ${err.message}`;
          this.draw();
        }
      })
      .finally(() => this.following.delete(id));
  }

  private async fetchImages(row: JobRow): Promise<void> {
    for (const im of row.images) {
      const key = `${row.id}/${im.n}`;
      if (this.images.has(key)) continue;
      try {
        this.images.set(key, URL.createObjectURL(await fetchImage(this.request, row.id, im.n)));
      } catch {
        continue; // the card says "image not loaded"
      }
      this.draw();
    }
  }

  private draw(): void {
    const rows = [...this.rows.values()].sort((a, b) => b.created - a.created);
    const live = rows.filter((r) => r.state !== "succeeded");
    const done = rows.filter((r) => r.state === "succeeded").slice(0, RECENT);
    this.queue.update(live.slice(0, RECENT), (id) => this.previews.get(id));
    this.gallery.update(done, (id, n) => this.images.get(`${id}/${n}`));
  }
}
