#!/usr/bin/env node
// Render docs/FORMAT.md as the man page dr-journal(5), so the spec has one source.
// Usage: node scripts/md2man.mjs docs/FORMAT.md > man/dr-journal.5
// Handles what the spec uses: headings, paragraphs, lists, tables, code blocks, `code`, **bold**.
import { readFileSync } from 'node:fs';

const md = readFileSync(process.argv[2] ?? 'docs/FORMAT.md', 'utf8').split('\n');
const esc = (s) => s.replace(/\\/g, '\\e').replace(/^([.'])/, '\\&$1').replace(/-/g, '\\-');
const inline = (s) => esc(s).replace(/`([^`]+)`/g, '\\fB$1\\fR').replace(/\*\*([^*]+)\*\*/g, '\\fB$1\\fR').replace(/\*([^*]+)\*/g, '\\fI$1\\fR');
const out = [
  '.\\" Generated from docs/FORMAT.md by scripts/md2man.mjs: edit the Markdown, then regenerate.',
  '.TH DR\\-JOURNAL 5 "2026" "drkit" "File Formats"',
  '.SH NAME',
  'dr-journal \\- the drkit journal stream format, version 1',
];
let i = 0;
let inCode = false;
while (i < md.length) {
  const line = md[i];
  if (line.startsWith('```')) {
    out.push(inCode ? '.fi\n.RE' : '.RS 2\n.nf\n.ft CR');
    if (inCode) out.splice(out.length - 1, 0, '.ft R');
    inCode = !inCode;
    i++;
    continue;
  }
  if (inCode) { out.push(esc(line)); i++; continue; }
  if (/^# /.test(line)) { out.push('.SH DESCRIPTION'); i++; continue; }
  if (/^## /.test(line)) { out.push(`.SH ${esc(line.slice(3).replace(/^\d+\.\s*/, '').toUpperCase())}`); i++; continue; }
  if (/^### /.test(line)) { out.push(`.SS ${inline(line.slice(4))}`); i++; continue; }
  if (/^\|/.test(line)) {
    const rows = [];
    while (i < md.length && /^\|/.test(md[i])) {
      if (!/^\|[\s:|-]+\|$/.test(md[i])) rows.push(md[i].slice(1, -1).split('|').map((c) => c.trim().replace(/`/g, '')));
      i++;
    }
    const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
    out.push('.RS 2\n.nf\n.ft CR');
    rows.forEach((r, n) => {
      out.push(esc(r.map((c, k) => (k === r.length - 1 ? c : c.padEnd(widths[k]))).join('  ')));
      if (n === 0) out.push(esc(widths.map((w) => '-'.repeat(w)).join('  ')));
    });
    out.push('.ft R\n.fi\n.RE');
    continue;
  }
  if (/^\s*(-|\d+\.) /.test(line)) {
    const bullet = /^\s*-/.test(line) ? '\\(bu' : line.trim().split(' ')[0];
    let text = line.replace(/^\s*(-|\d+\.) /, '');
    i++;
    while (i < md.length && /^ {2,}\S/.test(md[i])) text += ' ' + md[i++].trim();
    out.push(`.IP ${bullet} 3`, inline(text));
    continue;
  }
  if (line.trim() === '') { out.push('.PP'); i++; continue; }
  let text = line;
  i++;
  while (i < md.length && md[i].trim() !== '' && !/^(#|\||```|\s*(-|\d+\.) )/.test(md[i])) text += ' ' + md[i++];
  out.push(inline(text));
}
out.push('.SH SEE ALSO', 'dr-tap(1), dr-journal(1), dr-ship(1), dr-apply(1), dr-verify(1), dr-restore(1)');
console.log(out.join('\n').replace(/(\.PP\n)+/g, '.PP\n').replace(/\.PP\n(\.S[HS])/g, '$1'));
