// Launch tab: WebUI / GPU / arguments / tunnels form, install-start-stop-restart, the state
// badge (with install progress and the crash's last lines), links with copy buttons, the GPU
// meter (from the shell's 1 Hz system sample) and the live log tail.
// Python owns every state shown (launch_status / launch_log traits); the browser owns the
// form. Tunnel passwords arrive as a custom message, are kept in this page's memory only,
// and Python forgets them once a view confirms it showed them.
import { humanBytes, normalizeSystem } from "../../common/system";
import { h } from "../dom";
import type { PanelModel, TabContext, TabModule } from "../types";
import "./launch.css";

interface Tunnel { tool: string; url: string | null; user: string | null; auth: string | null; state: string; secret: boolean }
interface Status {
  state: string; installed: boolean; port: number | null; pid: number | null; url: string | null;
  exit_code: number | null; message: string; tail: string[]; tunnels: Tunnel[];
  progress: { done: number; total: number | null; message: string } | null;
  busy: string; error: string; retry: string; restarting: boolean; version: string;
}
interface Registry {
  webuis?: { id: string; label: string }[]; tunnels?: string[]; proxy?: boolean;
  defaults?: { gpu: number; args: string; tunnels: string[] };
}
interface Secret { webui: string; tool: string; user: string; password: string }
interface Form { gpu: string; args: string; source: string; ref: string; tunnels: Set<string>; extensions: boolean }

const STATE_LABEL: Record<string, string> = {
  not_installed: "not installed", installing: "installing", installed: "installed", starting: "starting",
  ready: "ready", crashed: "crashed", stopped: "stopped", failed: "install failed",
};
const BUSY_LABEL: Record<string, string> = {
  installing: "installing", starting: "starting", stopping: "stopping", restarting: "restarting",
  updating: "updating", switching: "switching",
};

// Per model, in page memory only (never a trait): the form and the passwords on show.
const forms = new WeakMap<PanelModel, Form>();
const secrets = new WeakMap<PanelModel, Map<string, Secret>>();
const secretsOf = (m: PanelModel): Map<string, Secret> => {
  let s = secrets.get(m);
  if (!s) secrets.set(m, (s = new Map()));
  return s;
};

/** The Jupyter server's base URL as the browser sees it (the kernel cannot know it). */
export function jupyterBase(): string | null {
  const el = document.getElementById("jupyter-config-data");
  if (!el?.textContent) return null;
  try {
    const base = (JSON.parse(el.textContent) as { baseUrl?: string }).baseUrl;
    return typeof base === "string" && base ? (base.endsWith("/") ? base : `${base}/`) : null;
  } catch {
    return null;
  }
}

export function proxyUrl(port: number, base: string | null = jupyterBase()): string | null {
  return base ? new URL(`${base}proxy/${port}/`, window.location.origin).href : null;
}

async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard API (insecure context): the old way.
    const ta = h("textarea", {});
    ta.value = text;
    ta.style.position = "fixed";
    ta.style.opacity = "0";
    document.body.append(ta);
    ta.select();
    const ok = document.execCommand("copy");
    ta.remove();
    return ok;
  }
}

function copyButton(text: string, what: string): HTMLButtonElement {
  const b = h("button", { class: "sdp-btn sdp-copy", type: "button", title: `Copy the ${what}`, "data-copy": what }, "Copy");
  b.addEventListener("click", () => {
    void copyText(text).then((ok) => {
      b.textContent = ok ? "Copied ✓" : "Copy failed";
      setTimeout(() => (b.textContent = "Copy"), 1500);
    });
  });
  return b;
}

function linkRow(label: string, url: string, kind: string, extra?: Node | null): HTMLElement {
  return h("div", { class: "sdp-ln-row", "data-link": kind },
    h("span", { class: "sdp-ln-label" }, label),
    h("a", { class: "sdp-ln-url sdp-mono", href: url, target: "_blank", rel: "noopener" }, url),
    extra ?? null,
    copyButton(url, `${label} link`));
}

function render({ model, el, act }: TabContext): () => void {
  const reg = (): Registry => (model.get("launch_webuis") ?? {}) as Registry;
  let form = forms.get(model);
  if (!form) {
    const d = reg().defaults;
    form = { gpu: d ? String(d.gpu) : "0", args: d?.args ?? "", source: "", ref: "", tunnels: new Set(d?.tunnels ?? []), extensions: true };
    forms.set(model, form);
  }
  const f = form;

  // ---- form ----
  const webuiSel = h("select", { class: "sdp-input", "data-field": "webui" });
  const gpuSel = h("select", { class: "sdp-input", "data-field": "gpu" });
  const argsIn = h("input", { class: "sdp-input sdp-mono", type: "text", "data-field": "args", placeholder: "e.g. --lowvram --preview-method auto" });
  const sourceIn = h("input", { class: "sdp-input sdp-mono", type: "text", "data-field": "source", placeholder: "empty: the registry's package, else git" });
  const refIn = h("input", { class: "sdp-input sdp-mono", type: "text", "data-field": "ref", placeholder: "e.g. v0.3.64, master or a commit" });
  const tunnelBox = h("div", { class: "sdp-la-tunnels", "data-field": "tunnels" });
  const extIn = h("input", { type: "checkbox", "data-field": "extensions" });
  extIn.checked = f.extensions;
  extIn.addEventListener("change", () => (f.extensions = extIn.checked));
  argsIn.value = f.args;
  sourceIn.value = f.source;
  argsIn.addEventListener("input", () => (f.args = argsIn.value));
  sourceIn.addEventListener("input", () => (f.source = sourceIn.value));
  refIn.value = f.ref;
  refIn.addEventListener("input", () => {
    f.ref = refIn.value;
    drawStatus();
  });
  gpuSel.addEventListener("change", () => (f.gpu = gpuSel.value));
  webuiSel.addEventListener("change", () => {
    model.set("launch_webui", webuiSel.value);
    model.save_changes();
    // The choice is the `webui` setting (one source of truth): saved, and shown in Settings.
    act("settings.set", { key: "webui", value: webuiSel.value });
    draw();
  });
  const field = (label: string, input: HTMLElement, help?: string) =>
    h("label", { class: "sdp-field" }, h("span", { class: "sdp-field-label" }, label), input, help ? h("span", { class: "sdp-field-help" }, help) : null);

  // ---- controls ----
  const badge = h("span", { class: "sdp-la-badge", "data-state": "" });
  const busy = h("span", { class: "sdp-la-busy" });
  const procInfo = h("span", { class: "sdp-la-proc sdp-mono sdp-muted" });
  const progress = h("div", { class: "sdp-la-progress" }, h("span", {}));
  const progressText = h("span", { class: "sdp-la-progress-text sdp-mono" });
  const buttons: Record<string, HTMLButtonElement> = {};
  for (const [verb, label, cls] of [["install", "Install", ""], ["update", "Update", ""], ["start", "Start", "sdp-primary"], ["stop", "Stop", ""], ["restart", "Restart", ""], ["switch", "Switch", ""]]) {
    buttons[verb] = h("button", { class: `sdp-btn ${cls}`, type: "button", "data-act": verb }, label);
    buttons[verb].addEventListener("click", () => act(`launch.${verb}`, payload()));
  }
  const gpuMeter = h("div", { class: "sdp-la-gpu" });
  const errorBox = h("div", { class: "sdp-la-error", hidden: true });
  const crashBox = h("div", { class: "sdp-la-crash", hidden: true });
  const links = h("div", { class: "sdp-la-links" });
  const logPre = h("pre", { class: "sdp-la-log sdp-mono", tabindex: "0" });
  const logHead = h("span", { class: "sdp-muted sdp-la-log-count" });

  const tab = h("div", { class: "sdp-la-root" });
  el.append(tab);
  tab.append(
    h("div", { class: "sdp-section" }, h("h3", {}, "WebUI"),
      h("div", { class: "sdp-form sdp-la-form" },
        field("WebUI", webuiSel),
        field("GPU", gpuSel),
        field("Arguments", argsIn, "Extra command-line flags"),
        field("Install from", sourceIn, ".zip / .tar.zst / .tar.lz4 or git URL"),
        h("div", { class: "sdp-field sdp-la-switch" }, h("span", { class: "sdp-field-label" }, "Switch to"),
          h("div", { class: "sdp-la-switch-row" }, refIn, buttons.switch),
          h("span", { class: "sdp-field-help" }, "A tag, branch or commit; local changes are kept")),
      ),
      h("div", { class: "sdp-la-row2" },
        h("div", { class: "sdp-field sdp-la-tunnel-field" }, h("span", { class: "sdp-field-label" }, "Public tunnels"), tunnelBox,
          h("span", { class: "sdp-field-help" }, "Each public URL is behind a login; its password is shown once here")),
        h("label", { class: "sdp-la-check" }, extIn, h("span", {}, "Install the default extensions / custom nodes"))),
    ),
    h("div", { class: "sdp-la-bar" },
      h("div", { class: "sdp-la-state" }, badge, busy, procInfo, h("div", { class: "sdp-la-prog-wrap" }, progress, progressText)),
      h("div", { class: "sdp-la-buttons" }, buttons.install, buttons.update, buttons.start, buttons.stop, buttons.restart)),
    gpuMeter,
    errorBox,
    crashBox,
    h("div", { class: "sdp-section" }, h("h3", {}, "Links"), links),
    h("div", { class: "sdp-section" }, h("h3", {}, "Log ", logHead), logPre),
  );

  const current = (): string => {
    const ids = (reg().webuis ?? []).map((w) => w.id);
    const want = String(model.get("launch_webui") ?? "");
    return ids.includes(want) ? want : ids[0] ?? "";
  };
  const status = (): Status | undefined => ((model.get("launch_status") ?? {}) as Record<string, Status>)[current()];
  const payload = (): Record<string, unknown> => ({
    webui: current(), gpu: f.gpu === "cpu" ? null : Number(f.gpu), args: f.args, source: f.source,
    tunnels: [...f.tunnels], extensions: f.extensions, ref: f.ref,
  });

  const drawForm = () => {
    const r = reg();
    const want = current();
    if (webuiSel.options.length !== (r.webuis ?? []).length) {
      webuiSel.replaceChildren(...(r.webuis ?? []).map((w) => h("option", { value: w.id }, w.label)));
    }
    webuiSel.value = want;
    const tools = r.tunnels ?? [];
    if (tunnelBox.childElementCount !== tools.length) {
      tunnelBox.replaceChildren(...tools.map((t) => {
        const cb = h("input", { type: "checkbox", value: t });
        cb.checked = f.tunnels.has(t);
        cb.addEventListener("change", () => {
          if (cb.checked) f.tunnels.add(t);
          else f.tunnels.delete(t);
          chip.classList.toggle("sdp-on", cb.checked);
        });
        const chip = h("label", { class: `sdp-la-chip${cb.checked ? " sdp-on" : ""}`, "data-tunnel": t }, cb, t);
        return chip;
      }));
    }
  };

  const drawGpu = () => {
    const v = normalizeSystem(model.get("system"));
    const opts = v.gpus.map((g, i) => ({ value: String(i), label: `GPU ${i}: ${g.name.replace(/^NVIDIA\s+/, "")}` }));
    opts.push({ value: "cpu", label: "CPU only" });
    const sig = opts.map((o) => o.value + o.label).join("|");
    if (gpuSel.dataset.sig !== sig) {
      gpuSel.dataset.sig = sig;
      gpuSel.replaceChildren(...opts.map((o) => h("option", { value: o.value }, o.label)));
    }
    if (!opts.some((o) => o.value === f.gpu)) f.gpu = opts[0].value;
    gpuSel.value = f.gpu;
    // Meter for the GPU in the form (≤ 1 Hz: the shell's system sample).
    const g = f.gpu === "cpu" ? undefined : v.gpus[Number(f.gpu)];
    if (!g) {
      gpuMeter.replaceChildren(h("span", { class: "sdp-muted sdp-la-cpu", title: v.gpuNote },
        v.gpus.length ? "CPU only: the WebUI runs without the GPU (slow)." : "No NVIDIA GPU here: the WebUI runs on the CPU (slow)."));
      gpuMeter.dataset.gpu = "none";
      return;
    }
    gpuMeter.dataset.gpu = f.gpu;
    const vramPct = g.vramUsed != null && g.vramTotal ? (100 * g.vramUsed) / g.vramTotal : null;
    const bar = (label: string, pct: number | null, text: string, key: string) => {
      const fill = h("span", {});
      fill.style.width = `${Math.max(0, Math.min(100, pct ?? 0)).toFixed(0)}%`;
      if ((pct ?? 0) > 90) fill.classList.add("sdp-hot");
      return h("div", { class: "sdp-la-meter", "data-meter": key },
        h("span", { class: "sdp-la-meter-label" }, label), h("div", { class: "sdp-la-meter-bar" }, fill),
        h("span", { class: "sdp-la-meter-text sdp-mono" }, text));
    };
    gpuMeter.replaceChildren(
      bar("GPU", g.util, g.util != null ? `${g.util.toFixed(0)}%` : "–", "util"),
      bar("VRAM", vramPct, g.vramTotal ? `${humanBytes(g.vramUsed)} / ${humanBytes(g.vramTotal)}` : "–", "vram"),
    );
  };

  const drawStatus = () => {
    const s = status();
    const state = s?.state ?? "not_installed";
    const busyNow = s?.busy ?? "";
    badge.dataset.state = state;
    const label = STATE_LABEL[state] ?? state;
    badge.textContent = label.charAt(0).toUpperCase() + label.slice(1);
    if (state === "crashed" && s?.exit_code != null) badge.textContent += ` (exit ${s.exit_code})`;
    if (state === "crashed" && s?.restarting) badge.textContent += " · restarting";
    busy.textContent = busyNow && BUSY_LABEL[busyNow] !== state ? `${BUSY_LABEL[busyNow] ?? busyNow}…` : "";
    const up = (state === "ready" || state === "starting") && s?.pid;
    procInfo.textContent = up && s ? `pid ${s.pid} · port ${s.port}` : s?.installed && s.version ? s.version : "";
    procInfo.title = s?.installed && s.version ? `Installed: ${s.version}` : "";
    const p = s?.progress;
    const showProg = state === "installing" && !!p;
    progress.parentElement!.hidden = !showProg;
    if (showProg && p) {
      const pct = p.total ? (100 * p.done) / p.total : null;
      (progress.firstChild as HTMLElement).style.width = pct != null ? `${pct.toFixed(1)}%` : "100%";
      progress.classList.toggle("sdp-indeterminate", pct == null);
      progressText.textContent = p.total ? `${humanBytes(p.done)} / ${humanBytes(p.total)}` : p.done ? humanBytes(p.done) : p.message;
    }
    const installed = Boolean(s?.installed);
    const running = state === "ready" || state === "starting" || (state === "crashed" && Boolean(s?.restarting));
    const idle = !busyNow && state !== "installing";
    buttons.install.disabled = !idle || running;
    buttons.install.textContent = installed ? "Reinstall" : "Install";
    buttons.install.classList.toggle("sdp-primary", !installed);
    buttons.start.classList.toggle("sdp-primary", installed);
    buttons.start.disabled = !idle || !installed || running;
    buttons.stop.disabled = !(running && busyNow !== "stopping");
    buttons.restart.disabled = !idle || state !== "ready";
    buttons.update.disabled = !idle || !installed || running;
    buttons.update.title = "Fast-forward the WebUI and its extensions, keeping local changes";
    buttons.switch.disabled = !idle || !installed || running || !f.ref.trim();
    // The form applies to the next start: locked while it runs.
    for (const i of [gpuSel, argsIn, sourceIn, extIn, refIn]) i.disabled = running || !idle;

    errorBox.hidden = !s?.error;
    if (s?.error) {
      const retry = s.retry ? h("button", { class: "sdp-btn", type: "button", "data-act": "retry" }, "Retry") : null;
      retry?.addEventListener("click", () => act(s.retry, payload()));
      const dismiss = h("button", { class: "sdp-btn", type: "button", "data-act": "dismiss" }, "Dismiss");
      dismiss.addEventListener("click", () => act("launch.dismiss", { webui: current() }));
      // First line: what failed, why and what to do; then the command's last lines.
      const [head, ...lines] = s.error.split("\n");
      const last = lines.length ? h("pre", { class: "sdp-mono sdp-la-error-lines" }, lines.join("\n")) : null;
      errorBox.replaceChildren(...[h("span", {}, head), retry, dismiss, last].filter((x): x is HTMLElement => x !== null));
    }
    crashBox.hidden = state !== "crashed";
    if (state === "crashed" && s) {
      const head = s.message.split("\n")[0].split(" Last log lines:")[0] || `Exited with code ${s.exit_code ?? "?"}.`;
      crashBox.replaceChildren(h("div", { class: "sdp-la-crash-head" }, head),
        h("pre", { class: "sdp-mono" }, s.tail.join("\n") || "(no output)"));
    }
    drawLinks(s);
  };

  const drawLinks = (s: Status | undefined) => {
    const rows: HTMLElement[] = [];
    const live = s && (s.state === "ready" || s.state === "starting") && s.port;
    if (live && s) {
      const local = s.url ?? `http://127.0.0.1:${s.port}`;
      rows.push(linkRow("Local", local, "local", h("span", { class: "sdp-muted sdp-ln-note" }, "this machine")));
      const proxied = reg().proxy ? proxyUrl(s.port as number) : null;
      if (proxied) rows.push(linkRow("Jupyter", proxied, "jupyter", h("span", { class: "sdp-muted sdp-ln-note" }, "behind Jupyter's login")));
      const shown = secretsOf(model);
      for (const t of s.tunnels) {
        if (!t.url) {
          rows.push(h("div", { class: "sdp-ln-row", "data-link": `tunnel-${t.tool}` }, h("span", { class: "sdp-ln-label" }, t.tool),
            h("span", { class: "sdp-muted" }, t.state === "failed" ? "failed (see the error above)" : `${t.state}…`)));
          continue;
        }
        const sec = shown.get(`${current()}/${t.tool}`);
        const note = h("span", { class: `sdp-la-tstate sdp-${t.state}` }, t.state);
        rows.push(linkRow(t.tool, t.url, `tunnel-${t.tool}`, note));
        if (sec) {
          const pw = h("code", { class: "sdp-la-secret", "data-secret": t.tool }, sec.password);
          const hide = h("button", { class: "sdp-btn", type: "button", title: "Forget it in this page" }, "Hide");
          hide.addEventListener("click", () => {
            shown.delete(`${current()}/${t.tool}`);
            drawStatus();
          });
          rows.push(h("div", { class: "sdp-ln-row sdp-la-login" }, h("span", { class: "sdp-ln-label" }, "login"),
            h("span", { class: "sdp-mono" }, `user ${sec.user} · password `), pw,
            h("span", { class: "sdp-warn-text" }, "shown once: copy it now"), copyButton(sec.password, "password"), hide));
        } else if (t.user) {
          rows.push(h("div", { class: "sdp-ln-row sdp-la-login" }, h("span", { class: "sdp-ln-label" }, "login"),
            h("span", { class: "sdp-mono sdp-muted" }, `user ${t.user} · password shown once when it started`)));
        }
      }
    }
    if (!rows.length) {
      const state = s?.state ?? "not_installed";
      rows.push(h("p", { class: "sdp-empty" }, state === "not_installed" ? "Install the WebUI, then start it: its links appear here."
        : "Start the WebUI: its links (local, Jupyter proxy, tunnels) appear here when it is ready."));
    }
    links.replaceChildren(...rows);
  };

  const drawLog = () => {
    const log = (model.get("launch_log") ?? {}) as { webui?: string; text?: string; lines?: number };
    const text = log.webui === current() ? log.text ?? "" : "";
    // Follow the end unless the reader scrolled up.
    const atEnd = logPre.scrollHeight - logPre.scrollTop - logPre.clientHeight < 24;
    const shown = text || "(no output yet)";
    if (logPre.textContent !== shown) {
      logPre.textContent = shown;
      logPre.classList.toggle("sdp-la-log-empty", !text);
      if (atEnd) logPre.scrollTop = logPre.scrollHeight;
    }
    logHead.textContent = text ? `· last ${log.lines} lines` : "";
  };

  const draw = () => {
    drawForm();
    drawStatus();
    drawLog();
  };
  const onMsg = (msg: Secret & { type?: string }) => {
    if (msg?.type !== "launch-secret") return;
    secretsOf(model).set(`${msg.webui}/${msg.tool}`, { webui: msg.webui, tool: msg.tool, user: msg.user, password: msg.password });
    drawStatus();
    act("launch.secret_seen", { webui: msg.webui, tool: msg.tool });
  };
  drawGpu();
  draw();
  const listeners: [string, (...a: never[]) => void][] = [
    ["change:launch_status", drawStatus],
    ["change:launch_log", drawLog],
    ["change:launch_webuis", draw],
    ["change:launch_webui", draw],
    ["change:system", drawGpu],
    ["msg:custom", onMsg],
  ];
  for (const [ev, fn] of listeners) model.on(ev, fn as () => void);
  act("launch.hello");
  return () => {
    for (const [ev, fn] of listeners) model.off(ev, fn as () => void);
    tab.remove();
  };
}

export const launchTab: TabModule = { render };
