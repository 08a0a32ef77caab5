// Types of dist/vendor/yargs.js, the yargs package bundled into one module at build time
// (scripts/bundle-yargs.mjs): the same API as the package.
export { default } from 'yargs';
