// anywidget entry of sdpanel.Panel. initialize() runs once per model: model-wide listeners
// (sidebar hosting, one-off cues) live there; render() runs once per view.
import type { Initialize, Render } from "@anywidget/types";
import { renderShell } from "./shell";
import { TAB_MODULES } from "./tabs";
import type { PanelModel, ShellTraits } from "./types";
import "./styles.css";

const initialize: Initialize<ShellTraits> = ({ model }) => {
  let unmount: (() => void) | null = null;
  const syncSidebar = () => {
    const want = Boolean(model.get("in_sidebar"));
    if (want && !unmount && window.sdpanelSidebar) {
      unmount = window.sdpanelSidebar.mount({
        render: (el) => renderShell(model as PanelModel, el, "sidebar"),
        onClose: () => {
          unmount = null;
          if (model.get("in_sidebar")) {
            model.set("in_sidebar", false);
            model.save_changes();
          }
        },
      });
    } else if (!want && unmount) {
      const u = unmount;
      unmount = null;
      u();
    }
  };
  model.on("change:in_sidebar", syncSidebar);
  // Tabs' model-wide hooks (once per model, however many views): e.g. the Downloads sound cues.
  const tabCleanups = Object.values(TAB_MODULES).map((t) => t.initialize?.(model as PanelModel));
  syncSidebar();
  // On page load widget models may be restored before the extension defines its hook.
  const retry = window.sdpanelSidebar ? 0 : window.setTimeout(syncSidebar, 2000);
  // Called when the model goes away (kernel restart, widget closed): take the sidebar view down.
  return () => {
    window.clearTimeout(retry);
    model.off("change:in_sidebar", syncSidebar);
    for (const c of tabCleanups) c?.();
    const u = unmount;
    unmount = null;
    u?.();
  };
};

const render: Render<ShellTraits> = ({ model, el }) => renderShell(model as PanelModel, el, "cell");

export default { initialize, render };
