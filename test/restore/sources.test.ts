// PointInTimeReader.sources(): the file ranges a read needs. A copy of a pruned store
// whose segment data files and base images are all-hole placeholders of the same size
// is opened (only index files and base maps are read), sources() is asked, exactly
// those ranges are copied in from the real store, and then every read equals the
// reference: the ranges are complete, and nothing else was read to open the reader.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { JournalStore } from '../../src/store/index.js';
import { run } from '../helpers/run.js';
import { buildStore } from '../helpers/restore-store.js';

/** Copy `dir` to `to`, with every segment data file and base image replaced by a hole of the same size. */
function placeholderCopy(dir: string, to: string): void {
  fs.cpSync(dir, to, { recursive: true });
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(seg|img)$/.test(e.name) || p.includes(`${path.sep}segments${path.sep}`) && !/\.idx$/.test(e.name)) {
        const size = fs.statSync(p).size;
        fs.truncateSync(p, 0);
        fs.truncateSync(p, size);
      }
    }
  };
  walk(to);
}

t.test('sources() lists every range a read needs, without reading segment data', async (t) => {
  const { dir, work, w } = await buildStore(t, { seed: 5901, records: 500, markEvery: 50 }, { segmentSize: '256K', parts: 2 });
  const ls = JSON.parse((await run('dr-journal', ['ls', dir, '--json'])).stdout.toString());
  const p = await run('dr-journal', ['prune', dir, '--keep-size', String(Math.floor(ls.segmentBytes / 2)), '--json']);
  t.equal(p.code, 0, p.stderr);
  const pr = JSON.parse(p.stdout.toString());
  t.ok(pr.foldedSegments > 0, 'pruned: base images exist');

  const copy = path.join(work, 'copy');
  placeholderCopy(dir, copy);
  const seq = w.marks[w.marks.length - 2]!.seq;
  const ref = w.imagesAt(seq);

  const store = await JournalStore.open(copy, { readOnly: true });
  const pit = await store.pointInTime(seq);
  t.teardown(() => pit.release());
  const realDir = fs.realpathSync(dir);
  const copyDir = path.resolve(copy);
  let ranges = 0;
  let baseRanges = 0;
  // asked at once (the block map may still be building) and for sub-ranges
  const asks = w.volumes.flatMap((v, i) => [
    { volume: i, offset: 0, length: v.size },
    { volume: i, offset: 1000, length: 70001 },
  ]);
  for (const a of asks) {
    const src = pit.sources(a.volume, a.offset, a.length);
    t.ok(src.length > 0, `volume ${a.volume} ${a.offset}+${a.length}: ${src.length} ranges`);
    const byFile = new Map<string, Array<{ pos: number; length: number }>>();
    for (const r of src) {
      t.ok(path.isAbsolute(r.file) && r.file.startsWith(copyDir), `absolute path in the store: ${r.file}`);
      t.ok(r.pos >= 0 && r.length > 0 && r.pos + r.length <= fs.statSync(r.file).size, 'range within the file');
      byFile.set(r.file, [...(byFile.get(r.file) ?? []), r]);
      if (r.file.endsWith('.img')) baseRanges++;
      // fetch it from the real store
      const from = fs.openSync(path.join(realDir, path.relative(copyDir, r.file)), 'r');
      const to = fs.openSync(r.file, 'r+');
      const buf = Buffer.alloc(r.length);
      fs.readSync(from, buf, 0, r.length, r.pos);
      fs.writeSync(to, buf, 0, r.length, r.pos);
      fs.closeSync(from);
      fs.closeSync(to);
      ranges++;
    }
    for (const [file, list] of byFile) {
      list.sort((x, y) => x.pos - y.pos);
      for (let i = 1; i < list.length; i++) t.ok(list[i]!.pos > list[i - 1]!.pos + list[i - 1]!.length, `${path.basename(file)}: ranges coalesced, none adjacent or overlapping`);
    }
    const got = await pit.read(a.volume, a.offset, a.length);
    t.ok(got.equals(ref[a.volume]!.subarray(a.offset, a.offset + a.length)), `volume ${a.volume} ${a.offset}+${a.length} equals the reference once its sources are fetched`);
  }
  t.ok(baseRanges > 0, `${baseRanges} of ${ranges} ranges are in base images`);
  t.same(pit.sources(0, 0, 0), [], 'an empty read needs nothing');
  t.throws(() => pit.sources(0, w.volumes[0]!.size - 10, 20), { code: 'DR_OUT_OF_RANGE' }, 'past the end is refused');
});
