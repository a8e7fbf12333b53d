#!/usr/bin/env node
import { main } from '../dist/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    // main() already turns known errors into messages; this is the last resort.
    process.stderr.write(`flexinfer: ${err && err.message ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
