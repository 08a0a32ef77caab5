/**
 * One run of `dr-tap nbd`: open the backing stores and the journal (a store
 * directory, or a stream on standard output continued with a state file), serve
 * the exports, record baselines and signatures, answer the control socket, and on
 * SIGINT/SIGTERM stop cleanly: stop accepting, finish what is in flight, flush,
 * write the trailer.
 */
import fs from 'node:fs';
import { DrError, fromSystemError } from '../errors.js';
import { checkVolumeName, idToString, isPowerOfTwo, LIMITS, newId } from '../format/layout.js';
import type { Logger } from '../cli/log.js';
import { widenPipe } from '../cli/io.js';
import { createProgress } from '../cli/progress.js';
import { formatBytes } from '../cli/units.js';
import { ControlServer } from './control.js';
import { StoreSink, StreamSink, openStore, type JournalSink, type VolumeDecl } from './journal-sink.js';
import { NbdServer } from './server.js';
import { Tap, openBacking, type BackingVolume } from './tap.js';
import { readBackingCheckpoint, recoverBacking, writeBackingCheckpoint, type BackingCheckpoint } from './backing-checkpoint.js';
import { readTapState, writeTapState, type TapState } from './tap-state.js';

export interface TapOptions {
  exports: Array<{ name: string; path: string }>;
  socket?: string;
  port?: number;
  host: string;
  journal?: string;
  state?: string;
  control?: string;
  blockSize?: number;
  signEveryMs?: number;
  /** default: checkpoint with --journal, flush with a stream */
  backingSync?: 'flush' | 'checkpoint';
  checkpointEveryMs?: number;
  log: Logger;
  json: boolean;
  /** one JSON document for machine output (stdout when it is free, else stderr) */
  emit: (obj: Record<string, unknown>) => void;
  signal: AbortSignal;
}

export function parseExport(spec: string): { name: string; path: string } {
  const eq = spec.indexOf('=');
  if (eq <= 0 || eq === spec.length - 1) throw new DrError('DR_USAGE', `bad --export ${JSON.stringify(spec)}: use NAME=PATH`);
  const name = spec.slice(0, eq);
  try {
    checkVolumeName(name);
  } catch (err) {
    throw new DrError('DR_USAGE', `--export ${spec}: ${(err as Error).message}`);
  }
  return { name, path: spec.slice(eq + 1) };
}

export async function runNbdTap(o: TapOptions): Promise<number> {
  const { log } = o;
  if (o.exports.length === 0) throw new DrError('DR_USAGE', 'name at least one --export NAME=PATH');
  const names = new Set<string>();
  for (const e of o.exports) {
    if (names.has(e.name)) throw new DrError('DR_USAGE', `export ${e.name} named twice`);
    names.add(e.name);
  }
  if (o.blockSize !== undefined && (!isPowerOfTwo(o.blockSize) || o.blockSize < LIMITS.minBlockSize || o.blockSize > LIMITS.maxBlockSize)) {
    throw new DrError('DR_USAGE', `--block-size ${o.blockSize}: must be a power of two from 512 to 1M`);
  }
  if (o.journal && o.state) throw new DrError('DR_USAGE', '--state is for a stream on standard output; a --journal directory keeps its own state');
  const backingSync = o.backingSync ?? (o.journal ? 'checkpoint' : 'flush');
  if (backingSync === 'checkpoint' && !o.journal) {
    throw new DrError('DR_USAGE', '--backing-sync checkpoint needs --journal DIR (the journal must be local to repair the backing store from it)');
  }
  if (!o.journal && process.stdout.isTTY) throw new DrError('DR_USAGE', 'the journal stream would go to a terminal: redirect standard output or use --journal DIR');

  // ---- journal identity: group, next seq, volume ids, which volumes need a baseline.
  // Volumes keep their index across runs: the ones the journal knows come first, in
  // its order (declared even when not served this time), new exports after them.
  const volumes: BackingVolume[] = [];
  const needBaseline: boolean[] = [];
  const decls: VolumeDecl[] = [];
  let sink: JournalSink;
  let state: TapState | null = null;
  let checkpoint: BackingCheckpoint | null = null;
  const openAll = (prior: VolumeDecl[], baselined: (name: string) => boolean, from: string) => {
    decls.push(...prior);
    for (const e of o.exports) {
      const at = prior.findIndex((v) => v.name === e.name);
      const prev = at >= 0 ? prior[at] : undefined;
      const index = at >= 0 ? at : decls.length;
      const v = openBacking(e.name, e.path, index, o.blockSize ?? prev?.blockSize ?? 4096, prev?.id ?? newId());
      volumes.push(v);
      if (prev && (prev.size !== v.size || prev.blockSize !== v.blockSize)) {
        throw new DrError('DR_VOLUME_MISMATCH', `volume ${e.name} is ${prev.size} bytes (block ${prev.blockSize}) in ${from} but ${e.path} is ${v.size} bytes (block ${v.blockSize})`);
      }
      if (!prev) decls.push(decl(v));
      needBaseline.push(!prev || !baselined(e.name));
    }
  };
  try {
    if (o.journal) {
      const store = await openStore(o.journal, log);
      try {
        const marks = new Set(store.marks().map((m) => m.name));
        openAll(store.volumes.map((v) => ({ name: v.name, size: v.size, blockSize: v.blockSize, id: v.id })), (n) => marks.has(`baseline:${n}`), `journal ${o.journal}`);
        sink = await StoreSink.open(store, o.journal, { groupId: store.groupId ?? newId(), volumes: decls });
        if (backingSync === 'checkpoint') {
          checkpoint = readBackingCheckpoint(o.journal);
          await recoverBacking(store, volumes, checkpoint, log);
        }
      } catch (err) {
        await store.close().catch(() => undefined);
        throw err;
      }
    } else {
      state = o.state ? readTapState(o.state) : null;
      if (state && !state.clean) {
        log.warn(`state file ${o.state}: the previous run did not stop cleanly; continuing at seq ${state.nextSeq} (a reader that already has later records refuses them)`);
      }
      const st = state;
      openAll(st?.volumes ?? [], (n) => Boolean(st?.volumes.find((v) => v.name === n)?.baselined), `state file ${o.state}`);
      widenPipe(1); // the NBD write path is not held up by a 64 KiB pipe while the reader is busy
      sink = new StreamSink(1, 'standard output', { groupId: state?.groupId ?? newId(), firstSeq: state?.nextSeq ?? 1, volumes: decls });
    }
  } catch (err) {
    for (const v of volumes) fs.closeSync(v.fd);
    throw err;
  }

  const tap = new Tap(volumes, sink, log);
  tap.backingSync = backingSync;
  const saveCheckpoint = (seq: number) => {
    if (!checkpoint || !o.journal) return;
    for (const v of volumes) checkpoint.volumes[v.name] = { id: v.id.toString('hex'), seq, path: v.path };
    writeBackingCheckpoint(o.journal, checkpoint);
  };
  saveCheckpoint(sink.nextSeq - 1); // recovered (or nothing to recover): the backing stores hold every record so far
  volumes.forEach((v, i) => {
    if (needBaseline[i]) tap.needBaseline(v);
  });
  const saveState = (clean: boolean) => {
    if (!o.state) return;
    writeTapState(o.state, {
      groupId: sink.groupId,
      nextSeq: sink.nextSeq,
      clean,
      volumes: decls.map((d) => {
        const v = volumes.find((x) => x.name === d.name);
        const before = state?.volumes.find((x) => x.name === d.name)?.baselined ?? false;
        return { ...d, baselined: v ? !v.baseline || v.baselineDone === v.baseline.length : before };
      }),
    }, clean);
  };
  saveState(false);

  const server = new NbdServer({ exports: volumes.map((v) => tap.exportOf(v)), log, multiConn: true });
  const control = new ControlServer(tap, server, log);
  const stop = new AbortController();
  let failure: DrError | null = null;
  tap.onFatal = (e) => {
    log.error(`${e.message}; stopping`, e.code);
    failure = e;
    stop.abort();
  };
  const onSignal = () => stop.abort();
  o.signal.addEventListener('abort', onSignal);

  let where: string;
  try {
    if (o.socket) {
      await server.listenUnix(o.socket);
      where = `unix:${o.socket}`;
    } else {
      const port = await server.listenTcp(o.port ?? 10809, o.host);
      where = `${o.host}:${port}`;
    }
    if (o.control) await control.listen(o.control);
  } catch (err) {
    await server.close();
    await control.close();
    await sink.close().catch(() => undefined);
    tap.closeBacking();
    throw err;
  }
  const journalWhat = o.journal ?? 'standard output';
  log.info(`serving ${volumes.map((v) => `${v.name} (${formatBytes(v.size)})`).join(', ')} on ${where}, journal to ${journalWhat}, group ${idToString(sink.groupId)}, next seq ${sink.nextSeq}`);
  if (o.json) o.emit({ event: 'listening', address: where, group: idToString(sink.groupId), nextSeq: sink.nextSeq, volumes: volumes.map((v) => ({ name: v.name, size: v.size, id: idToString(v.id), baseline: Boolean(v.baseline) })) });

  // ---- background work: baseline, signatures, state
  const bar = createProgress({ total: Math.max(1, tap.baselineTotal), format: 'baseline [{bar}] {percentage}% {value}/{total} bytes', enabled: !o.json && log.verbosity >= 0 });
  let lastJson = 0;
  const baselineDone = tap.baselineTotal === 0
    ? Promise.resolve(true)
    : tap.runBaseline(stop.signal, (recorded, total) => {
      bar.update(recorded);
      const now = Date.now();
      if (o.json && (now - lastJson > 1000 || recorded === total)) {
        lastJson = now;
        o.emit({ event: 'baseline', recorded, total });
      }
    }).then((done) => {
      bar.stop();
      if (done) {
        saveState(false);
        if (o.json && tap.baselineTotal > 0) o.emit({ event: 'baseline-complete', seq: sink.nextSeq - 1 });
      }
      return done;
    }, (err: unknown) => {
      bar.stop();
      if (!tap.fatal) tap.onFatal?.(err instanceof DrError ? err : fromSystemError(err, 'baseline'));
      return false;
    });
  const signTimer = o.signEveryMs ? setInterval(() => {
    try {
      tap.signNext();
    } catch (err) {
      log.warn(`signature: ${(err as Error).message}`);
    }
  }, o.signEveryMs) : null;
  let checkpointing = false;
  const checkpointTimer = checkpoint ? setInterval(() => {
    if (checkpointing || !volumes.some((v) => v.dirty)) return;
    checkpointing = true;
    tap.checkpointBacking().then((seq) => saveCheckpoint(seq)).catch((err: unknown) => {
      log.warn(`checkpoint: ${(err as Error).message}`);
    }).finally(() => {
      checkpointing = false;
    });
  }, o.checkpointEveryMs ?? 10_000) : null;
  let lastSaved = sink.nextSeq;
  const stateTimer = o.state ? setInterval(() => {
    if (sink.nextSeq !== lastSaved) {
      lastSaved = sink.nextSeq;
      try {
        saveState(false);
      } catch (err) {
        log.warn((err as Error).message);
      }
    }
  }, 1000) : null;

  // ---- run until stopped
  await new Promise<void>((resolve) => {
    if (stop.signal.aborted) resolve();
    stop.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  o.signal.removeEventListener('abort', onSignal);
  log.debug('stopping: no new connections, finishing requests in flight');
  if (signTimer) clearInterval(signTimer);
  if (stateTimer) clearInterval(stateTimer);
  if (checkpointTimer) clearInterval(checkpointTimer);
  await control.close();
  await server.close();
  await baselineDone;
  let status = 0;
  try {
    if (!tap.fatal) await tap.flush();
    if (!tap.fatal && checkpoint) saveCheckpoint(await tap.checkpointBacking());
    await sink.close();
    saveState(!tap.fatal);
  } catch (err) {
    failure ??= err instanceof DrError ? err : fromSystemError(err, 'closing the journal');
    log.error(failure.message, failure.code);
  } finally {
    tap.closeBacking();
  }
  if (failure) status = failure.exitCode;
  const s = tap.stats;
  const summary = {
    event: 'stopped', lastSeq: sink.nextSeq - 1, group: idToString(sink.groupId), ...s,
    longestHoldMs: Math.round(control.longestHoldMs * 1000) / 1000, clients: server.accepted,
  };
  if (o.json) o.emit(summary);
  else log.info(`stopped at seq ${summary.lastSeq}: ${s.writes} writes (${formatBytes(s.writeBytes)}), ${s.zeroes} zero/trim (${formatBytes(s.zeroBytes)}), ${s.flushes} flushes, ${s.marks} marks, ${s.signatures} signatures, baseline ${formatBytes(s.baselineBytes)}`);
  return status;
}

function decl(v: BackingVolume): VolumeDecl {
  return { name: v.name, size: v.size, blockSize: v.blockSize, id: v.id };
}
