// Images from Python, once per model (not per view): finished PNGs arrive as custom messages
// with the bytes in a binary buffer and become blob URLs; live previews arrive as small data
// URLs. Views read this store and redraw when it changes, so a second view (the sidebar) and a
// re-opened tab show the same pictures without asking the kernel again.
import type { PanelModel } from "../../types";

export interface ImageStore {
  images: Map<string, string>; // "<job id>/<n>" → blob: URL
  previews: Map<string, string>; // job id → data: URL of the newest preview
  listeners: Set<() => void>;
}

// Keyed by the panel's uid (in generate_state and in every message), not by the model object:
// anywidget hands initialize() and each view a different proxy of the same model.
const stores = new Map<string, ImageStore>();
const MAX_IMAGES = 64; // blob URLs kept per model (oldest revoked)

export function imageStore(uid: string): ImageStore {
  let s = stores.get(uid);
  if (!s) stores.set(uid, (s = { images: new Map(), previews: new Map(), listeners: new Set() }));
  return s;
}

export const imageKey = (id: string, n: number): string => `${id}/${n}`;

interface ImageMsg { type?: string; uid?: string; id?: string; n?: number; image?: string }

/** Model-wide hook (the tab module's initialize): fill the store from custom messages. */
export function hookImages(model: PanelModel): () => void {
  const seen = new Set<string>();
  const onMsg = (msg: ImageMsg, buffers: DataView[]) => {
    if (!msg?.uid || !msg.type?.startsWith("generate.")) return;
    seen.add(msg.uid);
    const store = imageStore(msg.uid);
    if (msg.type === "generate.image" && msg.id != null && buffers?.length) {
      const b = buffers[0];
      const blob = new Blob([new Uint8Array(b.buffer as ArrayBuffer, b.byteOffset, b.byteLength)], { type: "image/png" });
      const key = imageKey(msg.id, msg.n ?? 0);
      const old = store.images.get(key);
      if (old) URL.revokeObjectURL(old);
      store.images.set(key, URL.createObjectURL(blob));
      store.previews.delete(msg.id);
      while (store.images.size > MAX_IMAGES) {
        const [first, url] = store.images.entries().next().value as [string, string];
        URL.revokeObjectURL(url);
        store.images.delete(first);
      }
    } else if (msg?.type === "generate.preview" && msg.id && msg.image) {
      store.previews.set(msg.id, msg.image);
    } else {
      return;
    }
    for (const fn of store.listeners) fn();
  };
  model.on("msg:custom", onMsg);
  return () => {
    model.off("msg:custom", onMsg as never);
    for (const uid of seen) {
      const store = imageStore(uid);
      for (const url of store.images.values()) URL.revokeObjectURL(url);
      stores.delete(uid);
    }
  };
}
