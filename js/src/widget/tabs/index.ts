// Front ends of the feature tabs, by tab id. The Python registry (sdpanel.panels.register_tab)
// decides which tabs exist; the shell shows a registered tab only when its module is here.
import type { TabModule } from "../types";
import { downloadsTab } from "./downloads";
import { generateTab } from "./generate";
import { launchTab } from "./launch";
import { modelsTab } from "./models";
import { settingsTab } from "./settings";
import { storageTab } from "./storage";

export const TAB_MODULES: Record<string, TabModule> = {
  downloads: downloadsTab,
  generate: generateTab,
  launch: launchTab,
  models: modelsTab,
  settings: settingsTab,
  storage: storageTab,
};
