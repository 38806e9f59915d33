// Builds the front end into dist/, which the web component embeds (components/web/build.rs):
//   dist/app/   the wallet app: index.html, app.js (TypeScript bundled by esbuild), app.css
//   dist/docs/  the API reference: Swagger UI from node_modules, its initializer, openapi.yaml
// Run by `cargo xtask build` and `spin build` after `npm ci`. Type errors fail the build.

import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
const staging = join(here, "dist.new");
const repository = join(here, "../../..");

execFileSync(join(here, "node_modules/.bin/tsc"), ["--project", join(here, "tsconfig.json")], { stdio: "inherit" });

rmSync(staging, { recursive: true, force: true });
mkdirSync(join(staging, "app"), { recursive: true });
mkdirSync(join(staging, "docs"), { recursive: true });

await esbuild.build({
  entryPoints: [join(here, "src/main.ts")],
  outfile: join(staging, "app/app.js"),
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "none",
  logLevel: "warning",
});
for (const file of ["index.html", "app.css", "favicon.svg"]) {
  cpSync(join(here, "static", file), join(staging, "app", file));
}

const swagger = join(here, "node_modules/swagger-ui-dist");
cpSync(join(swagger, "swagger-ui-bundle.js"), join(staging, "docs/swagger-ui-bundle.js"));
cpSync(join(swagger, "swagger-ui.css"), join(staging, "docs/swagger-ui.css"));
cpSync(join(swagger, "LICENSE"), join(staging, "docs/swagger-ui-LICENSE.txt"));
for (const file of ["index.html", "docs.js"]) {
  cpSync(join(here, "docs", file), join(staging, "docs", file));
}
cpSync(join(repository, "openapi.yaml"), join(staging, "docs/openapi.yaml"));

// dist/ changes only where a file did: cargo rebuilds the component when dist/ changes.
syncInto(staging, dist);
rmSync(staging, { recursive: true, force: true });

function syncInto(from, to) {
  mkdirSync(to, { recursive: true });
  const fresh = new Set(readdirSync(from));
  for (const name of readdirSync(to)) {
    if (!fresh.has(name)) rmSync(join(to, name), { recursive: true, force: true });
  }
  for (const name of fresh) {
    const source = join(from, name);
    const target = join(to, name);
    if (readdirSync(from, { withFileTypes: true }).find((e) => e.name === name).isDirectory()) {
      syncInto(source, target);
    } else if (!existsSync(target) || !readFileSync(source).equals(readFileSync(target))) {
      renameSync(source, target);
    }
  }
}
