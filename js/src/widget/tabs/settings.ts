// Settings tab: the resolved settings (secrets arrive already masked from Python) and the
// fields a user may change here. A change is an intent ("settings.set"); Python validates and
// saves it, then the `settings` trait comes back with the new value — the UI never guesses.
// Tokens are password inputs sent once ("settings.secret") and never shown again: Python
// keeps them in the session's secret store only, and the trait says just "set (panel)".
import { h } from "../dom";
import type { TabContext, TabModule } from "../types";

interface FieldSpec {
  key: string;
  label: string;
  kind: "choice" | "text" | "bool" | "int" | "secret";
  choices?: string[];
  labels?: Record<string, string>;
  help?: string;
  min?: number;
  editable?: boolean;
}

function show(f: FieldSpec | undefined, v: unknown): string {
  if (v == null || v === "" || (Array.isArray(v) && !v.length)) return "—";
  if (typeof v === "boolean") return v ? "on" : "off";
  if (Array.isArray(v)) return v.join(", ");
  if (typeof v === "object") return JSON.stringify(v);
  return f?.labels?.[String(v)] ?? String(v);
}

function render({ model, el, act }: TabContext): () => void {
  const editable = h("div", { class: "sdp-form sdp-settings-form" });
  const secrets = h("div", { class: "sdp-form sdp-settings-form" });
  const table = h("table", { class: "sdp-kv" });
  el.append(
    h("div", { class: "sdp-section" }, h("h3", {}, "Choices"), editable),
    h("div", { class: "sdp-section" }, h("h3", {}, "Tokens"), secrets),
    // Long and rarely read: collapsible, open in a cell, closed in the narrow sidebar.
    h("details", { class: "sdp-section sdp-details", open: !el.closest(".sdp-sidebar") }, h("summary", {}, "Resolved settings"), table),
  );

  // Enter applies a typed value as leaving the field does (both fire "change").
  const enterCommits = (tx: HTMLInputElement) =>
    tx.addEventListener("keydown", (ev) => (ev as KeyboardEvent).key === "Enter" && tx.blur());
  const input = (f: FieldSpec, value: unknown): HTMLElement => {
    if (f.kind === "choice") {
      const sel = h("select", { class: "sdp-input", "data-key": f.key });
      for (const c of f.choices ?? []) sel.append(h("option", { value: c }, f.labels?.[c] ?? c));
      sel.value = String(value ?? "");
      sel.addEventListener("change", () => {
        act("settings.set", { key: f.key, value: sel.value });
        // Show the saved value until Python confirms (a rejected choice must not linger).
        sel.value = String(value ?? "");
      });
      return sel;
    }
    if (f.kind === "bool") {
      const cb = h("input", { type: "checkbox", class: "sdp-check", "data-key": f.key });
      cb.checked = Boolean(value);
      cb.addEventListener("change", () => {
        act("settings.set", { key: f.key, value: cb.checked });
        cb.checked = Boolean(value);
      });
      return cb;
    }
    if (f.kind === "secret") {
      // Never pre-filled: the value does not come back from Python, only whether it is set.
      const tx = h("input", { type: "password", class: "sdp-input sdp-mono", "data-key": f.key, autocomplete: "off",
        placeholder: String(value ?? "not set") });
      tx.addEventListener("change", () => {
        act("settings.secret", { key: f.key, value: tx.value });
        tx.value = "";
      });
      enterCommits(tx);
      return tx;
    }
    const attrs: Record<string, string> = { type: f.kind === "int" ? "number" : "text", class: "sdp-input", "data-key": f.key };
    if (f.min != null) attrs.min = String(f.min);
    if (f.key === "storage") attrs.placeholder = "platform default";
    const tx = h("input", attrs);
    tx.value = value == null ? "" : String(value);
    tx.addEventListener("change", () => act("settings.set", { key: f.key, value: tx.value }));
    enterCommits(tx);
    return tx;
  };

  const draw = () => {
    const settings = (model.get("settings") ?? {}) as Record<string, unknown>;
    const fields = (model.get("settings_fields") ?? []) as FieldSpec[];
    const row = (f: FieldSpec) => h("label", { class: `sdp-field${f.kind === "bool" ? " sdp-field-check" : ""}` },
      h("span", { class: "sdp-field-label" }, f.label), input(f, settings[f.key]),
      f.help ? h("span", { class: "sdp-field-help" }, f.help) : null);
    // Older kernels send no `editable` flag: all their fields were editable.
    editable.replaceChildren(...fields.filter((f) => f.editable !== false && f.kind !== "secret").map(row));
    secrets.replaceChildren(...fields.filter((f) => f.kind === "secret").map(row));
    secrets.parentElement!.hidden = !secrets.childElementCount;
    const byKey = new Map(fields.map((f) => [f.key, f]));
    const keys = [...fields.map((f) => f.key).filter((k) => k in settings), ...Object.keys(settings).filter((k) => !byKey.has(k)).sort()];
    table.replaceChildren(
      ...keys.map((k) => h("tr", { "data-key": k }, h("th", { title: k }, byKey.get(k)?.label ?? k), h("td", {}, show(byKey.get(k), settings[k])))),
    );
  };
  draw();
  model.on("change:settings", draw);
  model.on("change:settings_fields", draw);
  return () => {
    model.off("change:settings", draw);
    model.off("change:settings_fields", draw);
  };
}

export const settingsTab: TabModule = { render };
