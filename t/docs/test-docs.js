#!/usr/bin/env node
// test-docs.js - tests of the static surface: the OpenAPI document (validated by
// swagger-parser), the spec against the API.md contract and against the router table
// (app/routes.c), the examples of llms-full.txt against the spec, and, when KB_BASE_URL
// names a running stack, what nginx and the app really answer (static files with their
// types, ETags and CSPs; live responses validated against the spec; every llms-full.txt
// example replayed).
// Prints "ok"/"not ok" per test and closes with "N passed, N failed"; appends
// "passed failed" to $KB_TEST_COUNTS when set. Exit 1 when anything failed.
// Invariants: a test never skips silently: every spec route is routed and every example of
// a spec route is replayed, or a test fails; only the billing examples wait for a stack with
// Stripe configured, and are listed by name.
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { execFileSync } = require('child_process');
const SwaggerParser = require('@apidevtools/swagger-parser');
const L = require('./lib');
const { parseExamples } = require('./examples');

// API.md 5.0: the contract, independent of the spec and of the router.
const CONTRACT = [
    ['GET', '/health', 'none', 0], ['POST', '/auth/signup', 'none', 0], ['POST', '/auth/login', 'none', 0],
    ['POST', '/keys', 'user', 0], ['GET', '/keys', 'user', 0], ['GET', '/keys/usage', 'user', 0],
    ['PATCH', '/keys/{key_id}', 'user', 0], ['DELETE', '/keys/{key_id}', 'user', 0],
    ['GET', '/keys/{key_id}/reveal', 'user', 0],
    ['POST', '/orderbook', 'key', 5], ['POST', '/deltas', 'key', 2], ['POST', '/trades', 'key', 2],
    ['GET', '/candles/{ticker}', 'key', 3], ['GET', '/markets', 'key', 1], ['GET', '/markets/{ticker}', 'key', 1],
    ['GET', '/markets/{ticker}/coverage', 'key', 1], // API.md 7, item 20
    ['GET', '/events', 'key', 1], ['GET', '/events/{event_ticker}', 'key', 1],
    ['GET', '/settlements', 'key', 1], ['GET', '/settlements/{ticker}', 'key', 1],
    ['GET', '/billing/status', 'user', 0], ['POST', '/billing/checkout', 'user', 0],
    ['POST', '/billing/portal', 'user', 0], ['POST', '/billing/payg', 'user', 0],
    ['POST', '/billing/webhook', 'stripe', 0],
];
// Operator-only routes: routed, but not part of the public API, so not in the
// spec. nginx lets only localhost reach them (docs/running.md "Metrics").
const OPERATOR_ONLY = ['GET /metrics'];
// API.md 3.2 and 7: every error code and its HTTP status.
const CODES = {
    invalid_api_key: 401, invalid_auth_method: 401, invalid_credentials: 401, user_already_exists: 409,
    weak_password: 422, signup_failed: 400, validation_error: 422, invalid_timestamp: 400,
    market_not_found: 404, no_data_available: 404, event_not_found: 404, settlement_not_found: 404,
    key_not_found: 404, no_fields: 400, invalid_key_type: 400, credits_exhausted: 429,
    rate_limit_exceeded: 429, no_billing_account: 400, stripe_error: 502, invalid_signature: 400,
    invalid_payload: 400, internal_error: 500, not_found: 404, method_not_allowed: 405,
    payload_too_large: 413, service_unavailable: 503, already_subscribed: 409, billing_not_configured: 503,
};
const SECURITY = { none: [], user: [{ UserToken: [] }], key: [{ ApiKey: [] }], stripe: [{ StripeSignature: [] }] };

let passed = 0, failed = 0;
const notes = [];
async function test(name, fn) {
    try {
        await fn();
        passed++;
        console.log(`ok - ${name}`);
    } catch (e) {
        failed++;
        console.log(`not ok - ${name}\n    ${String(e && e.message || e).split('\n').join('\n    ')}`);
    }
}
function assert(cond, msg) { if (!cond) throw new Error(msg); }
function noErrors(errs) { assert(errs.length === 0, errs.join('\n')); }

const spec = L.loadSpec();
const router = L.routerRoutes();
const contract = CONTRACT.map(([m, p]) => `${m} ${L.normalisePath(p)}`);
const specR = L.specRoutes(spec);

async function specTests() {
    await test('openapi.json is a valid OpenAPI 3.1 document (swagger-parser)', async () => {
        const api = await SwaggerParser.validate(JSON.parse(JSON.stringify(spec)));
        assert(api.openapi === '3.1.0', `openapi is ${api.openapi}`);
    });
    await test('spec paths equal the API.md 5.0 route list', () => {
        const missing = contract.filter((r) => !specR.includes(r));
        const extra = specR.filter((r) => !contract.includes(r));
        assert(!missing.length && !extra.length, `missing from spec: ${missing.join(', ') || '-'}; not in API.md: ${extra.join(', ') || '-'}`);
    });
    await test('router table parses (app/routes.c)', () => {
        assert(router.length >= 1 && router.includes('GET /health'), `parsed: ${router.join(', ')}`);
    });
    await test('router parser: every table entry parsed, {param} names normalised, a route missing from the spec is caught', () => {
        const src = fs.readFileSync(path.join(L.ROOT, 'app', 'routes.c'), 'utf8');
        const table = src.slice(src.indexOf('kb_routes[]'), src.indexOf('};', src.indexOf('kb_routes[]')));
        const entries = (table.match(/\{\s*"/g) || []).length;
        assert(entries === router.length, `${entries} table entries, ${router.length} parsed: ${router.join(', ')}`);
        const tmp = fs.mkdtempSync(path.join(require('os').tmpdir(), 'kb-routes-'));
        try {
            const f = path.join(tmp, 'routes.c');
            fs.writeFileSync(f, 'const kb_route kb_routes[] = {\n    {"GET", "/health", h_health},\n' +
                '    {"GET", "/markets/{t}", h_market},\n    {"POST",   "/not-in-spec",h_x},\n};\n');
            const r = L.routerRoutes(f);
            assert(JSON.stringify(r) === JSON.stringify(['GET /health', 'GET /markets/{}', 'POST /not-in-spec']), `parsed ${r}`);
            const missing = r.filter((x) => !specR.includes(x));
            assert(JSON.stringify(missing) === JSON.stringify(['POST /not-in-spec']), `missing ${missing}`);
        } finally {
            fs.rmSync(tmp, { recursive: true, force: true });
        }
    });
    await test('every route in the router is in the spec', () => {
        const missing = router.filter((r) => !specR.includes(r) && !OPERATOR_ONLY.includes(r));
        assert(!missing.length, `routed but not in openapi.json: ${missing.join(', ')}`);
    });
    // A documented route the server does not route would answer 404 not_found to every
    // client that reads the spec: no route is "pending", a branch adds both or neither.
    const unrouted = (routes) => specR.filter((r) => !routes.includes(r));
    await test('every spec route is in the router (app/routes.c)', () => {
        const notRouted = unrouted(router);
        assert(!notRouted.length, `in openapi.json but not in app/routes.c: ${notRouted.join(', ')}`);
        notes.push(`router: ${router.length} routes; all ${specR.length} spec routes routed`);
    });
    await test('a spec route missing from the router is caught', () => {
        const without = router.filter((r) => r !== 'GET /settlements/{}');
        assert(JSON.stringify(unrouted(without)) === JSON.stringify(['GET /settlements/{}']),
            `unrouted: ${unrouted(without).join(', ')}`);
    });
    await test('credit cost (x-credits and description) and security per operation match API.md', () => {
        const errs = [];
        for (const [m, p, auth, cost] of CONTRACT) {
            const op = spec.paths[p] && spec.paths[p][m.toLowerCase()];
            if (!op) { errs.push(`${m} ${p}: missing`); continue; }
            if (op['x-credits'] !== cost) errs.push(`${m} ${p}: x-credits ${op['x-credits']} != ${cost}`);
            if (!op.description.includes(`Cost: ${cost} credit`)) errs.push(`${m} ${p}: description does not state the cost`);
            if (JSON.stringify(op.security) !== JSON.stringify(SECURITY[auth])) errs.push(`${m} ${p}: security ${JSON.stringify(op.security)}`);
        }
        noErrors(errs);
    });
    await test('each route\'s cost in the router table (app/routes.c) is the API.md cost', () => {
        const costs = L.routerCosts();
        const errs = [];
        for (const [m, p, , cost] of CONTRACT) {
            const k = `${m} ${L.normalisePath(p)}`;
            if (!(k in costs)) errs.push(`${k}: no cost in app/routes.c`);
            else if (costs[k] !== cost) errs.push(`${k}: app/routes.c says ${costs[k]}, API.md ${cost}`);
        }
        assert(Object.keys(costs).length === router.length, `${Object.keys(costs).length} costs for ${router.length} routes`);
        noErrors(errs);
    });
    await test('ErrorCode lists exactly the API.md codes with their statuses', () => {
        const ec = spec.components.schemas.ErrorCode;
        const byCode = ec['x-status-by-code'];
        const errs = [];
        for (const [c, s] of Object.entries(CODES)) {
            if (!ec.enum.includes(c)) errs.push(`${c} missing from enum`);
            if (byCode[c] !== s) errs.push(`${c}: status ${byCode[c]} != ${s}`);
        }
        for (const c of ec.enum) if (!(c in CODES)) errs.push(`${c} is not an API.md code`);
        noErrors(errs);
    });
    await test('lib/kb_err.h codes equal the spec codes', () => {
        const src = fs.readFileSync(path.join(L.ROOT, 'lib', 'kb_err.h'), 'utf8');
        const re = /X\(E_[A-Z_]+,\s*([0-9]{3}),\s*"([a-z_]+)"\)/g;
        const errs = [];
        let m, n = 0;
        const byCode = spec.components.schemas.ErrorCode['x-status-by-code'];
        while ((m = re.exec(src)) !== null) {
            n++;
            if (byCode[m[2]] !== Number(m[1])) errs.push(`kb_err.h ${m[2]} ${m[1]} vs spec ${byCode[m[2]]}`);
        }
        assert(n === Object.keys(byCode).length, `kb_err.h has ${n} codes, spec ${Object.keys(byCode).length}`);
        noErrors(errs);
    });
    await test('every error code of API.md is documented on some operation response', () => {
        const seen = new Set();
        const walk = (o) => {
            if (!o || typeof o !== 'object') return;
            if (Array.isArray(o['x-error-codes'])) o['x-error-codes'].forEach((c) => seen.add(c));
            Object.values(o).forEach(walk);
        };
        walk(spec.paths); walk(spec.components.responses);
        const missing = Object.keys(CODES).filter((c) => !seen.has(c) && !['not_found', 'method_not_allowed'].includes(c));
        assert(!missing.length, `codes on no response: ${missing.join(', ')}`);
    });
    await test('response schemas: every property required, no extras allowed', () => {
        const errs = [];
        for (const [name, s] of Object.entries(spec.components.schemas)) {
            if (s.type !== 'object' || !s.properties || /Request$|StripeEvent/.test(name)) continue;
            const props = Object.keys(s.properties);
            if (JSON.stringify(props) !== JSON.stringify(s.required)) errs.push(`${name}: required != properties`);
            if (s.additionalProperties !== false) errs.push(`${name}: additionalProperties not false`);
        }
        noErrors(errs);
    });
    await test('metered operations document X-Credits-*, X-RateLimit-* on 200 and Retry-After on 429', () => {
        const errs = [];
        for (const [m, p, , cost] of CONTRACT) {
            if (!cost) continue;
            const op = spec.paths[p][m.toLowerCase()];
            const ok = L.resolve(spec, op.responses['200']);
            for (const h of ['X-Request-ID', 'X-Credits-Remaining', 'X-Credits-Used', 'X-Credits-Total', 'X-Credits-Cost',
                'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset'])
                if (!ok.headers[h]) errs.push(`${m} ${p} 200: no ${h}`);
            const r429 = L.resolve(spec, op.responses['429']);
            if (!r429 || !r429.headers['Retry-After']) errs.push(`${m} ${p}: 429 without Retry-After`);
        }
        noErrors(errs);
    });
    await test('validate-response rejects a body that drifts from the spec', () => {
        const bad = L.validateResponse(spec, { method: 'GET', path: '/health', status: 200, body: { status: 'ok', extra: 1 } });
        const wrongCode = L.validateResponse(spec, { method: 'GET', path: '/events/X', status: 404,
            body: { error: { code: 'market_not_found', message: 'x', status: 404 }, request_id: 'req_0123456789ab' } });
        const good = L.validateResponse(spec, { method: 'GET', path: '/keys/abc/reveal', status: 404,
            body: { error: { code: 'key_not_found', message: 'x', status: 404 }, request_id: 'req_0123456789ab' } });
        assert(bad.length && wrongCode.length && !good.length, `bad=${bad} wrongCode=${wrongCode} good=${good}`);
    });
}

const examples = parseExamples();

// static/plans.json is the one source of the plans' figures (t/docs/plans.js).
async function planTests() {
    const P = require('./plans');
    await test('static/plans.json: the llms.txt, llms-full.txt and openapi.json plan blocks are generated from it, no other figure disagrees, the dashboard states none', () => {
        noErrors(P.check());
    });
    await test('plans check fails when a figure drifts (a changed rate limit, price or allowance)', () => {
        const p = P.load();
        for (const [what, change] of [['rpm', (x) => { x.plans[0].requests_per_minute = 31; }],
            ['price', (x) => { x.plans[2].price_per_month = '31'; }], ['credit price', (x) => { x.payg_price_per_credit = '0.009'; }],
            ['credits', (x) => { x.plans[1].credits_per_month = 1001; }]]) {
            const q = JSON.parse(JSON.stringify(p));
            change(q);
            assert(P.check(q).length > 0, `a drift of the ${what} went unnoticed`);
        }
    });
}

async function exampleStaticTests() {
    await test(`llms-full.txt: ${examples.length} examples parse and cover every spec route`, () => {
        const covered = new Set(examples.map((e) => `${e.method} ${L.normalisePath(L.matchPath(spec, e.path) || e.path)}`));
        const missing = specR.filter((r) => !covered.has(r));
        assert(examples.length >= 30, 'too few examples');
        assert(!missing.length, `routes without an example: ${missing.join(', ')}`);
    });
    for (const ex of examples) {
        await test(`llms-full.txt:${ex.line} example ${ex.method} ${ex.path} ${ex.status} conforms to openapi.json`, () => {
            const errs = L.validateResponse(spec, { method: ex.method, path: ex.path.split('?')[0], status: ex.status, body: ex.body, headers: null });
            const tmpl = L.matchPath(spec, ex.path.split('?')[0]);
            const op = tmpl && spec.paths[tmpl][ex.method.toLowerCase()];
            if (ex.kind === 'full' && tmpl !== null && !op && ex.status !== 405) errs.push('no such operation');
            if (op && ex.kind === 'full') {
                const want = { none: 'none', key: 'key', user: 'user' }[ex.auth];
                const opAuth = Object.entries(SECURITY).find(([, v]) => JSON.stringify(v) === JSON.stringify(op.security))[0];
                if (ex.status < 400 && want !== opAuth && !(opAuth === 'stripe')) errs.push(`auth ${want}, operation needs ${opAuth}`);
            }
            if (op && op.requestBody && ex.reqBody !== undefined && ex.kind === 'full') {
                // request examples: required fields present
                const rs = L.resolve(spec, op.requestBody.content['application/json'].schema);
                if (ex.status === 200) for (const f of rs.required || []) if (!(f in ex.reqBody)) errs.push(`request lacks ${f}`);
            }
            if (op && op['x-credits'] && ex.status === 200 && ex.headers['X-Credits-Cost'] !== String(op['x-credits']))
                errs.push(`example X-Credits-Cost ${ex.headers['X-Credits-Cost']} != ${op['x-credits']}`);
            noErrors(errs);
        });
    }
}

module.exports = { test, assert, noErrors, spec, router, examples, notes, CONTRACT, counts: () => ({ passed, failed }) };

async function main() {
    await specTests();
    await exampleStaticTests();
    await planTests();
    if (process.env.KB_BASE_URL) {
        await require('./live').run(module.exports);
    } else {
        failed++;
        console.log('not ok - live checks: KB_BASE_URL is not set (run through t/run-tests.sh or t/docs/run.sh)');
    }
    for (const n of notes) console.log(`# ${n}`);
    if (process.env.KB_TEST_COUNTS) fs.appendFileSync(process.env.KB_TEST_COUNTS, `${passed} ${failed}\n`);
    console.log(`${passed} passed, ${failed} failed`);
    process.exitCode = failed ? 1 : 0;
}

if (require.main === module) main().catch((e) => {
    console.log(`not ok - test-docs crashed: ${e.stack}`);
    if (process.env.KB_TEST_COUNTS) fs.appendFileSync(process.env.KB_TEST_COUNTS, `${passed} ${failed + 1}\n`);
    process.exit(1);
});
