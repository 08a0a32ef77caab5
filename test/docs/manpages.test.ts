// --help and the man pages agree: every option a command (or subcommand) accepts is
// documented in its man page, and every man page documents the shared exit statuses.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { run } from '../helpers/run.js';

const COMMANDS: Record<string, string[]> = {
  'dr-tap': ['nbd', 'mark', 'scan', 'logwrites'],
  'dr-journal': ['append', 'cat', 'ls', 'marks', 'mark', 'last', 'prune', 'archive'],
  'dr-ship': ['send', 'receive'],
  'dr-apply': [],
  'dr-verify': ['stream', 'compare', 'hashes', 'sign', 'journal', 'restore'],
  'dr-restore': [],
};
const SHARED = new Set(['help', 'version', 'quiet', 'verbose', 'json']);

for (const [cmd, subs] of Object.entries(COMMANDS)) {
  t.test(`${cmd}(1) documents its options and exit statuses`, async (t) => {
    const man = readFileSync(new URL(`../../man/${cmd}.1`, import.meta.url), 'utf8');
    const text = man.replace(/\\-/g, '-').replace(/\\f[BIRP]/g, '');
    t.match(text, /^\.SH "?EXIT STATUS"?/m, 'has an EXIT STATUS section');
    for (const code of ['0', '1', '2', '3']) t.match(text, new RegExp(`(^|\\n)(\\.[A-Z]+ )?"?${code}"?\\b`), `exit status ${code} is described`);
    for (const sub of subs.length ? subs : ['']) {
      const r = await run(cmd, [...(sub ? [sub] : []), '--help']);
      t.equal(r.code, 0, `${cmd} ${sub} --help exits 0`);
      const options = [...r.stdout.toString().matchAll(/^\s+(?:-\w, )?--([a-z][a-z-]*)/gm)].map((m) => m[1]!);
      for (const o of options) {
        if (SHARED.has(o)) continue;
        t.ok(text.includes(`--${o}`), `${cmd} ${sub}: --${o} is in the man page`);
      }
      if (sub) t.ok(text.includes(sub), `${cmd}: subcommand ${sub} is in the man page`);
    }
  });
}
