// Kernel-free status in the sidebar: GET /sdpanel/api/status through ServerConnection (which
// adds the token and XSRF header), refreshed every few seconds while the sidebar is visible.
import type { ServerConnection as SC } from "@jupyterlab/services";
import { humanBytes, platformLabel, renderChips } from "../common/system";
import { h } from "../widget/dom";

const REFRESH_MS = 4000;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

function storageView(s: unknown): HTMLElement {
  if (!isObj(s)) return h("div", { class: "sdp-mono" }, typeof s === "string" ? s : "—");
  const root = String(s.root ?? s.path ?? "—");
  const free = typeof s.free_bytes === "number" ? s.free_bytes : null;
  const total = typeof s.total_bytes === "number" ? s.total_bytes : null;
  return h("div", {},
    h("div", { class: "sdp-mono" }, root),
    h("div", { class: "sdp-muted", style: "font-size:11px;margin-top:2px" },
      free != null ? `${humanBytes(free)} free${total ? ` of ${humanBytes(total)}` : ""}` : "",
      s.exists === false ? " · not created yet" : ""));
}

function procRow(p: unknown): HTMLElement {
  const o: Obj = isObj(p) ? p : { name: String(p) };
  const name = String(o.name ?? o.kind ?? o.id ?? "process");
  const alive = o.alive !== false;
  const bits = [o.pid != null ? `pid ${o.pid}` : "", o.port != null ? `port ${o.port}` : "",
    alive ? "" : String(o.reason ?? "not running")].filter(Boolean).join(" · ");
  return h("div", { class: `sdp-proc${alive ? "" : " sdp-stale"}`, title: alive ? "running" : "stale record" },
    h("span", {}, h("span", { class: "sdp-dot" }), name), h("span", { class: "sdp-muted sdp-mono" }, bits));
}

export class StatusView {
  private root: HTMLElement;
  private platform: HTMLElement;
  private body: HTMLElement;
  private last = 0;
  private wasVisible = false;
  private busy = false;
  private timer = 0;

  constructor(
    host: HTMLElement,
    private sc: typeof SC,
    private visible: () => boolean,
  ) {
    this.platform = h("span", { class: "sdp-platform" }, "…");
    this.body = h("div", { class: "sdp-status" }, h("p", { class: "sdp-muted" }, "Loading status…"));
    this.root = h("div", { class: "sdpanel-root sdp-sidebar sdp-status-root" },
      h("header", { class: "sdp-header" },
        h("div", { class: "sdp-brand" }, h("span", { class: "sdp-logo" }, "SD"), h("span", { class: "sdp-title" }, "sdpanel"), this.platform)),
      this.body);
    host.append(this.root);
  }

  /** With a live Panel above, the status shrinks to what the Panel does not show. */
  setCompact(on: boolean): void {
    this.root.classList.toggle("sdp-compact", on);
    this.root.querySelector(".sdp-header")?.toggleAttribute("hidden", on);
  }

  start(): void {
    // One cheap tick: fetch at once when the sidebar becomes visible, then every REFRESH_MS.
    const tick = () => {
      const vis = this.visible();
      if (vis && (!this.wasVisible || Date.now() - this.last >= REFRESH_MS)) void this.refresh();
      this.wasVisible = vis;
    };
    this.timer = window.setInterval(tick, 1000);
    void this.refresh();
  }

  stop(): void {
    window.clearInterval(this.timer);
  }

  async refresh(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    this.last = Date.now();
    try {
      const settings = this.sc.makeSettings();
      const url = settings.baseUrl.replace(/\/?$/, "/") + "sdpanel/api/status";
      const resp = await this.sc.makeRequest(url, { method: "GET" }, settings);
      if (!resp.ok) throw new Error(`status endpoint answered ${resp.status} ${resp.statusText}`);
      this.draw((await resp.json()) as Obj);
    } catch (err) {
      this.body.replaceChildren(
        h("p", { class: "sdp-error-text" }, `Cannot read sdpanel status: ${(err as Error).message}`),
        h("p", { class: "sdp-muted" }, "Is the sdpanel server extension enabled? (jupyter server extension list)"),
      );
    } finally {
      this.busy = false;
    }
  }

  private draw(data: Obj): void {
    this.platform.textContent = platformLabel(data.platform);
    const chips = h("div", { class: "sdp-chips" });
    renderChips(chips, data.system);
    const procs = Array.isArray(data.processes) ? data.processes : [];
    const time = new Date().toLocaleTimeString();
    const errors = isObj(data.errors) ? Object.entries(data.errors) : [];
    this.body.replaceChildren(
      ...errors.map(([part, msg]) => h("p", { class: "sdp-error-text", style: "margin:0" }, `${part}: ${String(msg)}`)),
      h("div", { class: "sdp-section sdp-status-system" }, h("h3", {}, "System"), chips),
      h("div", { class: "sdp-section sdp-status-storage" }, h("h3", {}, "Storage"), storageView(data.storage)),
      h("div", { class: "sdp-section sdp-status-processes" }, h("h3", {}, "Processes"),
        procs.length ? h("div", {}, ...procs.map(procRow)) : h("p", { class: "sdp-muted", style: "margin:0" }, "No sdpanel processes running.")),
      h("p", { class: "sdp-muted", style: "margin:0;font-size:11px" }, `sdpanel ${String(data.version ?? "")} · updated ${time}`),
    );
  }
}
