#!/usr/bin/env node
// Build step (npm run build, after tsc): yargs and its dependencies as one module,
// dist/vendor/yargs.js, which src/cli/main.ts imports (its types: src/vendor/yargs.d.ts).
//
// Every dr-* command parses its flags with yargs before it does anything. Loaded as the
// package ships it, yargs is about 60 separate ES modules, and resolving and compiling
// them took about 55 ms of each command's start on the 2-core test machine; the same code
// as one module loads in about 30 ms. Nothing else changes: inside the bundle
// import.meta.url is the address of yargs' own entry shim, so it finds its locale files
// and its package directory exactly where the unbundled package would.
import { build } from 'esbuild';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const entry = require.resolve('yargs');

// The shim's address, worked out where the bundle runs (the package may be installed elsewhere).
const banner = [
  "import { createRequire as __drkitRequire } from 'node:module';",
  "import { pathToFileURL as __drkitFileUrl } from 'node:url';",
  "const __yargsShimUrl = __drkitFileUrl(__drkitRequire(import.meta.url).resolve('yargs/package.json').replace(/package\\.json$/, 'lib/platform-shims/esm.mjs')).href;",
].join('\n');

await build({
  entryPoints: [entry],
  outfile: join(root, 'dist', 'vendor', 'yargs.js'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  banner: { js: banner },
  define: { 'import.meta.url': '__yargsShimUrl' },
  logLevel: 'warning',
});
