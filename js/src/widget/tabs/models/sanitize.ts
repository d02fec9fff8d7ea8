// Model descriptions are HTML written by strangers. They are parsed in an inert document
// (DOMParser: no scripts run, no handlers fire, nothing loads) and rebuilt element by element
// from a whitelist: only the tags below, no attributes except a checked http(s) href.
// Raw HTML never reaches innerHTML.

const KEEP = new Set([
  "p", "br", "b", "strong", "i", "em", "u", "s", "del", "ul", "ol", "li", "a", "blockquote",
  "code", "pre", "span", "div", "hr", "sup", "sub", "small", "table", "thead", "tbody", "tr",
  "td", "th", "h4", "h5", "h6",
]);
// Whole subtrees dropped (their text is not content either).
const DROP = new Set([
  "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "form", "input",
  "button", "textarea", "select", "option", "link", "meta", "base", "svg", "math", "template",
  "noscript", "video", "audio", "source", "track", "canvas", "img", "picture", "head", "title",
]);
const RENAME: Record<string, string> = { h1: "h4", h2: "h4", h3: "h5" };
const MAX_DEPTH = 40;

function safeHref(raw: string | null): string | null {
  if (!raw) return null;
  try {
    const url = new URL(raw, "https://civitai.com/");
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch {
    return null;
  }
}

function copy(from: Node, to: Node, depth: number): void {
  for (const child of Array.from(from.childNodes)) {
    if (child.nodeType === Node.TEXT_NODE) {
      to.appendChild(document.createTextNode(child.textContent ?? ""));
      continue;
    }
    if (child.nodeType !== Node.ELEMENT_NODE) continue; // comments, processing instructions
    const tag = (child as Element).tagName.toLowerCase();
    if (DROP.has(tag)) continue;
    const name = RENAME[tag] ?? tag;
    if (!KEEP.has(name) || depth >= MAX_DEPTH) {
      copy(child, to, depth + 1); // unknown wrapper: keep its text, lose the element
      continue;
    }
    const el = document.createElement(name);
    if (name === "a") {
      const href = safeHref((child as Element).getAttribute("href"));
      if (href) {
        el.setAttribute("href", href);
        el.setAttribute("target", "_blank");
        el.setAttribute("rel", "noopener noreferrer nofollow");
      }
    }
    copy(child, el, depth + 1);
    to.appendChild(el);
  }
}

/** A fragment of safe DOM built from untrusted HTML. */
export function sanitizeHtml(html: string): DocumentFragment {
  const out = document.createDocumentFragment();
  if (!html) return out;
  const doc = new DOMParser().parseFromString(html, "text/html");
  copy(doc.body, out, 0);
  return out;
}
