// Models tab: sub-tabs per kind (+ Presets, Hugging Face), a search box that also takes
// #tag, @creator and pasted links, filters, infinite scroll by cursor, details, and one
// selection across sub-tabs and pages that goes to the download queue.
// Python owns results, errors and free space; the browser owns filters and the selection
// (UI-owned traits) and sends intents: models.search / more / details / download / retry.
import { humanBytes } from "../../common/system";
import { h } from "../dom";
import type { TabContext, TabModule } from "../types";
import { markSelection, renderCard, type CardHooks } from "./models/cards";
import { renderDetails, type DetailsTrait } from "./models/details";
import { addPage, resultsOf, type Card, type Filters, type Meta, type Page, type SelEntry, type State } from "./models/types";

interface Have { k: string; n: string; message: string; path: string }
import "./models.css";

const DEFAULT_FILTERS: Filters = { sub: "checkpoints", query: "", base_models: [], sort: "Highest Rated", period: "AllTime", nsfw: false };

function render({ model, el, act }: TabContext): () => void {
  const meta = (): Meta => (model.get("models_meta") ?? {}) as Meta;
  const state = (): State => (model.get("models_state") ?? {}) as State;
  const filters = (): Filters => ({ ...DEFAULT_FILTERS, nsfw: Boolean(meta().nsfw), ...((model.get("models_filters") ?? {}) as Partial<Filters>) });
  const selection = (): SelEntry[] => (model.get("models_selection") ?? []) as SelEntry[];
  const isSelected = (key: string) => selection().some((s) => s.k === key);
  const setSelection = (next: SelEntry[]) => {
    model.set("models_selection", next);
    model.save_changes();
  };
  const toggle = (entry: SelEntry) => {
    const cur = selection();
    setSelection(cur.some((s) => s.k === entry.k) ? cur.filter((s) => s.k !== entry.k) : [...cur, entry]);
  };
  // `auto`: the search the tab starts by itself on first open. If it fails (offline) the
  // user did nothing wrong: a calm notice with Retry and the offline presets, not an alarm.
  const search = (change: Partial<Filters> = {}, auto = false) => {
    const f = { ...filters(), ...change };
    model.set("models_filters", f);
    model.save_changes();
    act("models.search", { filters: f, auto });
  };
  // CivitAI kinds share a query; Presets filter by name; Hugging Face takes a repo id. A
  // query typed for one family means nothing to another, so it stays behind on a switch.
  const family = (sub: string) => (sub === "presets" || sub === "hf" ? sub : "civitai");
  const PLACEHOLDER: Record<string, string> = {
    civitai: "Search models, #tag, @creator, or paste a link",
    presets: "Filter presets by name",
    hf: "Hugging Face repo id (owner/name) or a file link",
  };

  // ---- layout ------------------------------------------------------------------------
  const subtabs = h("div", { class: "sdp-md-subtabs", role: "tablist" });
  const input = h("input", { class: "sdp-input sdp-md-q", type: "search", placeholder: "Search models, #tag, @creator, or paste a link", "aria-label": "Search models" });
  const go = h("button", { class: "sdp-btn sdp-md-go", type: "button" }, "Search");
  const baseBox = h("details", { class: "sdp-md-bases" });
  const sort = h("select", { class: "sdp-input sdp-md-sort", "aria-label": "Sort" });
  const period = h("select", { class: "sdp-input sdp-md-period", "aria-label": "Period" });
  const nsfw = h("input", { type: "checkbox", class: "sdp-md-nsfw-box" });
  const updates = h("button", { class: "sdp-btn sdp-md-updates", type: "button", title: "Installed CivitAI models that have a newer version",
    onclick: () => act("models.updates") }, "Updates");
  const status = h("div", { class: "sdp-md-status", "aria-live": "polite" });
  const grid = h("div", { class: "sdp-md-grid" });
  const sentinel = h("div", { class: "sdp-md-sentinel" });
  const results = h("div", { class: "sdp-md-results" }, grid, sentinel);
  const details = h("div", { class: "sdp-md-details", hidden: true });
  const selBar = h("div", { class: "sdp-md-selbar" });
  const flash = h("div", { class: "sdp-md-flash", hidden: true, "aria-live": "polite" });
  const root = h("div", { class: "sdp-md" },
    subtabs,
    h("div", { class: "sdp-md-filters" },
      h("div", { class: "sdp-md-searchrow" }, input, go),
      baseBox, sort, period,
      h("label", { class: "sdp-md-toggle", title: "Show NSFW models (their thumbnails stay blurred)" }, nsfw, "NSFW"),
      updates),
    // The Download bar sits above the cards: in view however far the grid scrolls.
    status, flash, selBar, h("div", { class: "sdp-md-stage" }, results, details));
  el.append(root);

  go.addEventListener("click", () => search({ query: input.value.trim() }));
  input.addEventListener("keydown", (ev) => {
    if ((ev as KeyboardEvent).key === "Enter") search({ query: input.value.trim() });
  });
  // A pasted link resolves at once: no need to press Enter.
  input.addEventListener("paste", () => setTimeout(() => {
    const q = input.value.trim();
    if (/^(https?:\/\/|urn:air:|hf:\/\/)/i.test(q)) search({ query: q });
  }, 0));
  sort.addEventListener("change", () => search({ sort: sort.value }));
  period.addEventListener("change", () => search({ period: period.value }));
  nsfw.addEventListener("change", () => search({ nsfw: nsfw.checked }));

  // ---- filters and sub-tabs ---------------------------------------------------------
  const drawFilters = () => {
    const m = meta();
    const f = filters();
    const counts = new Map<string, number>();
    for (const s of selection()) counts.set(s.sub, (counts.get(s.sub) ?? 0) + 1);
    subtabs.replaceChildren(...(m.subtabs ?? []).map((t) => h("button", {
      class: `sdp-md-subtab${t.id === f.sub ? " sdp-md-on" : ""}${t.id === "presets" ? " sdp-md-gap" : ""}`,
      type: "button", role: "tab", "data-sub": t.id, "aria-selected": t.id === f.sub ? "true" : "false",
      onclick: () => t.id !== filters().sub
        && search({ sub: t.id, ...(family(t.id) !== family(filters().sub) ? { query: "" } : {}) }),
    }, t.label, counts.get(t.id) ? h("span", { class: "sdp-md-count" }, String(counts.get(t.id))) : null)));
    if (document.activeElement !== input) input.value = f.query;
    input.placeholder = PLACEHOLDER[family(f.sub)];
    input.setAttribute("aria-label", PLACEHOLDER[family(f.sub)]);
    const fill = (sel: HTMLSelectElement, values: string[], cur: string) => {
      sel.replaceChildren(...values.map((v) => h("option", { value: v }, v)));
      sel.value = cur;
    };
    fill(sort, m.sorts ?? [], f.sort);
    fill(period, m.periods ?? [], f.period);
    nsfw.checked = f.nsfw;
    const civitai = f.sub !== "hf";
    sort.hidden = period.hidden = nsfw.parentElement!.hidden = !civitai || f.sub === "presets";
    const wasOpen = baseBox.open;
    const bases = m.base_models ?? [];
    baseBox.replaceChildren(
      h("summary", { class: "sdp-btn" }, f.base_models.length ? `Base: ${f.base_models.join(", ")}` : "All base models"),
      h("div", { class: "sdp-md-basemenu" }, ...(bases.length ? bases : f.base_models).map((b) => {
        const box = h("input", { type: "checkbox", value: b, "data-base": b });
        box.checked = f.base_models.includes(b);
        box.addEventListener("change", () => {
          const cur = filters().base_models.filter((x) => x !== b);
          search({ base_models: box.checked ? [...cur, b] : cur });
        });
        return h("label", {}, box, b);
      })));
    baseBox.open = wasOpen;
    baseBox.hidden = f.sub === "hf";
  };

  // ---- results ------------------------------------------------------------------------
  const store = resultsOf(model);
  let rendered = { seq: -1, pages: 0 };
  let openId: number | null = null;
  let openVersion: number | null = null;
  const hooks: CardHooks = {
    isSelected,
    meta,
    toggle: (c: Card) => toggle({ k: c.k, src: c.src, n: c.n, s: c.s, kind: c.kind, sub: filters().sub, id: c.id, v: c.v, f: c.f }),
    open: (c: Card) => {
      openId = c.id ?? null;
      openVersion = c.v ?? null;
      details.hidden = false;
      results.hidden = true;
      drawDetails();
      act("models.details", { id: c.id });
    },
  };
  const drawResults = () => {
    if (rendered.seq !== store.seq) {
      grid.replaceChildren();
      results.scrollTop = 0;
      rendered = { seq: store.seq, pages: 0 };
    }
    const frag = document.createDocumentFragment();
    for (; rendered.pages < store.pages.length; rendered.pages++) {
      for (const card of store.pages[rendered.pages]) frag.append(renderCard(card, hooks));
    }
    if (frag.childNodes.length) grid.append(frag);
    grid.dataset.cards = String(grid.childElementCount);
    grid.dataset.pages = String(rendered.pages);
    drawStatus();
    requestAnimationFrame(checkMore);
  };
  const onPage = () => {
    const page = model.get("models_page") as Page | undefined;
    if (!page || page.seq == null) return;
    if (addPage(store, page)) drawResults();
    else act("models.replay");
  };
  let flashTimer = 0;
  // The store already has these (same sha256 / same CivitAI version): link or download anyway.
  const haveNotice = (have: Have[]) => {
    const keys = have.map((x) => x.k);
    const rows = have.map((x) => h("div", { class: "sdp-md-have", "data-key": x.k },
      h("span", {}, x.message),
      h("button", { class: "sdp-btn sdp-md-primary sdp-md-link", type: "button", onclick: () => act("models.link", { keys: [x.k] }) }, "Link instead"),
      h("button", { class: "sdp-btn sdp-md-anyway", type: "button",
        onclick: () => act("models.download", { selection: selection().filter((s) => s.k === x.k), force: true }) }, "Download anyway")));
    if (have.length > 1) {
      rows.push(h("div", { class: "sdp-md-have" }, h("span", {}, `${have.length} files are already in the store.`),
        h("button", { class: "sdp-btn sdp-md-primary", type: "button", onclick: () => act("models.link", { keys }) }, "Link all")));
    }
    return rows;
  };
  const onCue = (msg: { cue?: string; seq?: number; pages?: Card[][]; keys?: string[]; message?: string; problems?: string[]; have?: Have[] }) => {
    if (msg?.cue === "models.replay" && msg.pages) {
      store.seq = msg.seq ?? -1;
      store.pages = msg.pages;
      rendered = { seq: -2, pages: 0 };
      drawResults();
    } else if (msg?.cue === "models.sent" && msg.keys) {
      const sent = new Set(msg.keys);
      if (sent.size) setSelection(selection().filter((s) => !sent.has(s.k)));
      flash.replaceChildren(
        ...(msg.message ? [h("div", { class: "sdp-md-ok" }, msg.message)] : []),
        ...(msg.problems ?? []).map((p) => h("div", { class: "sdp-md-error" }, p)),
        ...haveNotice(msg.have ?? []));
      flash.hidden = !flash.childElementCount;
      clearTimeout(flashTimer);
      // A question (link or download anyway?) stays until answered.
      if (!msg.have?.length) flashTimer = window.setTimeout(() => (flash.hidden = true), 10_000);
    }
  };

  // Infinite scroll: the sentinel under the grid asks for the next cursor page.
  const wantMore = () => {
    const s = state();
    return s.more && s.status === "ready" && !results.hidden && s.seq === store.seq;
  };
  const checkMore = () => {
    if (!wantMore()) return;
    const box = results.getBoundingClientRect();
    const sen = sentinel.getBoundingClientRect();
    if (box.height > 0 && sen.top < box.bottom + 600) act("models.more", { seq: state().seq });
  };
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && wantMore()) act("models.more", { seq: state().seq });
  }, { root: results, rootMargin: "0px 0px 600px 0px" });
  observer.observe(sentinel);

  const drawStatus = () => {
    const s = state();
    const f = filters();
    root.dataset.status = s.status ?? "idle";
    sentinel.className = `sdp-md-sentinel${s.status === "loading" && s.op === "more" ? " sdp-md-spin" : ""}`;
    sentinel.textContent = s.status === "loading" && s.op === "more" ? "Loading more…" : s.more ? "" : store.pages.length > 1 ? "End of results" : "";
    if (s.status === "error") {
      const offlineStart = s.auto && f.sub !== "presets";
      status.replaceChildren(h("div", offlineStart ? { class: "sdp-md-notice" } : { class: "sdp-md-error", role: "alert" },
        h("span", {}, s.error ?? "Something went wrong."),
        h("button", { class: "sdp-btn sdp-md-retry", type: "button", onclick: () => act("models.retry") }, "Retry"),
        offlineStart ? h("button", { class: "sdp-btn", type: "button", "data-act": "presets", onclick: () => search({ sub: "presets", query: "" }) }, "Show presets (offline)") : null));
      return;
    }
    if (s.status === "loading" && s.op === "search") {
      status.replaceChildren(h("span", { class: "sdp-md-spin" }, "Searching…"));
      return;
    }
    const count = grid.childElementCount;
    const text = s.status === "ready" && count === 0
      ? (s.note && f.sub === "hf" ? s.note : "No models match these filters.")
      : s.status === "ready" ? `${count}${s.more ? "+" : ""} result${count === 1 ? "" : "s"}` : "";
    status.replaceChildren(h("span", {}, text));
    if (s.note && count) status.append(h("span", { class: "sdp-md-note" }, s.note));
    const hidden = meta().hidden ?? 0;
    if (hidden && f.sub !== "hf" && f.sub !== "presets") {
      status.append(h("span", { class: "sdp-md-note sdp-md-hidden" }, `${hidden} hidden`,
        h("button", { class: "sdp-md-linkbtn", type: "button", title: "Show hidden creators and models again",
          onclick: () => act("models.hide", { undo: true }) }, "show")));
    }
  };

  // ---- details ------------------------------------------------------------------------
  const closeDetails = () => {
    openId = null;
    details.hidden = true;
    results.hidden = false;
    drawResultsSelection();
  };
  const drawDetails = () => {
    if (openId == null) return;
    const d = (model.get("models_details") ?? {}) as DetailsTrait;
    const shown: DetailsTrait = d.id === openId ? d : { status: "loading", id: openId };
    renderDetails(details, shown, {
      isSelected,
      close: closeDetails,
      retry: (id) => act("models.details", { id }),
      hide: (what) => {
        closeDetails();
        act("models.hide", what);
      },
      allVersions: (id, prefer) => act("models.all_versions", { id, prefer }),
      toggleFile: (m, v, file) => toggle({ k: file.k, src: "civitai", n: `${m.n} · ${file.n}`, s: file.s, kind: file.kind, sub: filters().sub, id: m.id, v: v.v, f: file.f }),
    }, openVersion, (v) => {
      openVersion = v;
      drawDetails();
    });
  };

  // ---- selection bar ---------------------------------------------------------------
  const drawResultsSelection = () => markSelection(grid, isSelected);
  const drawSelection = () => {
    const sel = selection();
    const total = sel.reduce((a, s) => a + (s.s ?? 0), 0);
    const unknown = sel.filter((s) => !s.s).length;
    const free = meta().free;
    const tooBig = free != null && total > free;
    selBar.hidden = sel.length === 0;
    const dl = h("button", { class: "sdp-btn sdp-md-primary sdp-md-download", type: "button", disabled: tooBig,
      title: tooBig ? "Not enough free space in the store for this selection" : "Send the selection to the download queue",
      onclick: () => act("models.download", { selection: selection() }) },
    `Download ${sel.length} (${humanBytes(total)}${unknown ? "+" : ""})`);
    const list = h("details", { class: "sdp-md-sellist" }, h("summary", {}, `${sel.length} selected`),
      h("ul", {}, ...sel.map((s) => h("li", {}, h("span", { class: "sdp-md-selname", title: s.n }, s.n),
        h("span", { class: "sdp-md-dim" }, `${s.sub} · ${s.s ? humanBytes(s.s) : "?"}`),
        h("button", { class: "sdp-md-x", type: "button", title: "Remove", onclick: () => toggle(s) }, "×")))));
    selBar.replaceChildren(list,
      h("span", { class: `sdp-md-space${tooBig ? " sdp-md-bad" : ""}` },
        `${humanBytes(total)}${unknown ? ` + ${unknown} of unknown size` : ""} · ${free != null ? `${humanBytes(free)} free` : "free space unknown"}`,
        tooBig ? " — not enough space" : ""),
      h("button", { class: "sdp-btn", type: "button", onclick: () => setSelection([]) }, "Clear"), dl);
    drawResultsSelection();
    if (!details.hidden) drawDetails();
  };

  const onMeta = () => {
    drawFilters();
    drawSelection();
    drawStatus();
  };
  const onSelection = () => {
    drawSelection();
    drawFilters();
  };
  const listeners: [string, (...a: any[]) => void][] = [
    ["change:models_meta", onMeta],
    ["change:models_filters", drawFilters],
    ["change:models_selection", onSelection],
    ["change:models_state", () => { drawStatus(); requestAnimationFrame(checkMore); }],
    ["change:models_page", onPage],
    ["change:models_details", drawDetails],
    ["msg:custom", onCue],
  ];
  for (const [ev, fn] of listeners) model.on(ev, fn);
  drawFilters();
  drawSelection();
  // First view of this panel: start with the default search. A later view (or a saved
  // notebook without a kernel) shows the page in the trait and asks for any earlier ones.
  const s = state();
  if (!s.status || s.status === "idle") search({}, true);
  else if (store.seq !== s.seq) onPage();
  else drawResults();
  drawStatus();
  return () => {
    observer.disconnect();
    for (const [ev, fn] of listeners) model.off(ev, fn);
    root.remove();
  };
}

export const modelsTab: TabModule = { render };
