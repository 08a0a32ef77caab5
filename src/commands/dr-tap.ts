/** dr-tap: capture every write. Subcommands live in ./tap/, one module each. */
import { runCli } from '../cli/main.js';
import { register as registerNbd } from './tap/nbd.js';
import { register as registerScan } from './tap/scan.js';
import { register as registerLogwrites } from './tap/logwrites.js';

export function main(argv: string[]): Promise<number> {
  return runCli('dr-tap', argv, (y, wrap) => {
    let c = y.usage('$0 <command> [options]\n\nCapture every write to a volume as a journal stream.');
    c = registerNbd(c, wrap);
    c = registerScan(c, wrap);
    c = registerLogwrites(c, wrap);
    return c.demandCommand(1, 'name a command');
  });
}
