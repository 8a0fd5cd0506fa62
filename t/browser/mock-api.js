// mock-api.js - an in-memory stand-in for the auth, keys and billing routes of API.md, plus
// a fake Stripe checkout page, serving static/billing and static/assets with the CSP that
// nginx/kalshibook-http.conf gives them. It lets the browser test drive the whole billing
// flow of the page before those routes are merged. Every JSON answer is validated against
// static/openapi.json; answers that are off-contract are collected in `problems`, so the
// mock cannot drift from the spec that the real server is tested against.
// Invariants: listens on 127.0.0.1 only; no state outside the process.
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');
const crypto = require('crypto');
const L = require('../docs/lib');

// The CSP of a page, read from the $kb_csp map of the nginx config.
function nginxCsp(uri) {
    const conf = fs.readFileSync(path.join(L.ROOT, 'nginx', 'kalshibook-http.conf'), 'utf8');
    const block = /map \$uri \$kb_csp \{([\s\S]*?)\n\}/.exec(conf)[1];
    const re = /"~([^"]+)"\s*\n?\s*"([^"]+)";/g;
    let m;
    while ((m = re.exec(block)) !== null) if (new RegExp(m[1]).test(uri)) return m[2];
    return '';
}

function start() {
    const spec = L.loadSpec();
    const problems = [];
    const users = new Map();      // email -> user
    const tokens = new Map();     // token -> user
    let base = '';
    const rid = () => 'req_' + crypto.randomBytes(6).toString('hex');
    const now = () => new Date().toISOString().replace('Z', '+00:00').replace(/\.(\d{3})\+/, '.$1000+');
    const monthStart = () => { const d = new Date(); return `${d.toISOString().slice(0, 7)}-01T00:00:00+00:00`; };

    function send(res, req, status, body, template) {
        const id = body.request_id || (body.error ? body.request_id : undefined) || rid();
        if (!('request_id' in body) && template !== 'noid') body.request_id = id;
        const headers = { 'Content-Type': 'application/json', 'X-Request-ID': body.request_id || id };
        const errs = L.validateResponse(spec, { method: req.method, path: req.url.split('?')[0], status, body, headers });
        if (errs.length) problems.push(...errs.map((e) => `mock ${req.method} ${req.url}: ${e}`));
        res.writeHead(status, headers);
        res.end(JSON.stringify(body));
    }
    const fail = (res, req, status, code, message) =>
        send(res, req, status, { error: { code, message, status }, request_id: rid() });

    function staticFile(res, file, type, uri) {
        const headers = { 'Content-Type': type };
        const csp = nginxCsp(uri);
        if (csp) headers['Content-Security-Policy'] = csp;
        res.writeHead(200, headers);
        res.end(fs.readFileSync(file));
    }

    function user(req) {
        const h = req.headers.authorization || '';
        const m = /^bearer (.+)$/i.exec(h);
        if (!m) return { err: ['invalid_api_key', 'Missing or malformed Authorization header.'] };
        if (m[1].startsWith('kb-')) return { err: ['invalid_auth_method', 'Use a user token.'] };
        const u = tokens.get(m[1]);
        return u ? { u } : { err: ['invalid_api_key', 'Invalid or expired token.'] };
    }
    const info = (k) => ({ id: k.id, name: k.name, key_prefix: k.key.slice(0, 7), key_type: k.key_type,
        created_at: k.created_at, last_used_at: null });
    const statusOf = (u) => ({ tier: u.tier, credits_total: u.total, credits_used: u.used,
        credits_remaining: Math.max(0, u.total - u.used), payg_enabled: u.payg, billing_cycle_start: monthStart() });

    async function handle(req, res) {
        const url = new URL(req.url, 'http://x');
        const p = url.pathname;
        let raw = '';
        for await (const c of req) raw += c;
        let body;
        if (raw) { try { body = JSON.parse(raw); } catch (e) { return fail(res, req, 422, 'validation_error', 'body: invalid JSON'); } }

        if (req.method === 'GET' && p === '/billing')
            return staticFile(res, path.join(L.ROOT, 'static', 'billing', 'index.html'), 'text/html; charset=utf-8', '/billing/index.html');
        if (req.method === 'GET' && /^\/assets\/[a-z.]+$/.test(p)) {
            const f = path.join(L.ROOT, 'static', p);
            if (!fs.existsSync(f)) return fail(res, req, 404, 'not_found', 'Not found.');
            return staticFile(res, f, p.endsWith('.js') ? 'application/javascript; charset=utf-8' : 'text/css; charset=utf-8', p);
        }
        // Fake Stripe Checkout: one page with a pay button; paying is the webhook's effect.
        let m = /^\/mock-stripe\/checkout\/(cs_[a-z0-9]+)$/.exec(p);
        if (m && req.method === 'GET') {
            res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
            return res.end(`<!doctype html><title>Stripe stand-in checkout</title><h1>KalshiBook Project - $30.00 / month</h1>
<form method="post" action="/mock-stripe/checkout/${m[1]}/pay"><button type="submit">Pay and subscribe</button></form>`);
        }
        m = /^\/mock-stripe\/checkout\/(cs_[a-z0-9]+)\/pay$/.exec(p);
        if (m && req.method === 'POST') {
            for (const u of users.values()) if (u.session === m[1]) {
                if (u.sessionKind === 'project') { u.tier = 'project'; u.total = 4000; u.sub = true; }
                else { u.payg = true; if (u.tier === 'free') u.tier = 'payg'; u.sub = true; }
            }
            res.writeHead(303, { Location: `${base}/billing?success=true` });
            return res.end();
        }

        if (req.method === 'POST' && (p === '/auth/signup' || p === '/auth/login')) {
            if (!body || typeof body.email !== 'string' || typeof body.password !== 'string')
                return fail(res, req, 422, 'validation_error', 'body.email: Field required');
            let u = users.get(body.email);
            if (p === '/auth/signup') {
                if (u) return fail(res, req, 409, 'user_already_exists', 'User already registered.');
                if (body.password.length < 8) return fail(res, req, 422, 'validation_error', 'body.password: at least 8 characters');
                u = { id: crypto.randomUUID(), email: body.email, password: body.password, tier: 'free', total: 1000,
                    used: 0, payg: false, sub: false, customer: false, keys: [] };
                users.set(body.email, u);
            } else if (!u || u.password !== body.password) {
                return fail(res, req, 401, 'invalid_credentials', 'Invalid email or password.');
            }
            const token = 'eyJ.mock.' + crypto.randomBytes(12).toString('hex');
            tokens.set(token, u);
            return send(res, req, 200, { access_token: token, refresh_token: '', user_id: u.id, request_id: rid() });
        }
        if (p.startsWith('/keys') || p.startsWith('/billing/')) {
            const a = user(req);
            if (a.err) return fail(res, req, 401, a.err[0], a.err[1]);
            const u = a.u;
            if (req.method === 'POST' && p === '/keys') {
                if (!body) return fail(res, req, 422, 'validation_error', 'body: Field required');
                const k = { id: crypto.randomUUID(), key: 'kb-' + crypto.randomBytes(32).toString('base64url'),
                    name: body.name === undefined ? 'Default' : body.name, key_type: body.key_type || 'dev',
                    created_at: now(), revoked: false };
                u.keys.unshift(k);
                const d = info(k);
                delete d.last_used_at;
                return send(res, req, 200, { data: { id: d.id, key: k.key, name: d.name, key_prefix: d.key_prefix, key_type: d.key_type, created_at: d.created_at } });
            }
            if (req.method === 'GET' && p === '/keys')
                return send(res, req, 200, { data: u.keys.filter((k) => !k.revoked).map(info) });
            if (req.method === 'GET' && p === '/keys/usage')
                return send(res, req, 200, { data: u.keys.filter((k) => !k.revoked).map((k) => Object.assign(info(k), { credits_used: 0 })) });
            if (req.method === 'GET' && /^\/keys\/[^/]+\/reveal$/.test(p))
                return fail(res, req, 404, 'key_not_found', 'API key not found.');
            m = /^\/keys\/([^/]+)$/.exec(p);
            if (m && (req.method === 'PATCH' || req.method === 'DELETE')) {
                if (req.method === 'PATCH') {
                    if (!body) return fail(res, req, 422, 'validation_error', 'body: Field required');
                    if (body.name == null && body.key_type == null) return fail(res, req, 400, 'no_fields', 'No fields to update.');
                }
                const k = u.keys.find((x) => x.id === m[1] && !x.revoked);
                if (!k) return fail(res, req, 404, 'key_not_found', 'API key not found.');
                if (req.method === 'DELETE') { k.revoked = true; return send(res, req, 200, { message: 'API key revoked.' }); }
                if (body.name != null) k.name = body.name;
                if (body.key_type != null) k.key_type = body.key_type;
                return send(res, req, 200, { data: info(k) });
            }
            if (req.method === 'GET' && p === '/billing/status') return send(res, req, 200, statusOf(u));
            if (req.method === 'POST' && p === '/billing/checkout') {
                if (u.tier === 'project') return fail(res, req, 409, 'already_subscribed', 'Already subscribed; use /billing/portal.');
                u.customer = true; u.session = 'cs_' + crypto.randomBytes(8).toString('hex'); u.sessionKind = 'project';
                return send(res, req, 200, { checkout_url: `${base}/mock-stripe/checkout/${u.session}` });
            }
            if (req.method === 'POST' && p === '/billing/portal') {
                if (!u.customer) return fail(res, req, 400, 'no_billing_account', 'No billing account.');
                return send(res, req, 200, { portal_url: `${base}/mock-stripe/portal` });
            }
            if (req.method === 'POST' && p === '/billing/payg') {
                if (!body || typeof body.enable !== 'boolean') return fail(res, req, 422, 'validation_error', 'body.enable: Field required');
                if (!body.enable) {
                    u.payg = false;
                    if (!u.sub) u.tier = 'free';
                    return send(res, req, 200, { payg_enabled: false, message: 'Pay-as-you-go disabled.', checkout_url: null });
                }
                if (u.sub) {
                    u.payg = true;
                    return send(res, req, 200, { payg_enabled: true, message: 'Pay-as-you-go enabled: $0.008 per credit beyond your allowance.', checkout_url: null });
                }
                u.customer = true; u.session = 'cs_' + crypto.randomBytes(8).toString('hex'); u.sessionKind = 'payg';
                return send(res, req, 200, { payg_enabled: false, message: 'Pay-as-you-go bills $0.008 per credit beyond your allowance. Complete checkout to turn it on.', checkout_url: `${base}/mock-stripe/checkout/${u.session}` });
            }
        }
        return fail(res, req, 404, 'not_found', 'No route for this path.');
    }

    const server = http.createServer((req, res) => {
        handle(req, res).catch((e) => { problems.push(`mock crashed: ${e.stack}`); res.writeHead(500); res.end(); });
    });
    return new Promise((resolve) => {
        server.listen(0, '127.0.0.1', () => {
            base = `http://127.0.0.1:${server.address().port}`;
            resolve({ base, problems, close: () => new Promise((r) => server.close(r)) });
        });
    });
}

module.exports = { start, nginxCsp };
