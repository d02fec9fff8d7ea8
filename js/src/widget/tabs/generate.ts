// Generate tab: mode tabs (txt2img / img2img / inpaint), the form, an input image with a mask
// painter, the queue with live previews, and the gallery. Every intent goes through Python
// ("generate.submit" with the images as data URLs in the payload), so it works in Colab as in
// JupyterLab; Python answers with the small `generate_state` trait (jobs, per-field errors) and
// custom messages carrying previews and PNG bytes (see generate/images.ts).
import { backendNotice, type GenerateOptions, type Mode } from "../../common/generate-client";
import { h } from "../dom";
import type { TabContext, TabModule } from "../types";
import { GenerateForm, type Params } from "./generate/form";
import { GalleryView, type JobRow, QueueView } from "./generate/gallery";
import { hookImages, imageKey, imageStore } from "./generate/images";
import { type InputImage, loadImage, MaskPainter, readImage } from "./generate/mask";
import "./generate.css";

interface GenState {
  uid?: string;
  jobs?: JobRow[];
  errors?: Record<string, string>;
  message?: string;
  pending?: number;
  accepted?: string;
}
type Options = Partial<GenerateOptions> & { error?: string; storage?: string };

/** What a view leaves behind for the next one (switching tabs must not lose the work). */
interface Draft { mode: Mode; params: Params; input: InputImage | null; mask: string | null }
const drafts = new Map<string, Draft>(); // by panel uid (see generate/images.ts)

const MODES: [Mode, string][] = [["txt2img", "Text to image"], ["img2img", "Image to image"], ["inpaint", "Inpaint"]];

function blobToDataUrl(blob: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const fr = new FileReader();
    fr.onload = () => resolve(String(fr.result));
    fr.onerror = () => reject(fr.error);
    fr.readAsDataURL(blob);
  });
}

function render({ model, el, act }: TabContext): () => void {
  const state = (): GenState => (model.get("generate_state") ?? {}) as GenState;
  // Before Python's first state arrives there is no uid yet: an empty store, swapped on arrival.
  let uid = state().uid ?? "";
  let store = imageStore(uid);
  const options = (): Options => (model.get("generate_options") ?? {}) as Options;
  let mode: Mode = "txt2img";
  let myRef = "";
  let errSig = "";

  const form = new GenerateForm(false, () => undefined);
  const painter = new MaskPainter(() => { inputErr.textContent = ""; });
  const modeBar = h("div", { class: "sdp-gen-modes", role: "tablist" });
  const fileInput = h("input", { type: "file", accept: "image/png,image/jpeg,image/webp,image/*", class: "sdp-gen-file", "data-input": "image" });
  const drop = h("label", { class: "sdp-gen-drop", tabindex: "0" },
    h("strong", {}, "Drop an image here"), h("span", { class: "sdp-muted" }, "or click to choose a PNG, JPEG or WebP"), fileInput);
  const inputInfo = h("span", { class: "sdp-muted sdp-gen-inputinfo" });
  const removeBtn = h("button", { class: "sdp-btn sdp-gen-mini", type: "button", "data-act": "input-remove" }, "Remove image");
  const inputErr = h("div", { class: "sdp-gen-err sdp-gen-inputerr", role: "alert" });
  const maskHint = h("p", { class: "sdp-muted sdp-gen-hint" }, "Paint over the part to repaint (white in the mask). Eraser undoes, Clear starts over.");
  const inputSec = h("div", { class: "sdp-gen-group sdp-gen-input", "data-field": "init_image" },
    h("h3", {}, "Input image"), drop,
    h("div", { class: "sdp-gen-inputbar" }, inputInfo, removeBtn), maskHint, painter.el, inputErr);
  const reload = h("button", { class: "sdp-btn sdp-gen-mini", type: "button", "data-act": "refresh", title: "Reload models and WebUIs" }, "Refresh");
  reload.addEventListener("click", () => act("generate.refresh"));
  form.el.insertBefore(inputSec, form.el.children[1] ?? null);
  // Models downloaded or a WebUI started after the tab opened: Refresh picks them up.
  const modelHead = form.el.querySelector("[data-group='model'] > h3");
  modelHead?.replaceWith(h("div", { class: "sdp-gen-h" }, h("h3", {}, "Model"), reload));

  const submitBtn = h("button", { class: "sdp-btn sdp-gen-go", type: "button", "data-act": "generate" }, "Generate");
  const status = h("div", { class: "sdp-gen-status", role: "status" });
  // Nothing to generate with (no WebUI, and the built-in engine cannot run here): say so at
  // the button instead of answering a click with field errors (the job could not run anyway).
  const goHint = h("div", { class: "sdp-gen-status sdp-gen-hint", hidden: true, "data-hint": "no-webui" },
    "Start a WebUI first: the Launch tab (or `sdpanel launch <webui>`), then Refresh.");
  const notice = h("div", { class: "sdp-gen-notice" });

  const actions = {
    cancel: (id: string) => act("generate.cancel", { id }),
    send: (row: JobRow, n: number, to: "img2img" | "inpaint") => void sendTo(row, n, to),
    rerun: (row: JobRow, n: number) => rerun(row, n),
  };
  const queue = new QueueView(actions);
  const gallery = new GalleryView(actions);
  const queueEmpty = h("p", { class: "sdp-empty" }, "Nothing queued.");
  const galleryEmpty = h("p", { class: "sdp-empty" }, "Generated images appear here, each with its parameters.");
  const clearBtn = h("button", { class: "sdp-btn sdp-gen-mini", type: "button", "data-act": "clear", title: "Remove finished jobs from this list (files stay in outputs/)" }, "Clear list");
  clearBtn.addEventListener("click", () => act("generate.clear"));

  el.append(h("div", { class: "sdp-gen-cq" }, h("div", { class: "sdp-gen" },
    h("div", { class: "sdp-gen-left" }, modeBar, notice, form.el,
      h("div", { class: "sdp-gen-footer" }, submitBtn, goHint, status)),
    h("div", { class: "sdp-gen-right" },
      h("div", { class: "sdp-gen-group" }, h("div", { class: "sdp-gen-h" }, h("h3", {}, "Queue")), queueEmpty, queue.el),
      h("div", { class: "sdp-gen-group" }, h("div", { class: "sdp-gen-h" }, h("h3", {}, "Gallery"), clearBtn), galleryEmpty, gallery.el)))));

  // ---- mode and input -----------------------------------------------------------------
  const setMode = (m: Mode) => {
    mode = m;
    form.setMode(m);
    for (const b of modeBar.children) {
      const on = (b as HTMLElement).dataset.mode === m;
      b.classList.toggle("sdp-active", on);
      b.setAttribute("aria-selected", String(on));
    }
    inputSec.hidden = m === "txt2img";
    painter.setPaintable(m === "inpaint");
    maskHint.hidden = m !== "inpaint" || !painter.input;
  };
  modeBar.append(...MODES.map(([m, label]) => h("button", {
    class: "sdp-gen-mode", type: "button", role: "tab", "data-mode": m, onclick: () => setMode(m),
  }, label)));

  const setInput = (input: InputImage | null, size = true) => {
    painter.load(input);
    drop.hidden = Boolean(input);
    removeBtn.hidden = !input;
    inputInfo.textContent = input ? `${input.name} · ${input.width}×${input.height}` : "";
    maskHint.hidden = mode !== "inpaint" || !input;
    inputErr.textContent = "";
    if (input && size) form.setSize(input.width, input.height);
  };
  const takeFile = async (file: File | undefined) => {
    if (!file) return;
    try {
      setInput(await readImage(file));
    } catch (err) {
      inputErr.textContent = `${file.name}: ${(err as Error).message}`;
    }
  };
  fileInput.addEventListener("change", () => { void takeFile(fileInput.files?.[0]); fileInput.value = ""; });
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("sdp-gen-over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("sdp-gen-over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("sdp-gen-over");
    void takeFile(ev.dataTransfer?.files?.[0]);
  });
  removeBtn.addEventListener("click", () => setInput(null));

  // ---- submit -------------------------------------------------------------------------
  const noWebUI = () => {
    const o = options();
    return Boolean(o.samplers) && !o.error && !(o.backends ?? []).length && !(o.builtin?.available ?? false);
  };
  const drawGo = () => {
    const none = noWebUI();
    submitBtn.disabled = Boolean(state().pending) || none;
    submitBtn.title = none ? "Start a WebUI first (Launch tab)" : "Generate (Ctrl+Enter)";
    goHint.hidden = !none;
  };
  const submit = () => {
    if (noWebUI()) return drawGo();
    const payload: Record<string, unknown> = { ...form.values() };
    if (mode !== "txt2img" && painter.input) payload.init_image = painter.input.dataUrl;
    if (mode === "inpaint" && painter.input && painter.hasMask()) payload.mask = painter.toDataURL();
    myRef = Math.random().toString(36).slice(2);
    status.className = "sdp-gen-status";
    status.textContent = "Queuing…";
    submitBtn.disabled = true;
    errSig = "submitted"; // the answer redraws the errors even if they are the same as before
    act("generate.submit", { ...payload, ref: myRef });
  };
  submitBtn.addEventListener("click", submit);
  form.el.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); submit(); }
  });

  async function sendTo(row: JobRow, n: number, to: "img2img" | "inpaint"): Promise<void> {
    const url = store.images.get(imageKey(row.id, n));
    if (!url) return;
    const dataUrl = await blobToDataUrl(await (await fetch(url)).blob());
    const img = await loadImage(dataUrl);
    form.set(row.params as Params);
    setInput({ dataUrl, width: img.naturalWidth, height: img.naturalHeight, name: `${row.id}-${n}.png` });
    setMode(to);
    el.querySelector(".sdp-gen-left")?.scrollIntoView({ block: "start", behavior: "smooth" });
  }

  function rerun(row: JobRow, n: number): void {
    const seed = row.images.find((i) => i.n === n)?.seed ?? row.seed;
    form.set({ ...(row.params as Params), seed });
    setMode(row.mode as Mode);
    if (row.mode !== "txt2img" && !painter.input) {
      status.className = "sdp-gen-status sdp-gen-bad";
      status.textContent = `Re-running ${row.mode} needs its input image: load it again, then Generate.`;
      return;
    }
    submit();
  }

  // ---- from Python ----------------------------------------------------------------------
  const drawOptions = () => {
    const o = options();
    if (o.samplers) form.setOptions(o as GenerateOptions);
    const notes: HTMLElement[] = [];
    if (o.error) {
      notes.push(h("div", { class: "sdp-gen-note sdp-gen-bad" }, h("span", {}, o.error),
        h("button", { class: "sdp-btn sdp-gen-mini", type: "button", "data-act": "retry", onclick: () => act("generate.refresh") }, "Retry")));
    } else if (o.samplers) {
      const where = backendNotice(o as GenerateOptions, "start one in the Launch tab");
      if (where) notes.push(h("div", { class: "sdp-gen-note" }, where));
      if (!(o.models?.checkpoints ?? []).length) notes.push(h("div", { class: "sdp-gen-note" }, "The store has no checkpoint yet: download one in the Models tab."));
    } else {
      notes.push(h("div", { class: "sdp-muted" }, "Loading models and samplers…"));
    }
    notice.replaceChildren(...notes);
    notice.hidden = !notes.length;
    drawGo();
  };

  const draw = () => {
    const s = state();
    if (s.uid && s.uid !== uid) {
      store.listeners.delete(redraw);
      uid = s.uid;
      store = imageStore(uid);
      store.listeners.add(redraw);
    }
    const jobs = s.jobs ?? [];
    queue.update(jobs, (id) => store.previews.get(id));
    gallery.update(jobs, (id, n) => store.images.get(imageKey(id, n)));
    queueEmpty.hidden = jobs.some((j) => j.state !== "succeeded");
    galleryEmpty.hidden = jobs.some((j) => j.state === "succeeded" && j.images.length);
    clearBtn.disabled = !jobs.some((j) => j.state !== "queued" && j.state !== "running");
    const last = jobs.find((j) => j.state === "succeeded");
    form.lastSeed = last ? last.images[0]?.seed ?? last.seed : null;
    drawGo();
    // Progress redraws come 10×/s: touch the errors and the status only when they change.
    const sig = JSON.stringify([s.errors, s.message, s.accepted, s.pending]);
    if (s.pending || sig === errSig) return;
    const first = !errSig;
    errSig = sig;
    const errors = s.errors ?? {};
    const rest = form.showErrors(errors, !first);
    const inputMsg = [rest.init_image, rest.mask].filter(Boolean).join(" · ");
    inputErr.textContent = inputMsg;
    delete rest.init_image;
    delete rest.mask;
    const other = Object.entries(rest).map(([k, v]) => `${k}: ${v}`).join(" · ");
    if (s.message || other) {
      status.className = "sdp-gen-status sdp-gen-bad";
      status.textContent = [s.message, other].filter(Boolean).join(" ");
    } else if (myRef && s.accepted === myRef) {
      status.className = "sdp-gen-status sdp-gen-ok";
      status.textContent = "Queued.";
      window.setTimeout(() => { if (status.textContent === "Queued.") status.classList.add("sdp-gen-fade"); }, 3000);
    } else {
      status.textContent = "";
    }
  };

  // ---- restore, listen, clean up ---------------------------------------------------------
  const draft = drafts.get(uid);
  if (draft) {
    form.set(draft.params);
    setInput(draft.input, false);
    if (draft.mask && draft.input) void painter.restore(draft.mask);
    setMode(draft.mode);
  } else {
    setInput(null);
    setMode("txt2img");
  }
  function redraw(): void {
    draw();
  }
  drawOptions();
  draw();
  store.listeners.add(redraw);
  model.on("change:generate_state", draw);
  model.on("change:generate_options", drawOptions);
  act("generate.hello", { have: [...store.images.keys()] });
  return () => {
    drafts.set(uid, { mode, params: form.values(), input: painter.input, mask: painter.hasMask() ? painter.toDataURL() : null });
    store.listeners.delete(redraw);
    model.off("change:generate_state", draw);
    model.off("change:generate_options", drawOptions);
  };
}

export const generateTab: TabModule = { render, initialize: hookImages };
