#!/usr/bin/env node
// Builds the blocklist policy plugin (src/blocklist.js) into a WebAssembly component of the
// world `wasmpay:policy/plugin@0.1.0` (the frozen wit/deps/policy@0.1.0/policy.wit), with
// ComponentizeJS. It stays a 0.1.0 plugin, filling the engine's compatibility slot: built
// against the same frozen text by the same toolchain, its component types and exports are
// byte for byte those of its first build. (ComponentizeJS's snapshot of the JavaScript
// engine differs from one build to the next, so the whole file never is.)
//
//   node build.mjs [OUTPUT]      OUTPUT defaults to dist/blocklist.wasm in this folder;
//                                a relative OUTPUT is taken from the current directory.
//
// Rebuilds only when an input (the JS sources, the WIT files including deps/, the lockfile or
// this script) is newer than OUTPUT. Set FORCE=1 to rebuild anyway.
//
// Every ComponentizeJS feature is disabled, so the component imports no WASI interface at all:
// console output, Date/performance clocks, Math.random/crypto and fetch trap instead.

import { mkdir, readdir, rename, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const sourcePath = join(here, 'src', 'blocklist.js');
const witPath = resolve(here, '..', '..', 'wit', 'policy');
// wit/policy is the current contract; its deps hold 0.1.0, named with its version here.
const worldName = 'wasmpay:policy/plugin@0.1.0';
const disableFeatures = ['stdio', 'random', 'clocks', 'http', 'fetch-event'];
const output = resolve(process.argv[2] ?? join(here, 'dist', 'blocklist.wasm'));

/** Every file under `dir`, following symbolic links (wit/policy/deps is one). */
async function filesUnder(dir) {
  const files = [];
  for (const entry of await readdir(dir)) {
    const path = join(dir, entry);
    const info = await stat(path);
    if (info.isDirectory()) files.push(...(await filesUnder(path)));
    else if (info.isFile()) files.push(path);
  }
  return files;
}

/** The newest modification time among the build's inputs, in ms. */
async function newestInput() {
  const inputs = [
    ...(await filesUnder(join(here, 'src'))),
    ...(await filesUnder(witPath)),
    join(here, 'package-lock.json'),
    fileURLToPath(import.meta.url),
  ];
  let newest = 0;
  for (const path of inputs) newest = Math.max(newest, (await stat(path)).mtimeMs);
  return newest;
}

async function main() {
  const outputTime = await stat(output).then((s) => s.mtimeMs, () => -1);
  if (!process.env.FORCE && outputTime >= (await newestInput())) {
    console.log(`${output} is up to date`);
    return;
  }

  const started = Date.now();
  // Imported here so an up-to-date check costs nothing.
  const { componentize } = await import('@bytecodealliance/componentize-js');
  const { component } = await componentize({
    sourcePath,
    witPath,
    worldName,
    disableFeatures,
  });

  // Write beside the output and rename, so a failed build never leaves a truncated file.
  await mkdir(dirname(output), { recursive: true });
  const partial = `${output}.partial`;
  await writeFile(partial, component);
  await rename(partial, output);
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`built ${output} (${component.length} bytes) in ${secs}s`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
