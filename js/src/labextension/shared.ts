// Runtime values of the JupyterLab packages the extension uses. They come from JupyterLab's
// share scope (see container.ts); the source imports the packages as types only, so the
// bundle holds no second copy of JupyterLab.
export interface Shared {
  application: typeof import("@jupyterlab/application");
  services: typeof import("@jupyterlab/services");
  widgets: typeof import("@lumino/widgets");
  ui: typeof import("@jupyterlab/ui-components");
}

/** Package name in the share scope for each Shared field. */
export const SHARED_PACKAGES: Record<keyof Shared, string> = {
  application: "@jupyterlab/application",
  services: "@jupyterlab/services",
  widgets: "@lumino/widgets",
  ui: "@jupyterlab/ui-components",
};
