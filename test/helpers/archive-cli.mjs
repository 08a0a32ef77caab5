// Runs the archive subcommand module (dist/commands/journal-archive.js) the way bin/dr-journal does,
// for as long as dr-journal does not register it itself: archive-cli.mjs archive DIR --to s3://... [flags]
import { runCli } from '../../dist/cli/main.js';
import { register } from '../../dist/commands/journal-archive.js';

process.exitCode = await runCli('dr-journal', process.argv.slice(2), (y, wrap) => register(y, wrap));
