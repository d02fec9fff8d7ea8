// One reading of a system-monitor sample for both bundles (cell Panel and sidebar).
// The Python side sends sdpanel.sysmon samples as plain JSON; this tolerates the few
// spellings a sample may use (nested {gpu: {...}} or flat gpu_* keys, percent or fraction)
// so the header never shows "undefined".

export interface GpuView {
  name: string;
  util: number | null; // percent
  vramUsed: number | null; // bytes
  vramTotal: number | null;
  temp: number | null; // °C
}

export interface SystemView {
  gpus: GpuView[];
  gpuNote: string; // shown when there is no GPU ("no NVIDIA GPU")
  cpu: number | null; // percent
  ramUsed: number | null;
  ramTotal: number | null;
  diskFree: number | null;
  diskTotal: number | null;
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

function num(o: Obj | undefined, ...keys: string[]): number | null {
  if (!o) return null;
  for (const k of keys) {
    const v = o[k];
    if (typeof v === "number" && Number.isFinite(v)) return v;
  }
  return null;
}

function str(o: Obj | undefined, ...keys: string[]): string {
  if (!o) return "";
  for (const k of keys) {
    const v = o[k];
    if (typeof v === "string" && v) return v;
  }
  return "";
}

function gpuFrom(o: Obj): GpuView {
  return {
    name: str(o, "name", "model") || "GPU",
    util: num(o, "util", "utilization", "util_percent", "gpu_util", "load"),
    vramUsed: num(o, "vram_used", "memory_used", "mem_used", "used"),
    vramTotal: num(o, "vram_total", "memory_total", "mem_total", "total"),
    temp: num(o, "temp", "temperature", "temperature_c"),
  };
}

export function normalizeSystem(raw: unknown): SystemView {
  const s: Obj = isObj(raw) ? raw : {};
  const view: SystemView = {
    gpus: [],
    gpuNote: "",
    cpu: null,
    ramUsed: null,
    ramTotal: null,
    diskFree: null,
    diskTotal: null,
  };
  // sdpanel.sysmon: gpu = {available, reason, devices: [{name, utilization, vram_*, temperature}]}
  const gpuRaw = s.gpus ?? s.gpu;
  const list = Array.isArray(gpuRaw) ? gpuRaw : isObj(gpuRaw) && Array.isArray(gpuRaw.devices) ? gpuRaw.devices : isObj(gpuRaw) ? [gpuRaw] : [];
  if (isObj(gpuRaw) && gpuRaw.available === false) view.gpuNote = str(gpuRaw, "reason", "message");
  for (const g of list) {
    if (!isObj(g)) continue;
    if (g.available === false || (g.name == null && g.util == null && g.utilization == null)) {
      view.gpuNote = str(g, "message", "reason", "error", "note");
      continue;
    }
    view.gpus.push(gpuFrom(g));
  }
  if (!view.gpus.length) {
    view.gpuNote = view.gpuNote || str(s, "gpu_error", "gpu_message") || "no NVIDIA GPU";
  }
  const cpu = s.cpu;
  view.cpu = typeof cpu === "number" ? cpu : num(isObj(cpu) ? cpu : undefined, "percent", "util", "load") ?? num(s, "cpu_percent");
  const ram = isObj(s.ram) ? s.ram : isObj(s.memory) ? s.memory : undefined;
  view.ramUsed = num(ram, "used") ?? num(s, "ram_used");
  view.ramTotal = num(ram, "total") ?? num(s, "ram_total");
  const diskRaw = s.disk;
  const disk = isObj(diskRaw) ? diskRaw : Array.isArray(diskRaw) && isObj(diskRaw[0]) ? diskRaw[0] : undefined;
  view.diskFree = num(disk, "free") ?? num(s, "disk_free");
  view.diskTotal = num(disk, "total") ?? num(s, "disk_total");
  return view;
}

export function humanBytes(n: number | null): string {
  if (n == null) return "–";
  // Binary units, named as such (the CLI and the cells say GiB too).
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

const pct = (used: number | null, total: number | null): number | null =>
  used != null && total ? (100 * used) / total : null;

function chip(label: string, value: string, fill: number | null, title: string): HTMLElement {
  const el = document.createElement("div");
  el.className = "sdp-chip";
  el.title = title;
  const l = document.createElement("span");
  l.className = "sdp-chip-label";
  l.textContent = label;
  const v = document.createElement("span");
  v.className = "sdp-chip-value";
  v.textContent = value;
  el.append(l, v);
  if (fill != null) {
    const bar = document.createElement("span");
    bar.className = "sdp-chip-bar";
    const f = document.createElement("span");
    const p = Math.max(0, Math.min(100, fill));
    f.style.width = `${p.toFixed(0)}%`;
    if (p > 90) f.className = "sdp-hot";
    bar.append(f);
    el.append(bar);
  }
  return el;
}

/** Fill `host` with the system chips (GPU(s), CPU, RAM, disk free). */
export function renderChips(host: HTMLElement, raw: unknown): void {
  const v = normalizeSystem(raw);
  const chips: HTMLElement[] = [];
  for (const g of v.gpus) {
    const parts = [g.util != null ? `${g.util.toFixed(0)}%` : "", g.vramTotal ? `${humanBytes(g.vramUsed)} / ${humanBytes(g.vramTotal)}` : ""];
    const title = `${g.name}${g.temp != null ? ` · ${g.temp.toFixed(0)} °C` : ""}`;
    chips.push(chip(g.name.replace(/^NVIDIA\s+/, ""), parts.filter(Boolean).join(" · ") || "–", pct(g.vramUsed, g.vramTotal) ?? g.util, title));
  }
  if (!v.gpus.length) {
    // The reason (e.g. the pynvml error) is long: keep the chip short and put it in the tooltip.
    const c = chip("GPU", "no NVIDIA GPU", null, v.gpuNote);
    c.classList.add("sdp-chip-muted");
    chips.push(c);
  }
  chips.push(chip("CPU", v.cpu != null ? `${v.cpu.toFixed(0)}%` : "–", v.cpu, "CPU utilisation"));
  chips.push(chip("RAM", v.ramTotal ? `${humanBytes(v.ramUsed)} / ${humanBytes(v.ramTotal)}` : "–", pct(v.ramUsed, v.ramTotal), "Memory in use"));
  const diskUsed = v.diskTotal != null && v.diskFree != null ? v.diskTotal - v.diskFree : null;
  chips.push(chip("Disk", v.diskFree != null ? `${humanBytes(v.diskFree)} free` : "–", pct(diskUsed, v.diskTotal), v.diskTotal ? `${humanBytes(v.diskFree)} free of ${humanBytes(v.diskTotal)} (storage root)` : "Free space of the storage root"));
  host.replaceChildren(...chips);
  // When the sample was taken: tests (and curious users, via devtools) can see it is live.
  const time = isObj(raw) ? raw.time : undefined;
  if (typeof time === "number") host.dataset.sampleTime = String(time);
}

/** "Colab · tunnel" style label from a platform dict (or a bare name string). */
export function platformLabel(raw: unknown): string {
  if (typeof raw === "string") return raw;
  if (!isObj(raw)) return "unknown platform";
  const name = str(raw, "label", "title", "name") || "unknown platform";
  return name;
}
