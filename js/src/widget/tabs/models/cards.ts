// Result cards. Thumbnails are plain <img> elements the browser loads straight from the
// image URL (lazily, no referrer); they never pass through traits. NSFW ones are blurred.
import { humanBytes } from "../../../common/system";
import { h } from "../../dom";
import { badgeOf, compact, type Card, type Meta } from "./types";

export interface CardHooks {
  isSelected(key: string): boolean;
  toggle(card: Card): void;
  open(card: Card): void;
  meta(): Meta;
}

// Cards without a preview image (presets, links) name their kind in words: two-letter
// tiles ("CK", "CN") told a newcomer nothing.
const KIND_LABEL: Record<string, string> = {
  checkpoints: "Checkpoint", loras: "LoRA", vae: "VAE", embeddings: "Embedding", controlnet: "ControlNet",
  upscalers: "Upscaler", adetailer: "ADetailer", sam: "Segment Anything", text_encoders: "Text encoder", other: "Model",
};

/** Cards whose NSFW preview the user chose to see unblurred (this page's lifetime only:
 *  a reload blurs everything again). Shared with the details view. */
export const revealed = new Set<string>();

/** The "NSFW" tag doubles as the reveal switch of one card's (or the details') preview. */
export function nsfwToggle(key: string, frame: () => HTMLElement | null, inline = false): HTMLElement {
  const tag = h("button", {
    class: `sdp-md-nsfw-tag${inline ? " sdp-md-inline" : ""}`, type: "button", "data-act": "reveal",
  }, "NSFW");
  const sync = () => {
    const on = revealed.has(key);
    frame()?.classList.toggle("sdp-md-revealed", on);
    tag.title = on ? "Blur this preview again" : "Show this preview unblurred";
    tag.setAttribute("aria-pressed", String(on));
  };
  tag.addEventListener("click", (ev) => {
    ev.stopPropagation();
    if (revealed.has(key)) revealed.delete(key);
    else revealed.add(key);
    sync();
  });
  queueMicrotask(sync);
  return tag;
}

export function badge(state: string): HTMLElement | null {
  if (state === "installed") return h("span", { class: "sdp-md-badge sdp-md-installed", title: "Already in the store" }, "Installed");
  if (state === "update") return h("span", { class: "sdp-md-badge sdp-md-update", title: "An older version is installed" }, "Update");
  return null;
}

export function renderCard(card: Card, hooks: CardHooks): HTMLElement {
  const selected = hooks.isSelected(card.k);
  const thumb = h("div", { class: "sdp-md-thumb" });
  if (card.img) {
    const img = h("img", { src: card.img, alt: "", loading: "lazy", decoding: "async", referrerpolicy: "no-referrer" });
    img.addEventListener("error", () => img.remove(), { once: true });
    thumb.append(img);
  }
  thumb.append(h("span", { class: "sdp-md-ph" }, KIND_LABEL[card.kind] ?? "Model"));
  const check = h("input", { type: "checkbox", class: "sdp-md-check", title: "Select for download", "aria-label": `Select ${card.n}` });
  check.checked = selected;
  check.addEventListener("click", (ev) => {
    ev.stopPropagation();
    hooks.toggle(card);
  });
  const stats: string[] = [];
  if (card.dl != null) stats.push(`↓ ${compact(card.dl)}`);
  if (card.lk != null) stats.push(`♥ ${compact(card.lk)}`);
  const el: HTMLElement = h("article", {
    class: `sdp-md-card${selected ? " sdp-md-sel" : ""}${card.x ? " sdp-md-nsfw" : ""}${card.x && revealed.has(card.k) ? " sdp-md-revealed" : ""}`,
    "data-key": card.k,
    tabindex: "0",
    title: card.src === "civitai" ? `${card.n}: open details` : `${card.n}${card.vn ? ` (${card.vn})` : ""}: click to select for download`,
  },
  thumb,
  check,
  badge(badgeOf(card, hooks.meta())),
  card.x ? nsfwToggle(card.k, () => el) : null,
  h("div", { class: "sdp-md-info" },
    h("div", { class: "sdp-md-name", title: card.n }, card.n),
    h("div", { class: "sdp-md-by" }, card.c ? (card.src === "civitai" ? `@${card.c}` : card.c) : "", card.vn ? h("span", { class: "sdp-md-ver" }, card.vn) : null),
    h("div", { class: "sdp-md-meta" },
      card.b ? h("span", { class: "sdp-md-base" }, card.b) : h("span", { class: "sdp-md-base sdp-md-dim" }, card.t || card.kind),
      h("span", { class: "sdp-md-size", title: card.s ? "" : "The source does not publish the size: it shows once the download starts" }, card.s ? humanBytes(card.s) : "size unknown")),
    stats.length ? h("div", { class: "sdp-md-stats" }, stats.join("  ")) : null));
  const activate = () => (card.src === "civitai" ? hooks.open(card) : hooks.toggle(card));
  el.addEventListener("click", activate);
  el.addEventListener("keydown", (ev) => {
    const key = (ev as KeyboardEvent).key;
    if (key === "Enter") activate();
    else if (key === " ") {
      ev.preventDefault();
      hooks.toggle(card);
    }
  });
  return el;
}

/** Re-mark selection on already rendered cards (no rebuild: images stay loaded). */
export function markSelection(grid: HTMLElement, isSelected: (key: string) => boolean): void {
  for (const el of Array.from(grid.children) as HTMLElement[]) {
    const on = isSelected(el.dataset.key ?? "");
    el.classList.toggle("sdp-md-sel", on);
    const box = el.querySelector<HTMLInputElement>(".sdp-md-check");
    if (box) box.checked = on;
  }
}
