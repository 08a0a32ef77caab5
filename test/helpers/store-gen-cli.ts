// Write a seeded test stream to a file: store-gen-cli.ts SEED RECORDS OUT [segment-ish options as JSON]
import fs from 'node:fs';
import { genStream, type GenOptions } from './store-streams.js';

const [seed = '1', records = '500', out = '/dev/stdout', extra = '{}'] = process.argv.slice(2);
const o: GenOptions = { seed: Number(seed), records: Number(records), flushEvery: 10, marks: [{ at: 100, name: 'a' }], unaligned: true, ...JSON.parse(extra) };
fs.writeFileSync(out, genStream(o).bytes);
