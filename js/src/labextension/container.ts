// A Module-Federation container, hand-made for esbuild. JupyterLab's bootstrap loads our
// remoteEntry script, calls window._JUPYTERLAB.sdpanel.init(shareScope) and later
// get("./extension") and calls the factory it resolves to. We provide no shared modules;
// we only consume JupyterLab's singletons from the share scope, choosing a version the
// way webpack's singleton rule does (one already loaded, else the highest).
import { createPlugins } from "./plugin";
import { SHARED_PACKAGES, type Shared } from "./shared";

interface ShareEntry {
  get: () => unknown;
  loaded?: number | boolean;
  from?: string;
  eager?: boolean;
}
type ShareScope = Record<string, Record<string, ShareEntry>>;

let scope: ShareScope | null = null;

function versionParts(v: string): number[] {
  return v.split(/[.+-]/).map((p) => (/^\d+$/.test(p) ? Number(p) : -1));
}

export function compareVersions(a: string, b: string): number {
  const pa = versionParts(a);
  const pb = versionParts(b);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d) return d;
  }
  return 0;
}

async function resolveShared(name: string): Promise<unknown> {
  const versions = scope?.[name];
  const keys = versions ? Object.keys(versions) : [];
  if (!versions || !keys.length) {
    throw new Error(`sdpanel: JupyterLab's share scope has no ${name}; JupyterLab 4 is required`);
  }
  const loaded = keys.filter((k) => versions[k].loaded);
  const ordered = (loaded.length ? loaded : keys).sort(compareVersions);
  const pick = ordered[ordered.length - 1];
  const entry = versions[pick];
  const factory = (await entry.get()) as () => unknown;
  entry.loaded = 1;
  return factory();
}

async function loadShared(): Promise<Shared> {
  const names = Object.keys(SHARED_PACKAGES) as (keyof Shared)[];
  const values = await Promise.all(names.map((n) => resolveShared(SHARED_PACKAGES[n])));
  return Object.fromEntries(names.map((n, i) => [n, values[i]])) as unknown as Shared;
}

const container = {
  init(shareScope: ShareScope): void {
    scope = shareScope;
  },
  async get(module: string): Promise<() => unknown> {
    if (module !== "./extension") throw new Error(`sdpanel: no module ${module} in this container`);
    const plugins = createPlugins(await loadShared());
    // __esModule makes JupyterLab read `default` as the plugin list.
    return () => ({ __esModule: true, default: plugins });
  },
};

const w = window as unknown as { _JUPYTERLAB?: Record<string, unknown> };
w._JUPYTERLAB = w._JUPYTERLAB ?? {};
w._JUPYTERLAB.sdpanel = container;
