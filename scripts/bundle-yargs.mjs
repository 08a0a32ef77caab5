#!/usr/bin/env node
// Build step (npm run build, after tsc): yargs and its dependencies as one module,
// dist/vendor/yargs.js, which src/cli/main.ts imports (its types: src/vendor/yargs.d.ts).
//
// Every dr-* command parses its flags with yargs before it does anything. Loaded as the
// package ships it, yargs is about 60 separate ES modules, and resolving and compiling
// them took about 55 ms of each command's start on the 2-core test machine; the same code
// as one module loads in about 30 ms, 10 ms with string-width's set-up deferred (below).
// Nothing else changes: inside the bundle
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

// string-width (three copies: yargs', cliui's and wrap-ansi's) builds an Intl.Segmenter and
// compiles Unicode-property regexps when it is loaded: about 17 ms of every start, for a
// function that only runs when help or a usage error is printed. Each import of it gets a
// stand-in that loads the real module on its first call (esbuild bundles a require() of an
// ES module as a lazily run one), so the cost moves to the help screen.
const lazyStringWidth = {
  name: 'lazy-string-width',
  setup(builder) {
    builder.onResolve({ filter: /^string-width$/ }, async (args) => {
      if (args.pluginData === 'real') return undefined;
      const real = await builder.resolve(args.path, { resolveDir: args.resolveDir, kind: args.kind, importer: args.importer, pluginData: 'real' });
      if (real.errors.length > 0) return { errors: real.errors };
      return { path: real.path, namespace: 'lazy-string-width' };
    });
    builder.onLoad({ filter: /.*/, namespace: 'lazy-string-width' }, (args) => ({
      contents: `export default function stringWidth(text, options) { return require(${JSON.stringify(args.path)}).default(text, options); }`,
      resolveDir: dirname(args.path),
      loader: 'js',
    }));
  },
};

await build({
  entryPoints: [entry],
  plugins: [lazyStringWidth],
  outfile: join(root, 'dist', 'vendor', 'yargs.js'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  banner: { js: banner },
  define: { 'import.meta.url': '__yargsShimUrl' },
  logLevel: 'warning',
});
