// Shapes of the Models tab traits (sdpanel/panels/_models_tab.py, _models_cards.py) and the
// per-model results store shared by every view of one Panel (cell and sidebar).
import type { PanelModel } from "../../types";

/** A compact result card (short keys keep a 100-card page near 30 KB). */
export interface Card {
  k: string; // selection key: civitai:<version>:<file> | preset:<id> | hf:<repo>:<path> | link:<text>
  src: "civitai" | "preset" | "hf" | "link";
  id?: number; v?: number; f?: number; pid?: string; repo?: string; path?: string;
  n: string; c: string; b: string; t: string; vn?: string;
  s: number | null; img: string | null; x: boolean;
  dl?: number; lk?: number; st: string; kind: string;
}

/** One selected file (UI-owned trait `models_selection`). */
export interface SelEntry {
  k: string; src: string; n: string; s: number | null; kind: string; sub: string;
  id?: number; v?: number; f?: number;
}

export interface Filters {
  sub: string; query: string; base_models: string[]; sort: string; period: string; nsfw: boolean;
}

export interface Meta {
  subtabs?: { id: string; label: string }[];
  base_models?: string[]; sorts?: string[]; periods?: string[];
  nsfw?: boolean; free?: number | null; root?: string; page_size?: number;
  local?: { versions: number[]; models: number[] };
  hidden?: number; // creators + models hidden from results (kept in the store)
}

export interface State {
  status?: "idle" | "loading" | "ready" | "error";
  op?: string; error?: string; seq?: number; sub?: string; count?: number; more?: boolean; note?: string;
  auto?: boolean; // the search the tab started by itself on first open
}

export interface Page { seq: number; index: number; cards: Card[] }

/** Pages of the current search, per model: every view renders from the same store. */
export interface Results { seq: number; pages: Card[][] }
const stores = new WeakMap<PanelModel, Results>();

export function resultsOf(model: PanelModel): Results {
  let r = stores.get(model);
  if (!r) stores.set(model, (r = { seq: -1, pages: [] }));
  return r;
}

/** Add a page to the store; false when a page is missing (the view asks for a replay). */
export function addPage(r: Results, page: Page): boolean {
  if (page.index === 0 && page.seq !== r.seq) {
    r.seq = page.seq;
    r.pages = [page.cards];
    return true;
  }
  if (page.seq !== r.seq) return false;
  if (page.index < r.pages.length) return true; // another view already added it
  if (page.index > r.pages.length) return false;
  r.pages.push(page.cards);
  return true;
}

export function compact(n: number | undefined): string {
  if (n == null) return "0";
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(n >= 1e4 ? 0 : 1)}k`;
  return String(n);
}

export function badgeOf(card: { st: string; id?: number; v?: number }, meta: Meta): string {
  if (card.st) return card.st;
  const local = meta.local;
  if (!local || card.v == null) return "";
  if (local.versions.includes(card.v)) return "installed";
  if (card.id != null && local.models.includes(card.id)) return "update";
  return "";
}
