// The "SD" left-sidebar plugin: a kernel-free status view (GET /sdpanel/api/status) and a
// host for a kernel's live Panel view (window.sdpanelSidebar.mount, used by the widget ESM).
import type { JupyterFrontEnd, JupyterFrontEndPlugin, ILayoutRestorer } from "@jupyterlab/application";
import css from "../widget/styles.css";
import type { SidebarHost } from "../widget/types";
import type { Shared } from "./shared";
import { SidebarGenerate } from "./generate";
import { StatusView } from "./status";

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16" height="16">
<rect x="2" y="2" width="20" height="20" rx="5" class="jp-icon3" fill="#616161"/>
<text x="12" y="16" text-anchor="middle" font-family="sans-serif" font-size="10" font-weight="700" fill="#fff">SD</text></svg>`;

function injectStyle(): void {
  if (document.getElementById("sdpanel-lab-style")) return;
  const style = document.createElement("style");
  style.id = "sdpanel-lab-style";
  style.textContent = css;
  document.head.append(style);
}

export function createPlugins(shared: Shared): JupyterFrontEndPlugin<void>[] {
  const { application, services, widgets, ui } = shared;
  const icon = new ui.LabIcon({ name: "sdpanel:sd", svgstr: ICON_SVG });

  const sidebar: JupyterFrontEndPlugin<void> = {
    id: "sdpanel:sidebar",
    description: "sdpanel status and live Panel in the left sidebar",
    autoStart: true,
    optional: [application.ILayoutRestorer],
    activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null) => {
      injectStyle();
      const panel = new widgets.Widget();
      panel.id = "sdpanel-sidebar";
      panel.addClass("sdpanel-lab-sidebar");
      panel.title.icon = icon;
      panel.title.caption = "SD — sdpanel status";
      panel.node.style.overflowY = "auto";
      panel.node.style.background = "var(--jp-layout-color1)";

      const live = document.createElement("div");
      live.className = "sdpanel-live-host";
      const statusEl = document.createElement("div");
      const generateEl = document.createElement("div");
      panel.node.append(live, statusEl, generateEl);
      const status = new StatusView(statusEl, services.ServerConnection, () => panel.isVisible);
      // Kernel-free Generate (REST + SSE): works before any notebook is open.
      new SidebarGenerate(generateEl, services.ServerConnection, () => panel.isVisible).start();

      let current: { cleanup: () => void; onClose: () => void } | null = null;
      const host: SidebarHost = {
        mount(view) {
          if (current) {
            const prev = current;
            current = null;
            prev.cleanup();
            prev.onClose();
          }
          live.replaceChildren();
          const cleanup = view.render(live);
          const mine = { cleanup, onClose: view.onClose };
          current = mine;
          status.setCompact(true);
          if (!panel.isAttached) app.shell.add(panel, "left", { rank: 850 });
          app.shell.activateById(panel.id);
          return () => {
            if (current !== mine) return;
            current = null;
            cleanup();
            live.replaceChildren();
            status.setCompact(false);
          };
        },
      };
      (window as unknown as { sdpanelSidebar?: SidebarHost }).sdpanelSidebar = host;

      app.shell.add(panel, "left", { rank: 850 });
      restorer?.add(panel, "sdpanel-sidebar");
      status.start();
    },
  };
  return [sidebar];
}
