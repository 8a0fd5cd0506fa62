// examples.js - parse the examples of static/llms-full.txt.
// Full examples (replayed against the server) are blocks starting at column 0:
//   REQUEST <METHOD> <PATH> (auth: none|API key|user token)
//   [JSON request body, one or more lines]
//   RESPONSE <STATUS>
//   [Header-Name: value lines]
//   <JSON response body, one line or more, up to a blank line>
// Snippets are indented by 4 spaces: "    RESPONSE <STATUS> (<METHOD> <PATH>)" then
// optional header lines and one JSON body; they are only checked against the spec.
'use strict';
const fs = require('fs');
const path = require('path');
const { ROOT } = require('./lib');

const AUTH = { 'none': 'none', 'API key': 'key', 'user token': 'user' };

function parseExamples(file = path.join(ROOT, 'static', 'llms-full.txt')) {
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    const out = [];
    for (let i = 0; i < lines.length; i++) {
        let m = /^REQUEST (GET|POST|PATCH|DELETE|PUT) (\S+) \(auth: (none|API key|user token)\)$/.exec(lines[i]);
        if (m) {
            const ex = { kind: 'full', line: i + 1, method: m[1], path: m[2], auth: AUTH[m[3]], headers: {} };
            let j = i + 1;
            const req = [];
            while (j < lines.length && !/^RESPONSE /.test(lines[j])) {
                if (lines[j] === '' || /^REQUEST /.test(lines[j])) throw new Error(`llms-full.txt:${i + 1}: REQUEST without RESPONSE`);
                req.push(lines[j++]);
            }
            const rm = /^RESPONSE ([0-9]{3})$/.exec(lines[j] || '');
            if (!rm) throw new Error(`llms-full.txt:${j + 1}: bad RESPONSE line`);
            ex.status = Number(rm[1]);
            ex.reqText = req.join('\n');
            ex.reqBody = req.length ? JSON.parse(ex.reqText) : undefined;
            j++;
            while (j < lines.length && /^[A-Za-z][A-Za-z0-9-]*: /.test(lines[j])) {
                const [, k, v] = /^([^:]+): (.*)$/.exec(lines[j++]);
                ex.headers[k] = v;
            }
            const body = [];
            while (j < lines.length && lines[j] !== '') body.push(lines[j++]);
            ex.body = JSON.parse(body.join('\n'));
            out.push(ex);
            i = j;
            continue;
        }
        m = /^ {4}RESPONSE ([0-9]{3}) \((GET|POST|PATCH|DELETE|PUT) (\S+)\)$/.exec(lines[i]);
        if (m) {
            const ex = { kind: 'snippet', line: i + 1, status: Number(m[1]), method: m[2], path: m[3], headers: {} };
            let j = i + 1;
            while (j < lines.length && /^ {4}[A-Za-z][A-Za-z0-9-]*: /.test(lines[j])) {
                const [, k, v] = /^ {4}([^:]+): (.*)$/.exec(lines[j++]);
                ex.headers[k] = v;
            }
            const body = [];
            while (j < lines.length && /^ {4}\S/.test(lines[j])) body.push(lines[j++].slice(4));
            ex.body = JSON.parse(body.join('\n'));
            out.push(ex);
            i = j;
        }
    }
    return out;
}

module.exports = { parseExamples };
