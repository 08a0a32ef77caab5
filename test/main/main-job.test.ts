// The README's first command runs the main job; this keeps it true: the demo runs end to
// end (kernel client where the machine allows mounting, and the qemu-io fallback) and
// every proof it prints holds.
import t from 'tap';
import { run } from '../helpers/run.js';

for (const client of ['auto', 'qemu']) {
  t.test(`main job (client ${client})`, async (t) => {
    const r = await run('node', ['scripts/demo.mjs', '--size-mib', '64', '--client', client], { timeoutMs: 240_000 });
    const out = r.stdout.toString();
    t.equal(r.code, 0, `exit 0\n${out}\n${r.stderr}`);
    t.match(out, /main job: every proof held/);
    t.notMatch(out, /FAILED/);
    t.match(out, /PROVED restore at bookmark/);
    t.match(out, /PROVED restore at time/);
    t.match(out, /PROVED replica at site B equals the volume at site A/);
    t.match(out, /transport: ssh to a throwaway sshd/, 'shipped over a real ssh');
  });
}
