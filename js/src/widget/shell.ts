// The app shell: header (platform + system chips + sidebar button), tab bar, active tab body.
// One function renders a view into any element, so the cell output and the JupyterLab sidebar
// show the same live model.
import { platformLabel, renderChips } from "../common/system";
import { h } from "./dom";
import { TAB_MODULES } from "./tabs";
import type { PanelModel } from "./types";


export function renderShell(model: PanelModel, el: HTMLElement, where: "cell" | "sidebar"): () => void {
  const root = h("div", { class: `sdpanel-root sdp-${where}` });
  const platform = h("span", { class: "sdp-platform" });
  const chips = h("div", { class: "sdp-chips" });
  const sideBtn = h("button", { class: "sdp-btn sdp-sidebar-btn", type: "button" });
  const tabBar = h("nav", { class: "sdp-tabs", role: "tablist" });
  const body = h("section", { class: "sdp-body", role: "tabpanel" });
  const toasts = h("div", { class: "sdp-toasts" });
  root.append(
    h("header", { class: "sdp-header" },
      h("div", { class: "sdp-brand" }, h("span", { class: "sdp-logo" }, "SD"), h("span", { class: "sdp-title" }, "sdpanel"), platform),
      chips,
      sideBtn),
    tabBar, body, toasts,
  );
  el.append(root);

  let mountedTab = "";
  let unmountTab: (() => void) | null = null;

  const drawHeader = () => {
    const p = model.get("platform") ?? {};
    platform.textContent = platformLabel(p);
    platform.title = Object.entries(p).map(([k, v]) => `${k}: ${v}`).join("\n");
  };
  const drawSystem = () => renderChips(chips, model.get("system"));
  const drawSidebarBtn = () => {
    const host = window.sdpanelSidebar;
    const on = Boolean(model.get("in_sidebar"));
    // Without the JupyterLab extension (Colab, classic Notebook) there is no sidebar to show in.
    sideBtn.hidden = !host;
    if (where === "sidebar") {
      sideBtn.textContent = "Close";
      sideBtn.title = "Remove this live view from the sidebar";
    } else {
      sideBtn.textContent = on ? "In sidebar ✓" : "Show in sidebar";
      sideBtn.title = on ? "Click to remove it from the sidebar" : "Show a live view in JupyterLab's SD sidebar";
      sideBtn.classList.toggle("sdp-on", on);
    }
  };
  sideBtn.addEventListener("click", () => {
    model.set("in_sidebar", where === "sidebar" ? false : !model.get("in_sidebar"));
    model.save_changes();
  });

  const visibleTabs = () => (model.get("tabs") ?? []).filter((t) => t.id in TAB_MODULES);
  const currentTab = () => {
    const tabs = visibleTabs();
    const want = model.get("active_tab");
    return tabs.some((t) => t.id === want) ? want : tabs[0]?.id ?? "";
  };
  const drawTabs = () => {
    const active = currentTab();
    const tabs = visibleTabs();
    tabBar.replaceChildren(
      ...tabs.map((t) =>
        h("button", {
          class: `sdp-tab${t.id === active ? " sdp-active" : ""}`,
          type: "button",
          role: "tab",
          "aria-selected": t.id === active ? "true" : "false",
          "data-tab": t.id,
          onclick: () => {
            model.set("active_tab", t.id);
            model.save_changes();
          },
        }, t.label),
      ),
    );
    if (active === mountedTab) return;
    unmountTab?.();
    unmountTab = null;
    body.replaceChildren();
    mountedTab = active;
    if (!active) {
      body.append(h("p", { class: "sdp-empty" }, "No features are installed yet."));
      return;
    }
    const act = (action: string, payload: Record<string, unknown> = {}) => model.send({ action, ...payload });
    unmountTab = TAB_MODULES[active].render({ model, el: body, act });
  };

  const toast = (level: string, text: string) => {
    const t = h("div", { class: `sdp-toast sdp-${level}` }, text);
    toasts.append(t);
    setTimeout(() => t.remove(), 6000);
  };
  // Toasts are per view: anywidget hands initialize() and each render() a different model
  // proxy, so a map keyed by the model object never matched. A toast sent while no view
  // exists is meaningless anyway (sound cues, which must play once, live in initialize()).
  const onToast = (msg: { cue?: string; level?: string; message?: string }) => {
    if (msg?.cue === "toast") toast(msg.level ?? "info", msg.message ?? "");
  };
  model.on("msg:custom", onToast);

  drawHeader();
  drawSystem();
  drawSidebarBtn();
  drawTabs();
  const listeners: [string, () => void][] = [
    ["change:platform", drawHeader],
    ["change:system", drawSystem],
    ["change:in_sidebar", drawSidebarBtn],
    ["change:tabs", drawTabs],
    ["change:active_tab", drawTabs],
  ];
  for (const [ev, fn] of listeners) model.on(ev, fn);
  // The extension may load after the first render (page start); re-check for its hook once.
  const late = setTimeout(drawSidebarBtn, 1500);
  return () => {
    clearTimeout(late);
    for (const [ev, fn] of listeners) model.off(ev, fn);
    model.off("msg:custom", onToast);
    unmountTab?.();
    root.remove();
  };
}
