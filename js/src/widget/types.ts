import type { AnyModel } from "@anywidget/types";

/** Traits of sdpanel.Panel that the shell itself reads (feature tabs add their own). */
export interface ShellTraits {
  platform: Record<string, unknown>;
  system: Record<string, unknown>;
  tabs: { id: string; label: string }[];
  active_tab: string;
  in_sidebar: boolean;
  [trait: string]: unknown;
}

export type PanelModel = AnyModel<ShellTraits>;

export interface TabContext {
  model: PanelModel;
  el: HTMLElement;
  /** Send a user intent to Python (handled by the tab's registered action). */
  act(action: string, payload?: Record<string, unknown>): void;
}

/** A feature tab's front end: js/src/widget/tabs/<name>.ts, listed in tabs/index.ts. */
export interface TabModule {
  render(ctx: TabContext): () => void;
  /** Optional model-wide hook, run once per model from the widget's initialize() (not per
   *  view): listeners for one-off custom messages (e.g. sound cues) that must act once even
   *  when the panel is shown twice. Returns a cleanup. */
  initialize?(model: PanelModel): (() => void) | void;
}

/** Hook the JupyterLab extension puts on window to host a live view in the left sidebar. */
export interface SidebarHost {
  mount(view: { render(el: HTMLElement): () => void; onClose(): void }): () => void;
}

declare global {
  interface Window {
    sdpanelSidebar?: SidebarHost;
  }
}
