// live.js - the checks of test-docs.js that need the running stack (KB_BASE_URL; the
// stack's CA must be trusted through NODE_EXTRA_CA_CERTS). Static files as nginx serves
// them, live responses validated against openapi.json, and the replay of every
// llms-full.txt example whose route is in the router (the others are listed by name).
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { execFileSync } = require('child_process');
const L = require('./lib');

const BASE = process.env.KB_BASE_URL;

async function call(method, p, { body, headers = {}, raw } = {}) {
    const h = Object.assign({}, headers);
    let payload;
    if (raw !== undefined) payload = raw;
    else if (body !== undefined) { payload = JSON.stringify(body); h['Content-Type'] = 'application/json'; }
    const r = await fetch(BASE + p, { method, headers: h, body: payload, redirect: 'manual' });
    const text = await r.text();
    let json;
    try { json = JSON.parse(text); } catch (e) { json = undefined; }
    return { status: r.status, headers: r.headers, text, json };
}

async function run(T) {
    const { test, assert, noErrors, spec, router, examples, notes } = T;
    const file = (p) => fs.readFileSync(path.join(L.ROOT, 'static', p), 'utf8');

    for (const [p, f, type] of [['/llms.txt', 'llms.txt', 'text/plain; charset=utf-8'],
        ['/llms-full.txt', 'llms-full.txt', 'text/plain; charset=utf-8'],
        ['/openapi.json', 'openapi.json', 'application/json'], ['/plans.json', 'plans.json', 'application/json']]) {
        await test(`GET ${p}: ${type}, the repo file, ETag, Cache-Control, 304 on If-None-Match`, async () => {
            const r = await call('GET', p);
            assert(r.status === 200, `status ${r.status}`);
            assert(r.headers.get('content-type') === type, `content-type ${r.headers.get('content-type')}`);
            assert(r.text === file(f), 'body differs from static/' + f);
            const etag = r.headers.get('etag');
            assert(etag, 'no ETag');
            assert(/max-age=/.test(r.headers.get('cache-control') || ''), `cache-control ${r.headers.get('cache-control')}`);
            const r2 = await call('GET', p, { headers: { 'If-None-Match': etag } });
            assert(r2.status === 304, `revalidation gave ${r2.status}`);
        });
    }
    const CSP = {};
    for (const [p, want] of [['/docs', ["script-src 'self'", 'worker-src', "default-src 'none'"]],
        ['/redoc', ["script-src 'self'", 'worker-src']],
        ...['/billing', '/dashboard', '/dashboard/keys', '/dashboard/billing', '/dashboard/playground'].map((x) =>
            [x, ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]])]) {
        await test(`GET ${p}: HTML with a strict Content-Security-Policy`, async () => {
            const r = await call('GET', p);
            assert(r.status === 200, `status ${r.status}`);
            assert(r.headers.get('content-type') === 'text/html; charset=utf-8', r.headers.get('content-type'));
            const csp = r.headers.get('content-security-policy') || '';
            CSP[p] = csp;
            for (const w of want) assert(csp.includes(w), `CSP lacks ${w}: ${csp}`);
            assert(!/unsafe-eval|\*/.test(csp) && !/script-src[^;]*unsafe-inline/.test(csp), `CSP too loose: ${csp}`);
            assert(!/https?:\/\//.test(r.text), 'page loads something from another origin');
            if (p === '/billing' || p.startsWith('/dashboard')) {
                assert(r.text === file('dashboard/index.html'), `${p} is not static/dashboard/index.html`);
                assert(r.headers.get('cache-control') === 'no-cache', `cache-control ${r.headers.get('cache-control')}`);
            }
        });
    }
    await test('GET /dashboard/other and /dashboard/index.html: the JSON 404 of the app, no page', async () => {
        for (const p of ['/dashboard/other', '/dashboard/index.html', '/dashboard/']) {
            const r = await call('GET', p);
            assert(r.status === 404 && r.json && r.json.error.code === 'not_found', `${p}: ${r.status} ${r.text.slice(0, 100)}`);
        }
    });
    await test('the tiers table the meter charges by agrees with static/plans.json', () => {
        const P = require('./plans');
        noErrors(P.checkDb(process.env.KB_DATABASE_URL));
        const drift = P.load();
        drift.plans[2].requests_per_minute += 1;
        assert(P.checkDb(process.env.KB_DATABASE_URL, drift).length === 1, 'a rate that differs from the tiers row went unnoticed');
    });
    const assets = fs.readdirSync(path.join(L.ROOT, 'static', 'assets')).map((f) =>
        [`/assets/${f}`, f.endsWith('.css') ? 'text/css; charset=utf-8' : 'application/javascript; charset=utf-8']);
    for (const [p, type] of [['/docs/redoc.standalone.js', 'application/javascript; charset=utf-8'], ...assets]) {
        await test(`GET ${p}: served as ${type}`, async () => {
            const r = await call('GET', p);
            assert(r.status === 200 && r.headers.get('content-type') === type, `${r.status} ${r.headers.get('content-type')}`);
            assert(r.text.length > 100, 'empty');
        });
    }

    // Live answers of what main routes today, validated against the spec.
    const liveCases = [
        ['GET /health -> 200', 'GET', '/health', {}, 200],
        ['unknown path -> 404 not_found', 'GET', '/no-such-path', {}, 404, 'not_found'],
        ['wrong method -> 405 method_not_allowed with Allow', 'POST', '/health', { body: {} }, 405, 'method_not_allowed'],
        ['body over 1 MiB -> 413 payload_too_large', 'POST', '/orderbook', { raw: 'x'.repeat(1100000), headers: { 'Content-Type': 'application/json' } }, 413, 'payload_too_large'],
    ];
    for (const [m, p] of router.map((r) => r.split(' '))) {
        const op = spec.paths[Object.keys(spec.paths).find((k) => L.normalisePath(k) === p)];
        const o = op && op[m.toLowerCase()];
        if (!o || !o.security.length || o.security[0].StripeSignature) continue;
        let concrete = p.replace(/\{\}/g, '00000000-0000-4000-8000-000000000000');
        // Data routes validate before the meter checks the key (API.md §7.2), so an
        // unknown key is only reached with a valid request; a missing key is 401 first.
        const VALID = {
            'POST /orderbook': { market_ticker: 'X', timestamp: '2026-01-15T12:00:00+00:00' },
            'POST /deltas': { market_ticker: 'X', start_time: '2026-01-15T00:00:00Z', end_time: '2026-01-16T00:00:00Z' },
            'POST /trades': { market_ticker: 'X', start_time: '2026-01-15T00:00:00Z', end_time: '2026-01-16T00:00:00Z' },
        };
        if (`${m} ${p}` === 'GET /candles/{}') concrete += '?start_time=2026-01-15T00:00:00Z&end_time=2026-01-16T00:00:00Z';
        const body = o.requestBody ? { body: VALID[`${m} ${p}`] || {} } : {};
        liveCases.push([`${m} ${p} without credentials -> 401 invalid_api_key`, m, concrete, body, 401, 'invalid_api_key']);
        if (o.security[0].UserToken)
            liveCases.push([`${m} ${p} with a kb- key -> 401 invalid_auth_method`, m, concrete,
                Object.assign({ headers: { Authorization: 'Bearer kb-' + 'A'.repeat(43) } }, body), 401, 'invalid_auth_method']);
        else
            liveCases.push([`${m} ${p} with an unknown key -> 401 invalid_api_key`, m, concrete,
                Object.assign({ headers: { Authorization: 'Bearer kb-' + 'A'.repeat(43) } }, body), 401, 'invalid_api_key']);
    }
    for (const [name, m, p, opts, status, code] of liveCases) {
        await test(`live ${name}, conforms to openapi.json`, async () => {
            const r = await call(m, p, opts);
            assert(r.status === status, `status ${r.status}: ${r.text.slice(0, 200)}`);
            if (code) assert(r.json && r.json.error && r.json.error.code === code, `body ${r.text.slice(0, 200)}`);
            noErrors(L.validateResponse(spec, { method: m, path: p.split('?')[0], status: r.status, body: r.json, headers: r.headers }));
        });
    }

    await test('t/docs/validate-response.js (the CLI other suites call) accepts a live /health and rejects a drifted body', async () => {
        const r = await call('GET', '/health');
        const tmp = fs.mkdtempSync(path.join(require('os').tmpdir(), 'kb-vr-'));
        try {
            const hfile = path.join(tmp, 'headers.txt');
            fs.writeFileSync(hfile, [...r.headers].map(([k, v]) => `${k}: ${v}`).join('\r\n') + '\r\n');
            const cli = path.join(__dirname, 'validate-response.js');
            execFileSync(process.execPath, [cli, 'GET', '/health', String(r.status), hfile], { input: r.text });
            let refused = false;
            try {
                execFileSync(process.execPath, [cli, 'GET', '/health', '200'], { input: '{"status":"ok","x":1}', stdio: ['pipe', 'pipe', 'pipe'] });
            } catch (e) { refused = e.status === 1; }
            assert(refused, 'a body with an extra field was accepted');
        } finally {
            fs.rmSync(tmp, { recursive: true, force: true });
        }
    });

    // Replay the llms-full.txt examples whose route is routed.
    const ctx = { email: `docs-${crypto.randomBytes(6).toString('hex')}@example.com`, password: 'correct horse battery' };
    const routed = (m, p) => router.includes(`${m} ${L.normalisePath(L.matchPath(spec, p.split('?')[0]) || p)}`);
    async function freshUser() {
        assert(routed('POST', '/auth/signup'), 'needs a user token, but POST /auth/signup is not routed');
        const r = await call('POST', '/auth/signup', { body: { email: `docs-${crypto.randomBytes(6).toString('hex')}@example.com`, password: ctx.password } });
        assert(r.status === 200, `signup for a replay user: ${r.status} ${r.text}`);
        return r.json.access_token;
    }
    async function userToken() { return ctx.token || (ctx.token = await freshUser()); }
    async function apiKey() {
        if (ctx.key) return ctx.key;
        assert(routed('POST', '/keys'), 'needs an API key, but POST /keys is not routed');
        const r = await call('POST', '/keys', { body: { name: 'docs-replay' }, headers: { Authorization: `Bearer ${await userToken()}` } });
        assert(r.status === 200, `key for replay: ${r.status} ${r.text}`);
        return (ctx.key = r.json.data.key);
    }
    let fixtureLoaded = false;
    function fixture() {
        if (fixtureLoaded) return;
        fixtureLoaded = true;
        execFileSync('psql', [process.env.KB_DATABASE_URL, '-v', 'ON_ERROR_STOP=1', '-q', '-f', path.join(__dirname, 'fixture.sql')],
            { stdio: ['ignore', 'pipe', 'pipe'] });
    }
    const EX_KEY_ID = '0b6f2c1e-5d4a-4f3b-9a8c-7e6d5c4b3a21';
    const notReplayed = [];
    let replayed = 0;
    const pathRouted = (p) => router.some((r) => r.split(' ')[1] === L.normalisePath(L.matchPath(spec, p.split('?')[0]) || p));
    // Checkout, portal and PAYG answer 503 billing_not_configured without a Stripe key; their
    // examples need the stack to run with Stripe (the stand-in) configured.
    const appEnv = path.join(process.env.KB_STACK_DIR || '/nonexistent', 'app.env');
    const stripe = Boolean(process.env.STRIPE_SECRET_KEY) ||
        (fs.existsSync(appEnv) && /^\s*(export\s+)?STRIPE_SECRET_KEY=\S/m.test(fs.readFileSync(appEnv, 'utf8')));
    const notStripe = [];
    for (const ex of examples.filter((e) => e.kind === 'full')) {
        const live = ex.status === 405 ? pathRouted(ex.path) : routed(ex.method, ex.path);
        if (!live && L.matchPath(spec, ex.path.split('?')[0])) {
            notReplayed.push(`${ex.method} ${ex.path.split('?')[0]} (llms-full.txt:${ex.line})`);
            continue;
        }
        if (/^\/billing\/(checkout|portal|payg)$/.test(ex.path) && !stripe) {
            notStripe.push(`${ex.method} ${ex.path} (llms-full.txt:${ex.line})`);
            continue;
        }
        replayed++;
        await test(`replay llms-full.txt:${ex.line} ${ex.method} ${ex.path} -> ${ex.status}, same fields`, async () => {
            const headers = {};
            let p = ex.path;
            let body = ex.reqBody;
            if (body && body.email === 'ada@example.com') body = Object.assign({}, body, { email: ctx.email });
            const tmpl = L.matchPath(spec, p.split('?')[0]);
            const op = tmpl && spec.paths[tmpl][ex.method.toLowerCase()];
            if (op && op['x-credits'] > 0) fixture();
            if (ex.auth === 'user') {
                // Billing examples start from a new account each, so one does not change the next.
                const tok = p.startsWith('/billing/') ? await freshUser() : await userToken();
                headers.Authorization = `Bearer ${tok}`;
            } else if (ex.auth === 'key') {
                headers.Authorization = `Bearer ${await apiKey()}`;
            }
            if (p.includes(EX_KEY_ID)) {
                if (!ctx.keyId) {
                    const r = await call('POST', '/keys', { body: { name: 'research' }, headers: { Authorization: `Bearer ${await userToken()}` } });
                    ctx.keyId = r.json.data.id;
                }
                p = p.replace(EX_KEY_ID, ctx.keyId);
            }
            const r = await call(ex.method, p, { body, headers });
            if (ex.method === 'POST' && ex.path === '/keys' && r.status === 200) ctx.keyId = r.json.data.id;
            assert(r.status === ex.status, `status ${r.status}, example says ${ex.status}: ${r.text.slice(0, 300)}`);
            assert(r.json, 'body is not JSON');
            const want = [...L.fieldPaths(ex.body)].sort();
            const got = [...L.fieldPaths(r.json)].sort();
            const missing = want.filter((f) => !got.includes(f));
            const extra = got.filter((f) => !want.includes(f));
            assert(!missing.length && !extra.length, `fields differ; missing: ${missing.join(', ') || '-'}; extra: ${extra.join(', ') || '-'}`);
            if (ex.body.error) assert(r.json.error.code === ex.body.error.code, `code ${r.json.error.code}, example ${ex.body.error.code}`);
            for (const [h, v] of Object.entries(ex.headers)) {
                const got1 = r.headers.get(h);
                assert(got1 !== null, `header ${h} missing`);
                if (h === 'X-Credits-Cost' || h === 'Allow') assert(got1 === v, `${h}: ${got1}, example ${v}`);
            }
            noErrors(L.validateResponse(spec, { method: ex.method, path: p.split('?')[0], status: r.status, body: r.json, headers: r.headers }));
        });
    }
    await test('every llms-full.txt example of a spec route is replayed (its route is routed)', () => {
        assert(!notReplayed.length, `examples of routes not in app/routes.c: ${notReplayed.join(', ')}`);
    });
    notes.push(`llms-full.txt examples replayed against the stack: ${replayed}`);
    if (notStripe.length) notes.push(`NOT replayed because the test stack has no STRIPE_SECRET_KEY (billing_not_configured): ${notStripe.join(', ')}`);
}

module.exports = { run, call };
