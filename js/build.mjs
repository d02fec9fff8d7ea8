// One bundler (esbuild) for both front-end outputs:
//  (a) the anywidget ESM  -> sdpanel/static/app.js + app.css
//  (b) the JupyterLab prebuilt extension -> sdpanel/labextension/{package.json, static/remoteEntry.<hash>.js}
// (b) is a hand-written Module-Federation-compatible container (see js/src/labextension/container.ts):
// JupyterLab only needs window._JUPYTERLAB[name] = {init, get}; the bundle imports JupyterLab packages
// as types only and takes their runtime values from the share scope, so it carries no copy of them.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const dev = process.argv.includes("--dev");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const common = {
  bundle: true,
  minify: !dev,
  sourcemap: dev ? "inline" : false,
  target: ["es2020"],
  logLevel: "warning",
  legalComments: "none",
};

async function buildWidget() {
  const outdir = join(root, "sdpanel", "static");
  rmSync(outdir, { recursive: true, force: true });
  await esbuild.build({
    ...common,
    entryPoints: { app: join(root, "js/src/widget/index.ts") },
    outdir,
    format: "esm",
  });
  return outdir;
}

async function buildLabextension() {
  const outdir = join(root, "sdpanel", "labextension");
  const result = await esbuild.build({
    ...common,
    entryPoints: [join(root, "js/src/labextension/container.ts")],
    format: "iife",
    write: false,
    outfile: "remoteEntry.js",
    // The widget stylesheet is injected by the sidebar as text: one CSS source for both bundles.
    loader: { ".css": "text" },
  });
  const code = result.outputFiles[0].contents;
  const hash = createHash("sha256").update(code).digest("hex").slice(0, 20);
  const entry = `static/remoteEntry.${hash}.js`;
  rmSync(outdir, { recursive: true, force: true });
  mkdirSync(join(outdir, "static"), { recursive: true });
  writeFileSync(join(outdir, entry), code);
  const labPkg = {
    name: "sdpanel",
    version: pkg.version,
    description: pkg.description,
    license: pkg.license,
    jupyterlab: {
      extension: true,
      outputDir: "sdpanel/labextension",
      _build: { load: entry, extension: "./extension" },
    },
  };
  writeFileSync(join(outdir, "package.json"), JSON.stringify(labPkg, null, 2) + "\n");
  return join(outdir, entry);
}

const [staticDir, remoteEntry] = await Promise.all([buildWidget(), buildLabextension()]);
const size = (dir) => readdirSync(dir).map((f) => `${f} ${readFileSync(join(dir, f)).length} B`).join(", ");
console.log(`sdpanel: widget -> ${staticDir} (${size(staticDir)})`);
console.log(`sdpanel: labextension -> ${remoteEntry}`);
