#!/usr/bin/env node
// validate-response.js METHOD PATH STATUS [HEADERS_FILE] < body.json
// Validates a saved response body (stdin) against static/openapi.json for (METHOD, PATH,
// STATUS). HEADERS_FILE, if given, holds the raw response headers ("Name: value" lines, as
// curl -D writes them) and turns on the header checks. Exit 0 when it conforms, 1 with one
// problem per line on stderr when it does not, 2 on bad usage.
'use strict';
const fs = require('fs');
const { loadSpec, validateResponse } = require('./lib');

const [method, p, statusArg, headersFile] = process.argv.slice(2);
if (!method || !p || !/^[0-9]{3}$/.test(statusArg || '')) {
    process.stderr.write('usage: validate-response.js METHOD PATH STATUS [HEADERS_FILE] < body.json\n');
    process.exit(2);
}
let body;
try {
    body = JSON.parse(fs.readFileSync(0, 'utf8'));
} catch (e) {
    process.stderr.write(`body is not JSON: ${e.message}\n`);
    process.exit(1);
}
let headers = null;
if (headersFile) {
    headers = {};
    for (const line of fs.readFileSync(headersFile, 'utf8').split(/\r?\n/)) {
        const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
        if (m) headers[m[1].toLowerCase()] = m[2];
    }
}
const errs = validateResponse(loadSpec(), { method: method.toUpperCase(), path: p, status: Number(statusArg), body, headers });
if (errs.length) {
    for (const e of errs) process.stderr.write(e + '\n');
    process.exit(1);
}
process.stdout.write(`ok: ${method.toUpperCase()} ${p} ${statusArg} conforms to static/openapi.json\n`);
