#!/usr/bin/env node
// Behaves like `solc --standard-json` on top of the npm package `solc` (the official
// WebAssembly build), so py-solc-x can drive it as its `solc_binary`:
//   --version           prints `Version: <solc.version()>`
//   otherwise           reads standard JSON on stdin, writes the compiler's JSON on stdout.
// The raw `solcjs` CLI prints a line before its JSON, which py-solc-x cannot parse.
// Imports that the input does not carry are read from the repository root, `@openzeppelin/...`
// from node_modules, so a source unit name is always its path relative to the repository root
// (node_modules/ omitted for packages).
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const solc = require(require.resolve('solc', { paths: [root, process.cwd()] }));

if (process.argv.includes('--version')) {
  process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
  process.exit(0);
}

function findImport(unit) {
  for (const candidate of [path.join(root, unit), path.join(root, 'node_modules', unit)]) {
    if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, 'utf8') };
  }
  return { error: `source not found: ${unit} (run \`npm ci\` at the repository root)` };
}

const chunks = [];
process.stdin.on('data', (chunk) => chunks.push(chunk));
process.stdin.on('end', () => {
  const input = Buffer.concat(chunks).toString('utf8');
  process.stdout.write(solc.compile(input, { import: findImport }));
});
