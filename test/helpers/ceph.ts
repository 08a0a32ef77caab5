/**
 * A real single-node Ceph cluster with the RADOS Gateway (S3 API) on 127.0.0.1 for the
 * archive tests: one monitor, one OSD on bluestore over a sparse file, one radosgw, all in
 * a temp dir, auth none, pool size one, the rgw pools created up front and an S3 user with
 * throwaway keys. The daemons run in the foreground as our children (we own their pids);
 * stop() ends radosgw first (a monitor stopped first leaves it hanging), then the OSD, then
 * the monitor, and removes the temp dir. An exit handler kills them if the test process
 * ends without calling stop().
 *
 * Debian packages: ceph-mon ceph-osd radosgw ceph-common (scripts/install-peers.sh).
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface Ceph {
  /** http://127.0.0.1:PORT of radosgw */
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** the environment a drkit command needs to reach this gateway (AWS_*) */
  env: Record<string, string>;
  dir: string;
  /** milliseconds the startup took, by step (for the report and diagnostics) */
  timings: Record<string, number>;
  /** tail of the daemons' logs, for failure messages */
  logs(): string;
  stop(): Promise<void>;
}

// the SDK's notice about Node 20 support ending in 2027 would clutter every test's output
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export const CEPH_BINARIES = ['ceph-mon', 'ceph-osd', 'radosgw', 'ceph', 'radosgw-admin', 'monmaptool'];

/** The binaries that are missing from PATH (empty when the cluster can start). */
export function missingCephBinaries(): string[] {
  return CEPH_BINARIES.filter((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status !== 0);
}

const RGW_POOLS = [
  '.rgw.root',
  'default.rgw.control',
  'default.rgw.meta',
  'default.rgw.log',
  'default.rgw.buckets.index',
  'default.rgw.buckets.data',
  'default.rgw.buckets.non-ec',
];

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function exec(file: string, args: string[], timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${file} ${args.join(' ')}: ${err.message.split('\n')[0]} ${stderr.trim()}`));
      else resolve(stdout);
    });
  });
}

/** Live children of every cluster in this process, killed on exit if stop() was not reached. */
const live = new Set<ChildProcess>();
let exitHook = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHook) {
    exitHook = true;
    process.once('exit', () => {
      for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    });
  }
}

async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([gone, sleep(graceMs)]);
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await Promise.race([gone, sleep(5000)]);
  }
}

export async function startCeph(opts: { blockSizeGiB?: number } = {}): Promise<Ceph> {
  const missing = missingCephBinaries();
  if (missing.length) {
    throw new Error(`ceph peer missing: ${missing.join(', ')} (install ceph-mon ceph-osd radosgw ceph-common: scripts/install-peers.sh)`);
  }
  const t0 = Date.now();
  const timings: Record<string, number> = {};
  let mark = t0;
  const step = (name: string) => {
    const now = Date.now();
    timings[name] = now - mark;
    mark = now;
  };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'drkit-ceph-'));
  const children: ChildProcess[] = [];
  const stopAll = async () => {
    // radosgw first (it hangs if the monitor goes first), then the OSD, then the monitor.
    for (const c of [...children].reverse()) await stopChild(c, 3000);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const monPort = await freePort();
    const rgwPort = await freePort();
    const fsid = randomUUID();
    const conf = path.join(dir, 'ceph.conf');
    for (const d of ['run', 'log', 'mon/mon.a', 'osd/osd.0', 'rgw']) mkdirSync(path.join(dir, d), { recursive: true });
    writeFileSync(
      conf,
      [
        '[global]',
        `fsid = ${fsid}`,
        `mon host = 127.0.0.1:${monPort}`,
        'mon initial members = a',
        'auth cluster required = none',
        'auth service required = none',
        'auth client required = none',
        // with auth none only the crc connection mode can work (some daemons default to secure)
        'ms cluster mode = crc',
        'ms service mode = crc',
        'ms client mode = crc',
        'ms mon cluster mode = crc',
        'ms mon service mode = crc',
        'ms mon client mode = crc',
        'ms bind ipv4 = true',
        'ms bind ipv6 = false',
        `run dir = ${dir}/run`,
        `admin socket = ${dir}/run/$name.asok`,
        `log file = ${dir}/log/$name.log`,
        `pid file = ${dir}/run/$name.pid`,
        'osd pool default size = 1',
        'osd pool default min size = 1',
        'osd pool default pg num = 8',
        'osd pool default pgp num = 8',
        'osd pool default pg autoscale mode = off',
        'mon allow pool size one = true',
        'mon allow pool delete = true',
        'mon warn on pool no redundancy = false',
        'mon warn on insecure global id reclaim allowed = false',
        'mon data avail warn = 1',
        'mon data avail crit = 0',
        'mon max pg per osd = 1000',
        'osd crush chooseleaf type = 0',
        'paxos propose interval = 0.05',
        'paxos min wait = 0.01',
        '[mon]',
        `mon data = ${dir}/mon/$name`,
        `mon cluster log file = ${dir}/log/cluster.log`,
        '[osd]',
        `osd data = ${dir}/osd/$name`,
        'osd objectstore = bluestore',
        `bluestore block path = ${dir}/osd/$name.block`,
        'bluestore block create = true',
        `bluestore block size = ${(opts.blockSizeGiB ?? 20) * 1024 * 1024 * 1024}`,
        'bluestore fsck on mount = false',
        'bluestore cache autotune = false',
        'bluestore cache size = 134217728',
        'osd memory target = 939524096',
        'osd max object size = 268435456',
        '[client.rgw]',
        `rgw data = ${dir}/rgw`,
        `rgw frontends = beast endpoint=127.0.0.1:${rgwPort}`,
        'rgw dynamic resharding = false',
        'rgw thread pool size = 64',
        '',
      ].join('\n'),
    );
    const C = ['-c', conf];
    const spawnDaemon = (file: string, args: string[]): ChildProcess => {
      // -f: foreground, logging to the log file; we own the process.
      const child = spawn(file, [...C, '-f', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr!.on('data', (d: Buffer) => {
        if (err.length < 8192) err += d.toString();
      });
      child.once('exit', (code, sig) => {
        if (!stopping) daemonDied = `${file} exited (${code ?? sig}): ${err.trim().split('\n').slice(-3).join(' | ')}`;
      });
      track(child);
      children.push(child);
      return child;
    };
    let stopping = false;
    let daemonDied = '';
    const checkAlive = () => {
      if (daemonDied) throw new Error(daemonDied);
    };

    // monitor
    const monmap = path.join(dir, 'monmap');
    await exec('monmaptool', ['--create', '--add', 'a', `127.0.0.1:${monPort}`, '--fsid', fsid, monmap]);
    await exec('ceph-mon', [...C, '--mkfs', '-i', 'a', '--monmap', monmap]);
    spawnDaemon('ceph-mon', ['-i', 'a']);
    const ceph = (...args: string[]) => exec('ceph', [...C, '--connect-timeout', '20', ...args]);
    await ceph('status');
    checkAlive();
    step('mon');

    // one OSD on bluestore over a sparse file
    const osdUuid = randomUUID();
    const id = (await ceph('osd', 'new', osdUuid)).trim();
    if (id !== '0') throw new Error(`ceph osd new gave id ${id}`);
    await exec('ceph-osd', [...C, '-i', '0', '--mkfs', '--osd-uuid', osdUuid]);
    spawnDaemon('ceph-osd', ['-i', '0']);
    step('osd-mkfs');

    // the rgw pools, created up front (else the gateway's first requests are slow);
    // one `ceph` process reads all the commands on stdin
    const script = RGW_POOLS.flatMap((p) => [
      `osd pool create ${p} 8 8 replicated`,
      `osd pool application enable ${p} rgw`,
    ]).join('\n');
    await new Promise<void>((resolve, reject) => {
      const child = spawn('ceph', [...C], { stdio: ['pipe', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.once('error', reject);
      child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`ceph pool setup failed (${code}): ${err.trim()}`))));
      child.stdin.end(script + '\n');
    });
    // wait for the OSD to be up and every PG active
    for (let i = 0; ; i++) {
      checkAlive();
      const st = JSON.parse(await ceph('status', '--format', 'json')) as {
        osdmap?: { num_up_osds?: number; osdmap?: { num_up_osds?: number } };
        pgmap?: { num_pgs?: number; pgs_by_state?: Array<{ state_name: string; count: number }> };
      };
      const up = st.osdmap?.num_up_osds ?? st.osdmap?.osdmap?.num_up_osds ?? 0;
      if (up >= 1) break;
      if (i > 300) throw new Error('the OSD did not come up within 60 s');
      await sleep(200);
    }
    step('osd-up+pools');

    // radosgw and its S3 user
    spawnDaemon('radosgw', ['-n', 'client.rgw']);
    const accessKeyId = 'DRKIT' + randomBytes(8).toString('hex').toUpperCase();
    const secretAccessKey = randomBytes(24).toString('base64url');
    await exec('radosgw-admin', [
      ...C, '-n', 'client.rgw', 'user', 'create', '--uid', 'drkit', '--display-name', 'drkit tests',
      '--access-key', accessKeyId, '--secret', secretAccessKey,
    ]);
    const endpoint = `http://127.0.0.1:${rgwPort}`;
    for (let i = 0; ; i++) {
      checkAlive();
      const ok = await fetch(endpoint + '/').then((r) => r.status === 200, () => false);
      if (ok) break;
      if (i > 600) throw new Error(`radosgw did not answer on ${endpoint} within 60 s`);
      await sleep(100);
    }
    step('rgw');
    timings.total = Date.now() - t0;

    const region = 'us-east-1';
    return {
      endpoint,
      accessKeyId,
      secretAccessKey,
      region,
      env: {
        AWS_ACCESS_KEY_ID: accessKeyId,
        AWS_SECRET_ACCESS_KEY: secretAccessKey,
        AWS_REGION: region,
        AWS_ENDPOINT_URL: endpoint,
      },
      dir,
      timings,
      logs: () => tailLogs(dir),
      stop: async () => {
        stopping = true;
        await stopAll();
      },
    };
  } catch (err) {
    const logs = tailLogs(dir);
    await stopAll();
    throw new Error(`ceph startup failed: ${(err as Error).message}\n${logs}`);
  }
}

function tailLogs(dir: string): string {
  const out: string[] = [];
  for (const name of ['mon.a.log', 'osd.0.log', 'client.rgw.log']) {
    const f = path.join(dir, 'log', name);
    if (!existsSync(f)) continue;
    const lines = readFileSync(f, 'utf8').trimEnd().split('\n');
    out.push(`--- ${name}`, ...lines.slice(-8));
  }
  return out.join('\n');
}

/**
 * Start one cluster for a whole test file and stop it in t.teardown (also when a test fails).
 * A missing peer fails the test (never skips).
 */
export async function cephForTest(t: { teardown(fn: () => unknown): void }): Promise<Ceph> {
  const c = await startCeph();
  t.teardown(() => c.stop());
  return c;
}
