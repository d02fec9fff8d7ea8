// The input image and, for inpaint, a mask painter over it: brush, eraser, size, clear. The
// mask lives in an off-screen canvas at the image's own size (white = repaint, black = keep),
// so the exported PNG matches the image pixel for pixel whatever the on-screen scale; the
// visible overlay is a tinted copy of the same strokes.
import { h } from "../../dom";

export interface InputImage {
  dataUrl: string;
  width: number;
  height: number;
  name: string;
}

type Tool = "brush" | "eraser";

/** Read a File into a PNG/JPEG/WebP data URL and its size (other formats are re-encoded to PNG). */
export async function readImage(file: File): Promise<InputImage> {
  const raw = await new Promise<string>((resolve, reject) => {
    const fr = new FileReader();
    fr.onload = () => resolve(String(fr.result));
    fr.onerror = () => reject(fr.error ?? new Error("could not read the file"));
    fr.readAsDataURL(file);
  });
  const img = await loadImage(raw);
  let dataUrl = raw;
  if (!/^data:image\/(png|jpeg|webp);/.test(raw)) {
    const c = document.createElement("canvas");
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
    c.getContext("2d")?.drawImage(img, 0, 0);
    dataUrl = c.toDataURL("image/png");
  }
  return { dataUrl, width: img.naturalWidth, height: img.naturalHeight, name: file.name };
}

export function loadImage(src: string): Promise<HTMLImageElement> {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the file is not an image the browser can read"));
    img.src = src;
  });
}

export class MaskPainter {
  readonly el: HTMLElement;
  private stage: HTMLElement;
  private img: HTMLImageElement;
  private view: HTMLCanvasElement;
  private mask: HTMLCanvasElement = document.createElement("canvas");
  private cursor: HTMLElement;
  private tools: HTMLElement;
  private sizeInput: HTMLInputElement;
  private sizeLabel: HTMLElement;
  private tool: Tool = "brush";
  private last: [number, number] | null = null;
  private painted = false;
  private painting = false;
  input: InputImage | null = null;

  constructor(private onChange: () => void = () => undefined) {
    this.img = h("img", { class: "sdp-gen-img", alt: "input image", draggable: "false" });
    this.view = h("canvas", { class: "sdp-gen-maskview", "aria-label": "mask: paint the area to repaint" });
    this.cursor = h("div", { class: "sdp-gen-cursor", hidden: true });
    this.stage = h("div", { class: "sdp-gen-stage" }, this.img, this.view, this.cursor);
    const toolBtn = (tool: Tool, label: string, title: string) => {
      const b = h("button", { class: "sdp-btn sdp-gen-tool", type: "button", "data-tool": tool, title }, label);
      b.addEventListener("click", () => this.setTool(tool));
      return b;
    };
    this.sizeInput = h("input", { type: "range", min: "2", max: "256", value: "32", class: "sdp-gen-size", "aria-label": "brush size" });
    this.sizeLabel = h("span", { class: "sdp-mono sdp-gen-sizeval" });
    this.sizeInput.addEventListener("input", () => this.drawSize());
    const clear = h("button", { class: "sdp-btn", type: "button", "data-act": "mask-clear", title: "Erase the whole mask" }, "Clear");
    clear.addEventListener("click", () => this.clear());
    this.tools = h("div", { class: "sdp-gen-tools" },
      toolBtn("brush", "Brush", "Paint the area to repaint"), toolBtn("eraser", "Eraser", "Unpaint"),
      h("label", { class: "sdp-gen-sizebox" }, "Size", this.sizeInput, this.sizeLabel), clear);
    this.el = h("div", { class: "sdp-gen-painter" }, this.tools, this.stage);
    this.setTool("brush");
    this.drawSize();
    this.hook();
    this.setPaintable(false);
  }

  /** Show ``input`` (null: none) and start a fresh, empty mask at its size. */
  load(input: InputImage | null): void {
    this.input = input;
    this.el.hidden = !input;
    if (!input) return;
    this.img.src = input.dataUrl;
    for (const c of [this.view, this.mask]) {
      c.width = input.width;
      c.height = input.height;
    }
    // A sensible default brush: about 1/12 of the image's smaller side.
    const size = Math.max(4, Math.min(256, Math.round(Math.min(input.width, input.height) / 12)));
    this.sizeInput.max = String(Math.max(64, Math.round(Math.max(input.width, input.height) / 4)));
    this.sizeInput.value = String(size);
    this.drawSize();
    this.clear(false);
  }

  /** Put back a mask exported earlier with toDataURL() (a re-opened tab keeps its strokes). */
  async restore(maskUrl: string): Promise<void> {
    const img = await loadImage(maskUrl);
    const m = this.mask.getContext("2d");
    const v = this.view.getContext("2d");
    if (!m || !v || img.naturalWidth !== this.mask.width || img.naturalHeight !== this.mask.height) return;
    m.globalCompositeOperation = "source-over";
    m.drawImage(img, 0, 0);
    // The overlay: the mask's white pixels, tinted.
    const data = m.getImageData(0, 0, this.mask.width, this.mask.height);
    const px = data.data;
    let any = false;
    for (let i = 0; i < px.length; i += 4) {
      const on = px[i] > 127;
      any ||= on;
      px[i] = 0xff; px[i + 1] = 0x4d; px[i + 2] = 0x6d; px[i + 3] = on ? 255 : 0;
    }
    v.putImageData(data, 0, 0);
    this.painted = any;
  }

  setPaintable(on: boolean): void {
    this.el.classList.toggle("sdp-gen-paintable", on);
    this.tools.hidden = !on;
    this.view.hidden = !on;
  }

  hasMask(): boolean {
    return this.painted;
  }

  /** The mask as a black/white PNG data URL of the image's size. */
  toDataURL(): string {
    return this.mask.toDataURL("image/png");
  }

  clear(notify = true): void {
    const m = this.mask.getContext("2d");
    if (m) {
      m.globalCompositeOperation = "source-over";
      m.fillStyle = "#000";
      m.fillRect(0, 0, this.mask.width, this.mask.height);
    }
    this.view.getContext("2d")?.clearRect(0, 0, this.view.width, this.view.height);
    this.painted = false;
    if (notify) this.onChange();
  }

  private setTool(tool: Tool): void {
    this.tool = tool;
    for (const b of this.tools.querySelectorAll<HTMLElement>("[data-tool]")) b.classList.toggle("sdp-on", b.dataset.tool === tool);
    this.stage.dataset.tool = tool;
  }

  private drawSize(): void {
    this.sizeLabel.textContent = `${this.sizeInput.value} px`;
  }

  private scale(): number {
    const r = this.view.getBoundingClientRect();
    return r.width ? this.view.width / r.width : 1;
  }

  private point(ev: PointerEvent): [number, number] {
    const r = this.view.getBoundingClientRect();
    const s = this.scale();
    return [(ev.clientX - r.left) * s, (ev.clientY - r.top) * s];
  }

  private stroke(from: [number, number], to: [number, number]): void {
    const size = Number(this.sizeInput.value);
    const erase = this.tool === "eraser";
    const draw = (ctx: CanvasRenderingContext2D | null, color: string, op: GlobalCompositeOperation) => {
      if (!ctx) return;
      ctx.globalCompositeOperation = op;
      ctx.strokeStyle = ctx.fillStyle = color;
      ctx.lineWidth = size;
      ctx.lineCap = ctx.lineJoin = "round";
      ctx.beginPath();
      ctx.moveTo(from[0], from[1]);
      ctx.lineTo(to[0], to[1]);
      ctx.stroke();
      ctx.beginPath();
      ctx.arc(to[0], to[1], size / 2, 0, Math.PI * 2);
      ctx.fill();
    };
    draw(this.mask.getContext("2d"), erase ? "#000" : "#fff", "source-over");
    draw(this.view.getContext("2d"), "#ff4d6d", erase ? "destination-out" : "source-over");
    if (!erase) this.painted = true;
  }

  private moveCursor(ev: PointerEvent): void {
    const r = this.stage.getBoundingClientRect();
    const d = Number(this.sizeInput.value) / this.scale();
    Object.assign(this.cursor.style, {
      width: `${d}px`, height: `${d}px`,
      left: `${ev.clientX - r.left - d / 2}px`, top: `${ev.clientY - r.top - d / 2}px`,
    });
    this.cursor.hidden = false;
  }

  private hook(): void {
    const v = this.view;
    v.addEventListener("pointerdown", (ev) => {
      if (ev.button !== 0) return;
      ev.preventDefault();
      v.setPointerCapture(ev.pointerId);
      this.painting = true;
      const p = this.point(ev);
      this.stroke(p, p);
      this.last = p;
    });
    v.addEventListener("pointermove", (ev) => {
      this.moveCursor(ev);
      if (!this.painting || !this.last) return;
      const p = this.point(ev);
      this.stroke(this.last, p);
      this.last = p;
    });
    const end = (ev: PointerEvent) => {
      if (!this.painting) return;
      this.painting = false;
      this.last = null;
      if (v.hasPointerCapture(ev.pointerId)) v.releasePointerCapture(ev.pointerId);
      this.onChange();
    };
    v.addEventListener("pointerup", end);
    v.addEventListener("pointercancel", end);
    v.addEventListener("pointerleave", () => { this.cursor.hidden = true; });
  }
}
