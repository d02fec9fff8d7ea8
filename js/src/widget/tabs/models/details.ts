// The details view of one CivitAI model: versions, their files (format, fp, size, each
// selectable), trained words and the description rebuilt from a whitelist (sanitize.ts).
import { humanBytes } from "../../../common/system";
import { h } from "../../dom";
import { badge, nsfwToggle, revealed } from "./cards";
import { sanitizeHtml } from "./sanitize";
import { compact } from "./types";

export interface DetailFile {
  k: string; f: number; n: string; type: string; format?: string; fp?: string; size?: string;
  s: number | null; primary: boolean; st: string; kind: string;
}
export interface DetailVersion {
  v: number; name: string; b: string; published: string; words: string[]; img: string | null; x: boolean;
  files: DetailFile[]; st: string;
}
export interface Details {
  id: number; n: string; t: string; c: string; tags: string[]; x: boolean; url: string; kind: string;
  stats: Record<string, number>; desc: string; desc_cut: boolean; versions: DetailVersion[];
}
export interface DetailsTrait { status?: string; id?: number; model?: Details; error?: string }

export interface DetailsHooks {
  isSelected(key: string): boolean;
  toggleFile(model: Details, version: DetailVersion, file: DetailFile): void;
  close(): void;
  retry(id: number): void;
  hide(what: { id?: number; name?: string; creator?: string }): void;
  allVersions(id: number, prefer: string): void;
}

// File preferences for "Download all versions" (sdpanel.sources.FilePrefs).
const PREFER: [string, string][] = [["fp16,pruned", "fp16 · pruned"], ["fp32,full", "fp32 · full"], ["", "primary files"]];

export function renderDetails(host: HTMLElement, d: DetailsTrait, hooks: DetailsHooks, version: number | null,
  pickVersion: (v: number) => void): void {
  const close = h("button", { class: "sdp-btn sdp-md-close", type: "button", title: "Back to results", onclick: () => hooks.close() }, "← Back");
  if (d.status === "loading" || !d.model) {
    const body = d.status === "error"
      ? h("div", { class: "sdp-md-error", role: "alert" }, h("span", {}, d.error ?? "Could not load the model."),
        h("button", { class: "sdp-btn", type: "button", onclick: () => d.id != null && hooks.retry(d.id) }, "Retry"))
      : h("div", { class: "sdp-md-loading" }, "Loading details…");
    host.replaceChildren(h("div", { class: "sdp-md-dhead" }, close), body);
    return;
  }
  const m = d.model;
  const current = m.versions.find((v) => v.v === version) ?? m.versions[0];
  const versions = h("div", { class: "sdp-md-vtabs", role: "tablist" },
    ...m.versions.map((v) => h("button", {
      class: `sdp-md-vtab${v === current ? " sdp-md-on" : ""}`, type: "button", role: "tab",
      onclick: () => pickVersion(v.v),
    }, v.name, v.st ? " ✓" : "")));
  const stats = m.stats ?? {};
  const head = h("div", { class: "sdp-md-dhead" }, close,
    h("div", { class: "sdp-md-dtitle" },
      h("h3", {}, m.n),
      h("div", { class: "sdp-md-by" }, `@${m.c} · ${m.t}`, m.x ? nsfwToggle(`model:${m.id}`, () => host.querySelector<HTMLElement>(".sdp-md-preview"), true) : null,
        `  ↓ ${compact(stats.downloadCount)}  ♥ ${compact(stats.thumbsUpCount)}`)),
    h("a", { class: "sdp-btn sdp-md-ext", href: m.url, target: "_blank", rel: "noopener noreferrer" }, "CivitAI ↗"));
  const prefer = h("select", { class: "sdp-input sdp-md-prefer", "aria-label": "File preference for all versions" },
    ...PREFER.map(([v, label]) => h("option", { value: v }, label)));
  const withFiles = m.versions.filter((v) => v.files.length).length;
  const actions = h("div", { class: "sdp-md-dactions" },
    h("button", { class: "sdp-btn sdp-md-allv", type: "button", disabled: withFiles === 0,
      title: "Queue one file of every version, picked by the preference",
      onclick: () => hooks.allVersions(m.id, prefer.value) }, `Download all ${withFiles} version${withFiles === 1 ? "" : "s"}`),
    prefer,
    h("span", { class: "sdp-md-grow" }),
    h("button", { class: "sdp-btn sdp-md-hide", type: "button", title: "Never show this model in results (every session)",
      onclick: () => hooks.hide({ id: m.id, name: m.n }) }, "Hide model"),
    m.c ? h("button", { class: "sdp-btn sdp-md-hide", type: "button", title: "Never show this creator's models (every session)",
      onclick: () => hooks.hide({ creator: m.c }) }, `Hide @${m.c}`) : null);
  const parts: (HTMLElement | null)[] = [head, actions, versions];
  if (current) {
    const preview = h("div", {
      class: `sdp-md-preview${current.x ? " sdp-md-nsfw" : ""}${current.x && revealed.has(`model:${m.id}`) ? " sdp-md-revealed" : ""}`,
    });
    if (current.x) {
      preview.title = "Click to show or blur this preview";
      preview.addEventListener("click", () => host.querySelector<HTMLElement>(".sdp-md-by [data-act=reveal]")?.click());
    }
    if (current.img) preview.append(h("img", { src: current.img, alt: "", loading: "lazy", referrerpolicy: "no-referrer" }));
    const files = h("table", { class: "sdp-md-files" },
      h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, "File"), h("th", {}, "Type"), h("th", {}, "Format"),
        h("th", {}, "fp"), h("th", {}, "Size"), h("th", {}, ""))),
      h("tbody", {}, ...current.files.map((f) => {
        const box = h("input", { type: "checkbox", class: "sdp-md-check", "data-key": f.k, "aria-label": `Select ${f.n}` });
        box.checked = hooks.isSelected(f.k);
        box.addEventListener("change", () => hooks.toggleFile(m, current, f));
        return h("tr", { class: hooks.isSelected(f.k) ? "sdp-md-sel" : "" },
          h("td", {}, box), h("td", { class: "sdp-md-fname" }, f.n, f.primary ? h("span", { class: "sdp-md-primary" }, "primary") : null),
          h("td", {}, f.type ?? ""), h("td", {}, f.format ?? ""), h("td", {}, f.fp ?? ""),
          h("td", { class: "sdp-md-num" }, f.s ? humanBytes(f.s) : "?"), h("td", {}, badge(f.st)));
      })));
    const words = current.words.length
      ? h("div", { class: "sdp-md-words" }, h("span", { class: "sdp-md-label" }, "Trained words"),
        ...current.words.map((w) => h("button", {
          class: "sdp-md-word", type: "button", title: "Copy",
          onclick: () => void navigator.clipboard?.writeText(w).catch(() => undefined),
        }, w)))
      : null;
    parts.push(h("div", { class: "sdp-md-dgrid" }, preview,
      h("div", { class: "sdp-md-dside" },
        h("div", { class: "sdp-md-facts" },
          h("span", {}, h("b", {}, "Base "), current.b || "—"),
          h("span", {}, h("b", {}, "Published "), current.published || "—"),
          h("span", {}, h("b", {}, "Kind "), m.kind)),
        files, words)));
  }
  if (m.tags.length) parts.push(h("div", { class: "sdp-md-tags" }, ...m.tags.map((t) => h("span", { class: "sdp-md-tag" }, `#${t}`))));
  const desc = h("div", { class: "sdp-md-desc" });
  desc.append(sanitizeHtml(m.desc));
  if (m.desc_cut) desc.append(h("p", { class: "sdp-md-dim" }, "… (shortened; read the rest on CivitAI)"));
  parts.push(desc);
  host.replaceChildren(...parts.filter((p): p is HTMLElement => p !== null));
}
