// Settings tab: the resolved settings (secrets arrive already masked from Python) and the few
// fields a user may change here. A change is an intent ("settings.set"); Python validates and
// saves it, then the `settings` trait comes back with the new value — the UI never guesses.
import { h } from "../dom";
import type { TabContext, TabModule } from "../types";

interface FieldSpec {
  key: string;
  label: string;
  kind: "choice" | "text" | "bool";
  choices?: string[];
  help?: string;
}

function show(v: unknown): string {
  if (v == null || v === "") return "—";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function render({ model, el, act }: TabContext): () => void {
  const editable = h("div", { class: "sdp-form" });
  const table = h("table", { class: "sdp-kv" });
  el.append(
    h("div", { class: "sdp-section" }, h("h3", {}, "Choices"), editable),
    // Long and rarely read: collapsible, open in a cell, closed in the narrow sidebar.
    h("details", { class: "sdp-section sdp-details", open: !el.closest(".sdp-sidebar") }, h("summary", {}, "Resolved settings"), table),
  );

  const draw = () => {
    const settings = (model.get("settings") ?? {}) as Record<string, unknown>;
    const fields = (model.get("settings_fields") ?? []) as FieldSpec[];
    editable.replaceChildren(
      ...fields.map((f) => {
        const value = settings[f.key];
        let input: HTMLElement;
        if (f.kind === "choice") {
          const sel = h("select", { class: "sdp-input", "data-key": f.key });
          for (const c of f.choices ?? []) sel.append(h("option", { value: c }, c));
          sel.value = String(value ?? "");
          sel.addEventListener("change", () => {
            act("settings.set", { key: f.key, value: sel.value });
            // Show the saved value until Python confirms (a rejected choice must not linger).
            sel.value = String(value ?? "");
          });
          input = sel;
        } else if (f.kind === "bool") {
          const cb = h("input", { type: "checkbox", class: "sdp-check", "data-key": f.key });
          cb.checked = Boolean(value);
          cb.addEventListener("change", () => {
            act("settings.set", { key: f.key, value: cb.checked });
            cb.checked = Boolean(value);
          });
          input = cb;
        } else {
          const tx = h("input", { type: "text", class: "sdp-input", "data-key": f.key });
          tx.value = value == null ? "" : String(value);
          tx.addEventListener("change", () => act("settings.set", { key: f.key, value: tx.value }));
          input = tx;
        }
        return h("label", { class: "sdp-field" }, h("span", { class: "sdp-field-label" }, f.label), input,
          f.help ? h("span", { class: "sdp-field-help" }, f.help) : null);
      }),
    );
    const keys = Object.keys(settings).sort();
    table.replaceChildren(
      ...keys.map((k) => h("tr", {}, h("th", {}, k), h("td", {}, show(settings[k])))),
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
