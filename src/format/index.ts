export * from './layout.js';
export * from './codec.js';
export * from './streams.js';
