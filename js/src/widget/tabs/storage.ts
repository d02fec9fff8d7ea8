// Storage tab: a squarified treemap of the store (kind → model), used/free disk bars, the
// sortable model list and the cleaner (criteria → Preview → "Delete N files (X)" → result).
// Python owns every number shown: previews and results come back as traits; the browser
// only sends intents and keeps view state (sort order, file selection, form values).
import { humanBytes } from "../../common/system";
import { h } from "../dom";
import type { TabContext, TabModule } from "../types";
import "./storage.css";

interface Kind { id: string; label: string; bytes: number; files: number; rest: number; rest_files: number }
interface Disk { path: string; total: number; used: number; free: number }
interface Usage {
  store?: string; work_dir?: string | null; store_bytes?: number; kinds?: Kind[];
  outputs?: number; state?: number; disks?: Record<string, Disk>; caches?: Record<string, number>;
  partials?: { count: number; bytes: number };
  webuis?: { label: string; dir: string; install: number; venv: number; outputs: number }[];
  models_total?: number; models_shown?: number; duplicates?: number; updated?: number;
}
// Compact model rows: path (relative to the store), kind, size, mtime, base model, WebUIs, duplicate.
interface Model { p: string; k: string; s: number; t: number; b: string; w: string[]; d: boolean }
interface PlanItem { p: string; r: string; s: number; l: boolean; dir: boolean }
interface Plan { id?: number; bytes?: number; count?: number; items?: PlanItem[]; errors?: string[] }
interface Result { deleted?: number; bytes_freed?: number; skipped?: string[]; errors?: string[] }
interface Status { busy?: string; error?: string; retry?: string }
interface Rect { x: number; y: number; w: number; h: number }

// One fixed colour per kind (treemap, list, kind picker agree); unknown kinds get a hashed one.
const KIND_COLORS: Record<string, string> = {
  checkpoints: "#7c6cff", diffusion_models: "#5b8cff", loras: "#f08c1a", embeddings: "#b65cff",
  vae: "#1fb39a", text_encoders: "#ff7a45", clip_vision: "#e05cd1", controlnet: "#2d9de0",
  upscalers: "#34b86f", adetailer: "#ff5c7a", hypernetworks: "#c9a227", ipadapter: "#7cb82f",
  sam: "#6f7d99", other: "#8a8fa3",
};
const PALETTE = Object.values(KIND_COLORS);
const colorOf = (kind: string): string => {
  if (KIND_COLORS[kind]) return KIND_COLORS[kind];
  let n = 0;
  for (const c of kind) n = (n * 31 + c.charCodeAt(0)) >>> 0;
  return PALETTE[n % PALETTE.length];
};
const fmtDate = (t: number): string => (t ? new Date(t * 1000).toISOString().slice(0, 10) : "");
const base = (p: string): string => p.split("/").pop() ?? p;

/** Squarified treemap layout (Bruls, Huizing, van Wijk): rows along the shorter side, a
 *  row grows while its worst aspect ratio improves. Values ≤ 0 are left out. */
export function squarify<T>(items: { v: number; d: T }[], rect: Rect): { d: T; r: Rect }[] {
  const out: { d: T; r: Rect }[] = [];
  const live = items.filter((i) => i.v > 0).sort((a, b) => b.v - a.v);
  const total = live.reduce((s, i) => s + i.v, 0);
  if (!total || rect.w <= 0 || rect.h <= 0) return out;
  const scale = (rect.w * rect.h) / total;
  let rest = live.map((i) => ({ a: i.v * scale, d: i.d }));
  let { x, y, w, h: hh } = rect;
  const worst = (row: { a: number }[], side: number): number => {
    const s = row.reduce((t, r) => t + r.a, 0);
    return Math.max(...row.map((r) => Math.max((side * side * r.a) / (s * s), (s * s) / (side * side * r.a))));
  };
  while (rest.length) {
    const side = Math.min(w, hh);
    const row = [rest[0]];
    let i = 1;
    while (i < rest.length && worst([...row, rest[i]], side) <= worst(row, side)) row.push(rest[i++]);
    rest = rest.slice(i);
    const area = row.reduce((t, r) => t + r.a, 0);
    if (w >= hh) {
      const cw = rest.length ? area / hh : w;
      let cy = y;
      for (const r of row) {
        const ch = (r.a / area) * hh;
        out.push({ d: r.d, r: { x, y: cy, w: cw, h: ch } });
        cy += ch;
      }
      x += cw;
      w -= cw;
    } else {
      const rh = rest.length ? area / w : hh;
      let cx = x;
      for (const r of row) {
        const cw = (r.a / area) * w;
        out.push({ d: r.d, r: { x: cx, y, w: cw, h: rh } });
        cx += cw;
      }
      y += rh;
      hh -= rh;
    }
  }
  return out;
}

function place(el: HTMLElement, r: Rect): void {
  el.style.left = `${r.x}px`;
  el.style.top = `${r.y}px`;
  el.style.width = `${Math.max(0, r.w)}px`;
  el.style.height = `${Math.max(0, r.h)}px`;
}

function drawTreemap(host: HTMLElement, usage: Usage, models: Model[]): void {
  const W = host.clientWidth;
  const H = host.clientHeight;
  host.replaceChildren();
  const kinds = usage.kinds ?? [];
  if (!kinds.length) {
    host.append(h("div", { class: "sdp-tm-empty" }, "The store holds no models yet."));
    return;
  }
  if (W < 20 || H < 20) return;
  for (const { d: kind, r } of squarify(kinds.map((k) => ({ v: k.bytes, d: k })), { x: 0, y: 0, w: W, h: H })) {
    const color = colorOf(kind.id);
    const box = h("div", {
      class: "sdp-tm-kind", "data-kind": kind.id,
      title: `${kind.label}: ${humanBytes(kind.bytes)} in ${kind.files} file(s)`,
    });
    box.style.setProperty("--kc", color);
    place(box, r);
    host.append(box);
    const head = r.h > 44 && r.w > 56 ? 20 : 0;
    if (head) box.append(h("div", { class: "sdp-tm-head" }, h("b", {}, kind.label), " ", humanBytes(kind.bytes)));
    const inner = { x: 2, y: head + 2, w: r.w - 4, h: r.h - head - 4 };
    const cells: { v: number; d: { name: string; tip: string; rest: boolean } }[] = models
      .filter((m) => m.k === kind.id)
      .map((m) => ({ v: m.s, d: { name: base(m.p), rest: false, tip: `${m.p}\n${humanBytes(m.s)} · ${kind.label}${m.b ? ` · ${m.b}` : ""}${m.d ? " · duplicate" : ""}` } }));
    if (kind.rest > 0) {
      const n = kind.rest_files;
      const what = n > 0 ? `${n} smaller file(s) + sidecars` : "sidecars (metadata, previews)";
      cells.push({ v: kind.rest, d: { name: what, rest: true, tip: `${what}\n${humanBytes(kind.rest)}` } });
    }
    for (const { d, r: cr } of squarify(cells, inner)) {
      const cell = h("div", { class: `sdp-tm-cell${d.rest ? " sdp-tm-rest" : ""}`, title: d.tip });
      place(cell, cr);
      if (cr.w > 64 && cr.h > 30) {
        cell.append(h("span", { class: "sdp-tm-name" }, d.name),
          h("span", { class: "sdp-tm-size" }, d.tip.split("\n")[1]?.split(" · ")[0] ?? ""));
      }
      box.append(cell);
    }
  }
}

function diskBar(label: string, d: Disk, mine: number | null): HTMLElement {
  const total = d.total || 1;
  const pct = (n: number) => `${Math.max(0, Math.min(100, (100 * n) / total))}%`;
  // What is not free, from total and free (what the label says): `used` leaves out the
  // blocks reserved for root and, on overlay/quota file systems, other tenants' files, so a
  // bar drawn from it showed 86 % free on a disk with 66 of 252 GiB free.
  const taken = Math.max(0, d.total - d.free);
  const other = mine == null ? taken : Math.max(0, taken - mine);
  const bar = h("div", { class: "sdp-disk-bar" });
  if (mine != null) {
    const seg = h("span", { class: "sdp-disk-mine", title: `sdpanel store: ${humanBytes(mine)}` });
    seg.style.width = pct(mine);
    bar.append(seg);
  }
  const used = h("span", { class: "sdp-disk-used", title: `other files: ${humanBytes(other)}` });
  used.style.width = pct(other);
  bar.append(used);
  const low = d.free / total < 0.1;
  return h("div", { class: `sdp-disk${low ? " sdp-low" : ""}`, "data-disk": label, title: d.path },
    h("div", { class: "sdp-disk-top" },
      h("span", { class: "sdp-disk-label" }, label),
      h("span", { class: "sdp-mono sdp-muted sdp-disk-path" }, d.path),
      h("span", { class: "sdp-disk-free" }, `${humanBytes(d.free)} free of ${humanBytes(d.total)}`)),
    bar,
    h("div", { class: "sdp-disk-legend" },
      mine != null ? h("span", {}, h("i", { class: "sdp-sw sdp-disk-mine" }), `store ${humanBytes(mine)}`) : null,
      h("span", {}, h("i", { class: "sdp-sw sdp-disk-used" }), `other ${humanBytes(other)}`),
      h("span", {}, h("i", { class: "sdp-sw sdp-disk-freesw" }), `free ${humanBytes(d.free)}`)));
}

type SortKey = "name" | "size" | "kind" | "base" | "date" | "webuis" | "dup";
const COLUMNS: [SortKey, string][] = [["name", "Name"], ["size", "Size"], ["kind", "Kind"], ["base", "Base model"],
  ["date", "Date"], ["webuis", "Linked in"], ["dup", "Dup"]];
const sortVal = (m: Model, k: SortKey): string | number =>
  k === "name" ? base(m.p).toLowerCase() : k === "size" ? m.s : k === "kind" ? m.k : k === "base" ? m.b.toLowerCase()
    : k === "date" ? m.t : k === "webuis" ? m.w.join(",") : m.d ? 1 : 0;

function render({ model, el, act }: TabContext): () => void {
  const sidebar = Boolean(el.closest(".sdp-sidebar"));
  let sortKey: SortKey = "size";
  let sortDir = -1;
  const selected = new Set<string>();
  let lastAction: [string, Record<string, unknown>] = ["storage.refresh", {}];
  const send = (action: string, payload: Record<string, unknown> = {}) => {
    lastAction = [action, payload];
    act(action, payload);
  };

  // ---- skeleton ----
  const summary = h("div", { class: "sdp-st-summary" });
  const busy = h("span", { class: "sdp-st-busy" });
  const refresh = h("button", { class: "sdp-btn", type: "button", "data-act": "refresh" }, "↻ Refresh");
  refresh.addEventListener("click", () => send("storage.refresh"));
  const errorBox = h("div", { class: "sdp-st-error", hidden: true });
  const disks = h("div", { class: "sdp-st-disks" });
  const tm = h("div", { class: "sdp-treemap" });
  tm.style.height = sidebar ? "220px" : "300px";
  const extras = h("div", { class: "sdp-st-extras" });
  const filter = h("input", { class: "sdp-input sdp-st-filter", type: "search", placeholder: "Filter by name, kind, base model…" });
  const table = h("table", { class: "sdp-st-table" });
  const listNote = h("div", { class: "sdp-muted sdp-st-note" });
  const form = h("div", { class: "sdp-st-form" });
  const planBox = h("div", { class: "sdp-st-plan", hidden: true });
  const resultBox = h("div", { class: "sdp-st-result", hidden: true });

  el.append(
    h("div", { class: "sdp-section sdp-st-bar" }, summary, busy, refresh),
    errorBox,
    h("div", { class: "sdp-section" }, h("h3", {}, "Disk"), disks),
    h("div", { class: "sdp-section" }, h("h3", {}, "Store by kind → model"), tm, extras),
    h("div", { class: "sdp-section" }, h("h3", {}, "Cleaner"), form, planBox, resultBox),
    h("details", { class: "sdp-section sdp-details", open: !sidebar },
      h("summary", {}, "Model files"), h("div", { class: "sdp-st-listbar" }, filter, listNote),
      h("div", { class: "sdp-st-scroll" }, table)),
  );

  // ---- cleaner form (values live here until Preview) ----
  const kindBox = h("div", { class: "sdp-st-kinds" });
  const larger = h("input", { class: "sdp-input", type: "number", min: "0", step: "any", placeholder: "MiB", "data-field": "larger_than_mb" });
  const older = h("input", { class: "sdp-input", type: "number", min: "0", step: "any", placeholder: "days", "data-field": "older_than_days" });
  const check = (field: string, label: string, tip: string) => {
    const cb = h("input", { type: "checkbox", class: "sdp-check", "data-field": field });
    return [cb, h("label", { class: "sdp-st-opt", title: tip }, cb, label)] as const;
  };
  const [unused, unusedL] = check("unused", "Unused", "Models of a kind no linked WebUI sees");
  const [leftovers, leftoversL] = check("leftovers", "Leftovers", ".part/.aria2 files untouched for 10 minutes, broken links");
  const [pip, pipL] = check("cache-pip", "pip cache", "");
  const [hf, hfL] = check("cache-huggingface", "HF cache", "");
  const selNote = h("span", { class: "sdp-muted sdp-st-selnote" });
  const preview = h("button", { class: "sdp-btn sdp-primary", type: "button", "data-act": "preview" }, "Preview");
  const kindRow = h("div", { class: "sdp-st-row", hidden: true }, h("span", { class: "sdp-st-lbl" }, "Kinds"), kindBox);
  form.append(
    kindRow, // shown once the store has models of some kind: a heading with nothing under it confused
    h("div", { class: "sdp-st-row" },
      h("label", { class: "sdp-st-num" }, "Larger than", larger, "MiB"),
      h("label", { class: "sdp-st-num" }, "Older than", older, "days"),
      unusedL, leftoversL, pipL, hfL),
    h("div", { class: "sdp-st-row" }, preview, selNote),
  );
  preview.addEventListener("click", () => {
    const kinds = [...kindBox.querySelectorAll<HTMLInputElement>("input:checked")].map((i) => i.value);
    const caches = [...(pip.checked ? ["pip"] : []), ...(hf.checked ? ["huggingface"] : [])];
    send("storage.preview", {
      kinds, larger_than_mb: larger.value, older_than_days: older.value, unused: unused.checked,
      leftovers: leftovers.checked, caches, files: [...selected],
    });
  });

  const drawSelNote = () => {
    selNote.textContent = selected.size ? `+ ${selected.size} file(s) ticked in the list` : "Tick files in the list to pick them one by one.";
  };

  // ---- drawing from traits ----
  const usage = () => (model.get("storage_usage") ?? {}) as Usage;
  const models = () => (model.get("storage_models") ?? []) as Model[];

  const drawUsage = () => {
    const u = usage();
    const ms = models();
    if (!u.store) {
      summary.replaceChildren(h("span", { class: "sdp-muted" }, "Reading the store…"));
      return;
    }
    const when = u.updated ? new Date(u.updated * 1000).toLocaleTimeString() : "";
    summary.replaceChildren(
      h("b", { "data-total": String(u.store_bytes ?? 0) }, humanBytes(u.store_bytes ?? 0)),
      ` in ${u.models_total ?? 0} model file(s)`,
      h("span", { class: "sdp-st-path" }, " · ", h("span", { class: "sdp-mono" }, u.store)),
      when ? h("span", { class: "sdp-muted" }, ` · ${when}`) : "",
    );
    const ds = u.disks ?? {};
    disks.replaceChildren(
      ...(ds.store ? [diskBar(ds.work ? "Store" : (u.work_dir ? "Store & work dir" : "Store"), ds.store, u.store_bytes ?? 0)] : []),
      ...(ds.work ? [diskBar("Work dir", ds.work, null)] : []),
    );
    drawTreemap(tm, u, ms);
    const chip = (label: string, value: string, tip = "") => h("span", { class: "sdp-st-chip", title: tip }, h("span", { class: "sdp-muted" }, label), " ", value);
    const parts = u.partials ?? { count: 0, bytes: 0 };
    extras.replaceChildren(
      chip("outputs", humanBytes(u.outputs ?? 0)),
      chip(".sdpanel", humanBytes(u.state ?? 0), "settings, journals, logs, the hash index"),
      ...Object.entries(u.caches ?? {}).map(([n, b]) => chip(`${n} cache`, humanBytes(b))),
      chip("leftovers", `${parts.count} · ${humanBytes(parts.bytes)}`, ".part / .aria2 download leftovers"),
      ...(u.duplicates ? [chip("duplicates", String(u.duplicates), "same content as another file (sha256)")] : []),
      ...(u.webuis ?? []).map((w) => chip(w.label, `${humanBytes(w.install)} + venv ${humanBytes(w.venv)}`, w.dir)),
    );
    // Kind choices: every kind that has something, keeping what was ticked.
    const ticked = new Set([...kindBox.querySelectorAll<HTMLInputElement>("input:checked")].map((i) => i.value));
    kindBox.replaceChildren(...(u.kinds ?? []).map((k) => {
      const cb = h("input", { type: "checkbox", class: "sdp-check", value: k.id });
      cb.checked = ticked.has(k.id);
      const sw = h("i", { class: "sdp-sw" });
      sw.style.background = colorOf(k.id);
      return h("label", { class: "sdp-st-opt", "data-kind": k.id }, cb, sw, k.label);
    }));
    kindRow.hidden = !kindBox.childElementCount;
    drawList();
  };

  const drawList = () => {
    const u = usage();
    const labels = new Map((u.kinds ?? []).map((k) => [k.id, k.label]));
    const q = filter.value.trim().toLowerCase();
    const rows = models()
      .filter((m) => !q || `${m.p} ${m.k} ${m.b}`.toLowerCase().includes(q))
      .sort((a, b) => {
        const x = sortVal(a, sortKey);
        const y = sortVal(b, sortKey);
        return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
      });
    const head = h("tr", {}, h("th", { class: "sdp-st-cb" }),
      ...COLUMNS.map(([k, label]) => {
        const th = h("th", { "data-sort": k, class: k === sortKey ? "sdp-sorted" : "" },
          label, k === sortKey ? (sortDir < 0 ? " ▾" : " ▴") : "");
        th.addEventListener("click", () => {
          sortDir = k === sortKey ? -sortDir : k === "size" || k === "date" ? -1 : 1;
          sortKey = k;
          drawList();
        });
        return th;
      }));
    const empty = rows.length ? [] : [h("tr", { class: "sdp-st-empty" }, h("td", { colspan: String(COLUMNS.length + 1) },
      models().length ? "No model file matches the filter." : "No model files yet: download some in the Models tab."))];
    table.replaceChildren(h("thead", {}, head), h("tbody", {}, ...empty, ...rows.map((m) => {
      const cb = h("input", { type: "checkbox", class: "sdp-check" });
      cb.checked = selected.has(m.p);
      cb.addEventListener("change", () => {
        if (cb.checked) selected.add(m.p);
        else selected.delete(m.p);
        drawSelNote();
      });
      const sw = h("i", { class: "sdp-sw" });
      sw.style.background = colorOf(m.k);
      return h("tr", { "data-path": m.p },
        h("td", { class: "sdp-st-cb" }, cb),
        h("td", { class: "sdp-st-name", title: m.p }, base(m.p)),
        h("td", { class: "sdp-num", "data-bytes": String(m.s) }, humanBytes(m.s)),
        h("td", {}, sw, labels.get(m.k) ?? m.k),
        h("td", {}, m.b || h("span", { class: "sdp-muted" }, "—")),
        h("td", { class: "sdp-num" }, fmtDate(m.t)),
        h("td", {}, m.w.length ? m.w.join(", ") : h("span", { class: "sdp-muted" }, "none")),
        h("td", {}, m.d ? h("span", { class: "sdp-badge sdp-dup", title: "Same content as another file: `sdpanel storage dedup` keeps one copy" }, "dup") : ""),
      );
    })));
    const total = u.models_total ?? 0;
    listNote.textContent = total > (u.models_shown ?? 0) ? `largest ${u.models_shown} of ${total} shown` : `${rows.length} of ${total}`;
    // Drop ticks of files that are gone (after a clean).
    const present = new Set(models().map((m) => m.p));
    for (const p of [...selected]) if (!present.has(p)) selected.delete(p);
    drawSelNote();
  };
  filter.addEventListener("input", drawList);

  const drawPlan = () => {
    const plan = (model.get("storage_plan") ?? {}) as Plan;
    planBox.hidden = plan.id == null;
    if (plan.id == null) return;
    const items = plan.items ?? [];
    const count = plan.count ?? items.length;
    const del = h("button", { class: "sdp-btn sdp-danger", type: "button", "data-act": "apply", disabled: count === 0 },
      `Delete ${count} file${count === 1 ? "" : "s"} (${humanBytes(plan.bytes ?? 0)})`);
    del.addEventListener("click", () => {
      del.disabled = true;
      send("storage.apply", { id: plan.id });
    });
    const cancel = h("button", { class: "sdp-btn", type: "button", "data-act": "cancel" }, "Cancel");
    cancel.addEventListener("click", () => send("storage.cancel"));
    planBox.replaceChildren(
      h("div", { class: "sdp-st-plan-head" },
        h("span", {}, count ? "Would delete " : "Nothing matches: ", h("b", {}, String(count)), " item(s), freeing ",
          h("b", { class: "sdp-st-plan-bytes", "data-bytes": String(plan.bytes ?? 0) }, humanBytes(plan.bytes ?? 0))),
        h("span", { class: "sdp-st-grow" }), cancel, del),
      h("div", { class: "sdp-st-scroll sdp-st-plan-list" }, h("table", { class: "sdp-st-table" }, h("tbody", {},
        ...items.map((i) => h("tr", {},
          h("td", { class: "sdp-num" }, i.l ? "link" : humanBytes(i.s)),
          h("td", { class: "sdp-mono" }, i.p),
          h("td", { class: "sdp-muted" }, i.r)))))),
      ...(count > items.length ? [h("div", { class: "sdp-muted" }, `… and ${count - items.length} more`)] : []),
      ...(plan.errors ?? []).map((e) => h("div", { class: "sdp-error-text" }, e)),
    );
  };

  const drawResult = () => {
    const r = (model.get("storage_result") ?? {}) as Result;
    resultBox.hidden = r.deleted == null;
    if (r.deleted == null) return;
    resultBox.replaceChildren(
      h("div", {}, "✓ Deleted ", h("b", {}, String(r.deleted)), " item(s), freed ",
        h("b", { class: "sdp-st-freed", "data-bytes": String(r.bytes_freed ?? 0), title: `${r.bytes_freed} bytes` }, humanBytes(r.bytes_freed ?? 0)),
        h("span", { class: "sdp-muted" }, ` · store now ${humanBytes(usage().store_bytes ?? 0)}`)),
      ...(r.skipped ?? []).map((s) => h("div", { class: "sdp-muted" }, `skipped ${s}`)),
      ...(r.errors ?? []).map((e) => h("div", { class: "sdp-error-text" }, e)),
    );
  };

  const drawStatus = () => {
    const s = (model.get("storage_status") ?? {}) as Status;
    busy.textContent = s.busy ? `${s.busy}…` : "";
    refresh.disabled = Boolean(s.busy);
    preview.disabled = Boolean(s.busy);
    errorBox.hidden = !s.error;
    if (s.error) {
      const retry = h("button", { class: "sdp-btn", type: "button", "data-act": "retry" }, "Retry");
      retry.addEventListener("click", () => (s.retry ? send(s.retry) : send(...lastAction)));
      errorBox.replaceChildren(h("span", {}, s.error), retry);
    }
  };

  drawUsage();
  drawPlan();
  drawResult();
  drawStatus();
  const ro = new ResizeObserver(() => drawTreemap(tm, usage(), models()));
  ro.observe(tm);
  const listeners: [string, () => void][] = [
    ["change:storage_usage", drawUsage],
    ["change:storage_usage", drawResult], // "store now …" after a clean
    ["change:storage_models", drawUsage],
    ["change:storage_plan", drawPlan],
    ["change:storage_result", drawResult],
    ["change:storage_status", drawStatus],
  ];
  for (const [ev, fn] of listeners) model.on(ev, fn);
  return () => {
    ro.disconnect();
    for (const [ev, fn] of listeners) model.off(ev, fn);
  };
}

export const storageTab: TabModule = { render };
