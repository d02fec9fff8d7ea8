// The Generate form: prompts, models, sampling parameters. One implementation for the notebook
// Panel's Generate tab and the kernel-free sidebar (`compact`: txt2img essentials only). Values
// are read as a JobRequest; errors from Python / the REST API (field → message) are shown
// next to their field, the rest are returned for a general message.
import type { GenerateOptions, JobRequest, LoRA, Mode } from "../../../common/generate-client";
import { h } from "../../dom";

export type Params = Omit<JobRequest, "init_image" | "mask">;

export const DEFAULTS: Required<Pick<Params, "prompt" | "negative_prompt" | "checkpoint" | "vae" | "sampler" | "scheduler"
  | "steps" | "cfg" | "seed" | "width" | "height" | "batch_size" | "batch_count" | "denoise" | "mask_blur" | "inpaint_area">> = {
  prompt: "", negative_prompt: "", checkpoint: "", vae: "", sampler: "euler", scheduler: "normal", steps: 20,
  cfg: 7, seed: -1, width: 512, height: 512, batch_size: 1, batch_count: 1, denoise: 0.75, mask_blur: 4,
  inpaint_area: "whole",
};

type Input = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;
const NUMERIC = new Set(["steps", "cfg", "seed", "width", "height", "batch_size", "batch_count", "denoise", "mask_blur"]);
// Fields shown only in some modes.
const ONLY: Record<string, Mode[]> = { denoise: ["img2img", "inpaint"], mask_blur: ["inpaint"], inpaint_area: ["inpaint"] };

export class GenerateForm {
  readonly el: HTMLElement;
  private inputs = new Map<string, Input>();
  private fields = new Map<string, HTMLElement>();
  private loras: LoRA[] = [];
  private loraList: HTMLElement;
  private loraPick: HTMLSelectElement;
  private loraWeight: HTMLInputElement;
  private mode: Mode = "txt2img";
  /** The seed of the newest finished job, for "reuse". */
  lastSeed: number | null = null;

  constructor(private compact = false, onChange: () => void = () => undefined) {
    const text = (name: string, label: string, rows: number, placeholder: string) => {
      const ta = h("textarea", { class: "sdp-input sdp-gen-text", rows: String(rows), name, placeholder });
      return this.field(name, label, ta, "sdp-gen-wide");
    };
    const select = (name: string, label: string) => this.field(name, label, h("select", { class: "sdp-input", name }));
    const num = (name: string, label: string, attrs: Record<string, string>) =>
      this.field(name, label, h("input", { class: "sdp-input", type: "number", name, ...attrs }));

    // Seed: a number plus "random" (-1) and "reuse" (the newest finished job's seed).
    const seed = num("seed", "Seed", { step: "1", min: "-1" });
    const seedInput = this.inputs.get("seed") as HTMLInputElement;
    const dice = h("button", { class: "sdp-btn sdp-gen-mini", type: "button", "data-act": "seed-random", title: "Random seed (-1): a new one each run" }, "Random");
    const reuse = h("button", { class: "sdp-btn sdp-gen-mini", type: "button", "data-act": "seed-reuse", title: "Use the seed of the last finished image" }, "Reuse");
    dice.addEventListener("click", () => { seedInput.value = "-1"; onChange(); });
    reuse.addEventListener("click", () => {
      if (this.lastSeed != null) seedInput.value = String(this.lastSeed);
      onChange();
    });
    const seedRow = h("div", { class: "sdp-gen-seedrow" });
    seedInput.replaceWith(seedRow);
    seedRow.append(seedInput, dice, reuse);

    // LoRAs: pick + weight + Add; chips below.
    this.loraPick = h("select", { class: "sdp-input", name: "lora-pick" });
    this.loraWeight = h("input", { class: "sdp-input sdp-gen-weight", type: "number", step: "0.05", value: "0.8", title: "Weight (-5 to 5)" });
    this.loraList = h("div", { class: "sdp-gen-chips" });
    const addLora = h("button", { class: "sdp-btn", type: "button", "data-act": "lora-add" }, "Add");
    addLora.addEventListener("click", () => {
      const name = this.loraPick.value;
      if (!name) return;
      this.loras = [...this.loras.filter((l) => l.name !== name), { name, weight: Number(this.loraWeight.value) || 1 }];
      this.drawLoras();
      onChange();
    });
    const loraRow = h("div", { class: "sdp-gen-lorarow" }, this.loraPick, this.loraWeight, addLora);
    const loraField = this.field("loras", "LoRAs", h("div", { class: "sdp-gen-loras" }, loraRow, this.loraList), "sdp-gen-wide");

    const sizeHelp = "multiple of 8";
    const prompts = h("div", { class: "sdp-gen-prompts" },
      text("prompt", "Prompt", compact ? 3 : 4, "What to draw: subject, style, light…"),
      text("negative_prompt", "Negative prompt", 2, "What to avoid: blurry, extra fingers…"));
    const models = h("div", { class: "sdp-gen-grid" }, select("checkpoint", "Checkpoint"),
      ...(compact ? [] : [select("vae", "VAE"), loraField]));
    const params = h("div", { class: "sdp-gen-grid" },
      select("sampler", "Sampler"), select("scheduler", "Scheduler"),
      num("steps", "Steps", { step: "1", min: "1" }), num("cfg", "CFG", { step: "0.5", min: "0" }),
      num("width", "Width", { step: "8", min: "64", title: sizeHelp }), num("height", "Height", { step: "8", min: "64", title: sizeHelp }),
      seed,
      ...(compact ? [] : [num("batch_size", "Batch size", { step: "1", min: "1" }), num("batch_count", "Batch count", { step: "1", min: "1" }),
        num("denoise", "Denoise", { step: "0.05", min: "0", max: "1" }), num("mask_blur", "Mask blur", { step: "1", min: "0", max: "64" }),
        this.field("inpaint_area", "Inpaint area", h("select", { class: "sdp-input", name: "inpaint_area" },
          h("option", { value: "whole" }, "Whole picture"), h("option", { value: "only_masked" }, "Only masked")))]));
    this.el = h("div", { class: "sdp-gen-form" }, prompts,
      h("div", { class: "sdp-gen-group", "data-group": "model" }, h("h3", {}, "Model"), models),
      h("div", { class: "sdp-gen-group" }, h("h3", {}, "Parameters"), params));
    this.set(DEFAULTS);
    for (const input of this.inputs.values()) {
      input.addEventListener("input", () => { this.clearError(input.name); onChange(); });
      input.addEventListener("change", onChange);
    }
    this.setMode("txt2img");
  }

  private field(name: string, label: string, input: HTMLElement, cls = ""): HTMLElement {
    if (input instanceof HTMLInputElement || input instanceof HTMLSelectElement || input instanceof HTMLTextAreaElement) {
      this.inputs.set(name, input);
      input.id = `sdp-gen-${name}-${Math.random().toString(36).slice(2, 8)}`;
    }
    const wrap = h("label", { class: `sdp-field sdp-gen-field ${cls}`.trim(), "data-field": name },
      h("span", { class: "sdp-field-label" }, label), input, h("span", { class: "sdp-gen-err", role: "alert" }));
    this.fields.set(name, wrap);
    return wrap;
  }

  setOptions(o: GenerateOptions): void {
    const fill = (name: string, items: { value: string; label: string }[], empty?: string) => {
      const sel = this.inputs.get(name) as HTMLSelectElement | undefined;
      if (!sel) return;
      const keep = sel.value;
      sel.replaceChildren(...(empty != null ? [h("option", { value: "" }, empty)] : []),
        ...items.map((i) => h("option", { value: i.value }, i.label)));
      if (items.some((i) => i.value === keep) || (empty != null && keep === "")) sel.value = keep;
      else if (items.length && name !== "vae") sel.value = items[0].value;
    };
    const models = o.models ?? { checkpoints: [], loras: [], vae: [] };
    const ckpts = models.checkpoints.map((m) => ({ value: m, label: m }));
    fill("checkpoint", ckpts, ckpts.length ? undefined : "— no checkpoint in the store —");
    fill("vae", models.vae.map((m) => ({ value: m, label: m })), "(the checkpoint's own)");
    fill("sampler", (o.samplers ?? []).map((s) => ({ value: s.name, label: s.label })));
    fill("scheduler", (o.schedulers ?? []).map((s) => ({ value: s.name, label: s.label })));
    this.loraPick.replaceChildren(...(models.loras.length ? models.loras.map((m) => h("option", { value: m }, m))
      : [h("option", { value: "" }, "— no LoRA in the store —")]));
    this.loraPick.disabled = !models.loras.length;
    const lim = o.limits;
    if (lim) {
      const range = (name: string, [lo, hi]: [number, number]) => {
        const i = this.inputs.get(name) as HTMLInputElement | undefined;
        if (i) { i.min = String(lo); i.max = String(hi); }
      };
      range("steps", lim.steps); range("cfg", lim.cfg); range("seed", lim.seed);
      range("width", lim.size); range("height", lim.size);
      range("batch_size", lim.batch_size); range("batch_count", lim.batch_count);
    }
  }

  setMode(mode: Mode): void {
    this.mode = mode;
    for (const [name, modes] of Object.entries(ONLY)) {
      const f = this.fields.get(name);
      if (f) f.hidden = !modes.includes(mode);
    }
  }

  /** The request fields (no images): numbers as numbers, empty optional fields left out. */
  values(): Params {
    const out: Record<string, unknown> = { mode: this.mode };
    for (const [name, input] of this.inputs) {
      const f = this.fields.get(name);
      if (f?.hidden) continue;
      const raw = input.value;
      if (NUMERIC.has(name)) {
        // An empty number box is a mistake to report, not a value to invent: send the text.
        out[name] = raw.trim() === "" ? raw : Number(raw);
      } else if (name === "vae" && !raw) {
        continue;
      } else {
        out[name] = raw;
      }
    }
    if (!this.compact && this.loras.length) out.loras = this.loras.map((l) => ({ ...l }));
    return out as unknown as Params;
  }

  /** Fill the form from a job's parameters (re-run, send to img2img) or a saved draft. */
  set(params: Partial<Params>): void {
    for (const [name, value] of Object.entries(params)) {
      if (name === "loras") {
        this.loras = Array.isArray(value) ? (value as LoRA[]).map((l) => ({ name: l.name, weight: l.weight ?? 1 })) : [];
        this.drawLoras();
        continue;
      }
      const input = this.inputs.get(name);
      if (!input || value == null) continue;
      if (input instanceof HTMLSelectElement && value !== "" && ![...input.options].some((o) => o.value === String(value))) {
        input.append(h("option", { value: String(value) }, String(value))); // a model not listed (yet)
      }
      input.value = String(value);
    }
  }

  setSize(width: number, height: number): void {
    this.set({ width: Math.max(64, Math.floor(width / 8) * 8), height: Math.max(64, Math.floor(height / 8) * 8) });
  }

  /** Show each error next to its field; returns the ones that belong to no field here. */
  showErrors(errors: Record<string, string>, focus = true): Record<string, string> {
    const rest: Record<string, string> = {};
    for (const [name, f] of this.fields) {
      const msg = errors[name] ?? "";
      f.classList.toggle("sdp-gen-bad", Boolean(msg));
      (f.querySelector(".sdp-gen-err") as HTMLElement).textContent = msg;
    }
    for (const [k, v] of Object.entries(errors)) if (!this.fields.has(k) || this.fields.get(k)?.hidden) rest[k] = v;
    const first = Object.keys(errors).map((k) => this.inputs.get(k)).find((i) => i && !this.fields.get(i.name)?.hidden);
    if (focus) first?.focus({ preventScroll: false });
    return rest;
  }

  private clearError(name: string): void {
    const f = this.fields.get(name);
    if (!f) return;
    f.classList.remove("sdp-gen-bad");
    (f.querySelector(".sdp-gen-err") as HTMLElement).textContent = "";
  }

  private drawLoras(): void {
    this.loraList.replaceChildren(...this.loras.map((l) =>
      h("span", { class: "sdp-gen-chip", "data-lora": l.name }, `${l.name} · ${l.weight}`,
        h("button", { type: "button", class: "sdp-gen-x", title: `Remove ${l.name}`, onclick: (ev: Event) => {
          ev.preventDefault();
          this.loras = this.loras.filter((x) => x.name !== l.name);
          this.drawLoras();
        } }, "×"))));
  }
}
