// mock-api.js - an in-memory stand-in for the public API (auth, keys, billing and the data
// routes with metering) plus a fake Stripe checkout and portal, serving the dashboard's
// static files with the CSP that nginx/kalshibook-http.conf gives them. It lets the browser
// test drive every view of the dashboard, including what the real stack does not answer yet
// (GET /keys/usage by day per /work/helpers/usage_contract.md, GET /markets/{t}/coverage,
// the fixed-point fields of API.md 7.19), and the error states that are hard to provoke on a
// real stack (429 rate_limit_exceeded with Retry-After, credits_exhausted).
// Every JSON answer is validated against static/openapi.json, extended (in memory, only where
// the spec does not yet have them) by those contract additions; off-contract answers are
// collected in `problems`, so the mock cannot drift from the spec the real server is tested
// against. The market data is computed here independently of the dashboard's own code
// (static/assets/kb-data.js), so the test can compare what the page replays with what the
// "server" says.
// Invariants: listens on 127.0.0.1 only; no state outside the process; integer arithmetic
// (1/100 cent, 1/100 contract) for market data.
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

// Does the spec document `days` on GET /keys/usage 200 (in whichever schema it uses)?
function usageHasDays(spec) {
    const seen = new Set();
    const walk = (o) => {
        o = L.resolve(spec, o);
        if (!o || typeof o !== 'object' || seen.has(o)) return false;
        seen.add(o);
        if (o.properties && o.properties.days) return true;
        return ['oneOf', 'anyOf', 'allOf'].some((k) => Array.isArray(o[k]) && o[k].some(walk));
    };
    const r = L.resolve(spec, spec.paths['/keys/usage'].get.responses['200']);
    return walk(r.content['application/json'].schema);
}

// The spec plus the contract additions other issues are building, each added only when the
// spec does not have it yet (so once they are merged, the real definitions are used).
function extendedSpec() {
    const spec = L.loadSpec();
    const S = spec.components.schemas;
    const added = [];
    const ts = { $ref: '#/components/schemas/Timestamp' }, tsn = { $ref: '#/components/schemas/TimestampOrNull' };
    const dollars = { type: 'string', pattern: '^[0-9]+\\.[0-9]{4}$' }, fp = { type: 'string', pattern: '^-?[0-9]+\\.[0-9]{2}$' };
    const loosen = (schema, fields, extra) => {
        for (const f of fields) schema.properties[f] = Object.assign({}, schema.properties[f], { type: 'number' });
        Object.assign(schema.properties, extra);
    };
    if (!S.Level.properties.price_dollars) {
        added.push('API.md 7.19 fixed-point fields');
        loosen(S.Level, ['price', 'quantity'], { price_dollars: dollars, quantity_fp: fp });
        loosen(S.Delta, ['price_cents', 'delta_amount'], { price_dollars: dollars, delta_fp: fp, received_at: tsn });
        loosen(S.Trade, ['yes_price', 'no_price', 'count'], { yes_price_dollars: dollars, no_price_dollars: dollars, count_fp: fp, received_at: tsn });
        loosen(S.Candle, ['open', 'high', 'low', 'close', 'volume'], { open_dollars: dollars, high_dollars: dollars, low_dollars: dollars, close_dollars: dollars, volume_fp: fp });
    }
    if (!S.OrderbookRequest.properties.units) {
        added.push('API.md 7.19 units=dollars');
        S.OrderbookRequest.properties.units = { type: ['string', 'null'], enum: ['dollars', null] };
        S.LevelDollars = { type: 'object', additionalProperties: false, required: ['price_dollars', 'quantity_fp'],
            properties: { price_dollars: dollars, quantity_fp: fp } };
        for (const side of ['yes', 'no'])
            S.OrderbookResponse.properties[side] = { type: 'array', items: { oneOf: [{ $ref: '#/components/schemas/Level' }, { $ref: '#/components/schemas/LevelDollars' }] } };
    }
    if (!S.OrderbookResponse.properties.complete) {
        added.push('API.md 7.21 complete/gap');
        S.OrderbookResponse.properties.complete = { type: 'boolean' };
        S.OrderbookResponse.properties.gap = { type: ['object', 'null'] };
    }
    if (!usageHasDays(spec)) {
        added.push('usage_contract.md days');
        S.ApiKeyUsageList.properties.days = { type: 'array', items: { type: 'object', additionalProperties: false,
            required: ['date', 'key_id', 'endpoint', 'credits_used', 'requests'],
            properties: { date: { type: 'string', pattern: '^\\d{4}-\\d\\d-\\d\\d$' }, key_id: { type: 'string', format: 'uuid' },
                endpoint: { type: 'string' }, credits_used: { type: 'integer', minimum: 0 }, requests: { type: 'integer', minimum: 1 } } } };
    }
    if (!spec.paths['/markets/{ticker}/coverage']) {
        added.push('API.md 7.20 coverage');
        const op = JSON.parse(JSON.stringify(spec.paths['/markets/{ticker}'].get));
        op.operationId = 'getMarketCoverage';
        op.summary = 'Coverage of one market';
        op.responses['200'].content['application/json'].schema = { type: 'object', additionalProperties: false,
            required: ['market_ticker', 'first_data_at', 'last_data_at', 'gaps', 'request_id', 'response_time'],
            properties: { market_ticker: { type: 'string' }, first_data_at: tsn, last_data_at: tsn,
                gaps: { type: 'array', items: { type: 'object', required: ['start', 'end', 'reason'], properties: { start: ts, end: tsn, reason: { type: ['string', 'null'] } } } },
                request_id: { $ref: '#/components/schemas/RequestId' }, response_time: { $ref: '#/components/schemas/ResponseTime' } } };
        spec.paths['/markets/{ticker}/coverage'] = { get: op };
    }
    return { spec, added };
}

// ---- market data (integers: price in 1/100 cent, quantity in 1/100 contract) --------------
const iso = (ms) => new Date(ms).toISOString().replace('.000Z', '+00:00').replace(/\.(\d{3})Z$/, '.$1000+00:00');
const T0 = Date.parse('2026-01-15T10:00:00Z');
function dec(v, scale) {
    const neg = v < 0, a = Math.abs(v), d = 10 ** scale;
    return (neg ? '-' : '') + Math.floor(a / d) + '.' + String(a % d).padStart(scale, '0');
}
// price units (1/100 cent) -> JSON cents number (42 or 41.5); qty (1/100) -> 150 or 12.25.
const centsNum = (p) => Number(dec(p, 2));
const qtyNum = (q) => Number(dec(q, 2));
const dollarsStr = (p) => dec(p, 4);        // 1/100 cent = 1/10000 dollar
const fpStr = (q) => dec(q, 2);

// Two markets, both with the exact strings of API.md 7.19: MOCK-FP has subpenny prices and
// fractional quantities, MOCK-INT whole cents and contracts (the numbers are integers). Both:
// a snapshot at 10:00, deltas every 10 minutes from 10:05, trades, and (MOCK-FP) a coverage
// gap 11:40-12:10. (Answers without the strings, the API before 7.19, are the real stack's
// today and kb-data.js's node tests.)
const MARKETS = {
    'MOCK-FP': { fp: true, title: 'Mock market with fixed-point prices', snap: { yes: [[4200, 15000], [4150, 1225], [4000, 6000], [550, 2000]], no: [[5700, 12000], [5600, 8000]] },
        gaps: [{ start: iso(T0 + 100 * 60000), end: iso(T0 + 130 * 60000), reason: 'restart', channel: 'orderbook' }] },
    'MOCK-INT': { fp: false, title: 'Mock market with whole cents', snap: { yes: [[3000, 1000], [2900, 500]], no: [[6800, 700]] }, gaps: [] },
};
for (const [t, m] of Object.entries(MARKETS)) {
    // Deterministic deltas: alternate sides, prices near the touch, small quantities.
    m.deltas = [];
    for (let i = 0; i < 18; i++) {
        const side = i % 3 === 2 ? 'no' : 'yes';
        const lv = m.snap[side];
        const price = lv[i % lv.length][0] + (m.fp && i % 4 === 1 ? 50 : 0);
        const amount = (i % 5 === 3 ? -1 : 1) * (m.fp ? 250 + 125 * (i % 3) : 100 * (1 + i % 4));
        m.deltas.push({ id: i + 1, ts: T0 + (5 + 10 * i) * 60000, seq: 101 + i, side, price, amount });
    }
    m.trades = [];
    for (let i = 0; i < 8; i++) {
        const yes = m.snap.yes[0][0] + (i % 3 - 1) * (m.fp ? 50 : 100);
        m.trades.push({ id: i + 1, trade_id: crypto.createHash('md5').update(t + i).digest('hex'), ts: T0 + (12 + 25 * i) * 60000,
            yes, count: (m.fp ? 1050 : 1000) + 100 * i, taker: i % 2 ? 'no' : 'yes' });
    }
    m.first = iso(T0);
    m.last = iso(m.deltas[m.deltas.length - 1].ts);
}
// The book at `ms`: the snapshot, then every delta with ts <= ms (API.md 5.6 step 5).
function bookAt(m, ms) {
    const b = { yes: new Map(m.snap.yes), no: new Map(m.snap.no) };
    for (const d of m.deltas) {
        if (d.ts > ms) break;
        const s = b[d.side], q = (s.get(d.price) || 0) + d.amount;
        if (q <= 0) s.delete(d.price); else s.set(d.price, q);
    }
    return b;
}
function level(price, qty, units) {
    if (units === 'dollars') return { price_dollars: dollarsStr(price), quantity_fp: fpStr(qty) };
    return { price: centsNum(price), quantity: qtyNum(qty), price_dollars: dollarsStr(price), quantity_fp: fpStr(qty) };
}

function start() {
    const { spec, added } = extendedSpec();
    const problems = [];
    const users = new Map();      // email -> user
    const tokens = new Map();     // token -> user
    const control = { rateLimitNext: 0, answered: [] };
    let base = '';
    const rid = () => 'req_' + crypto.randomBytes(6).toString('hex');
    const now = () => new Date().toISOString().replace('Z', '+00:00').replace(/\.(\d{3})\+/, '.$1000+');
    const monthStart = () => `${new Date().toISOString().slice(0, 7)}-01T00:00:00+00:00`;

    function send(res, req, status, body, extraHeaders) {
        if (!('request_id' in body)) body.request_id = rid();
        const headers = Object.assign({ 'Content-Type': 'application/json', 'X-Request-ID': body.request_id }, extraHeaders || {});
        const errs = L.validateResponse(spec, { method: req.method, path: req.url.split('?')[0], status, body, headers });
        if (errs.length) problems.push(...errs.map((e) => `mock ${req.method} ${req.url}: ${e}`));
        control.answered.push(`${req.method} ${req.url.split('?')[0]} ${status}`);
        res.writeHead(status, headers);
        res.end(JSON.stringify(body));
    }
    const fail = (res, req, status, code, message, headers) =>
        send(res, req, status, { error: { code, message, status }, request_id: rid() }, headers);

    function staticFile(res, file, type, uri) {
        const headers = { 'Content-Type': type, 'Cache-Control': 'no-cache' };
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
        if (!u) return { err: ['invalid_api_key', 'Invalid or expired token.'] };
        if (u.tokenExp && u.tokenExp.get(m[1]) <= Date.now()) return { err: ['invalid_api_key', 'Token expired.'] };
        return { u };
    }
    function keyUser(req) {
        const m = /^bearer (kb-\S+)$/i.exec(req.headers.authorization || '');
        if (!m) return null;
        for (const u of users.values()) for (const k of u.keys) if (k.key === m[1] && !k.revoked) return { u, k };
        return null;
    }
    const info = (k) => ({ id: k.id, name: k.name, key_prefix: k.key.slice(0, 7), key_type: k.key_type,
        created_at: k.created_at, last_used_at: k.last_used_at });
    const statusOf = (u) => ({ tier: u.tier, credits_total: u.total, credits_used: u.used,
        credits_remaining: Math.max(0, u.total - u.used), payg_enabled: u.payg, billing_cycle_start: monthStart() });
    const keyCredits = (u, k) => u.usage.filter((x) => x.key_id === k.id).reduce((a, x) => a + x.credits_used, 0);

    // Metering: the route's x-credits, 429s, refunds; returns headers or an answer.
    const RPM = { free: 30, payg: 60, project: 120 };
    function meter(u, k, tmpl, method) {
        const op = spec.paths[tmpl][method.toLowerCase()];
        const cost = op['x-credits'];
        const rl = { 'X-RateLimit-Limit': String(RPM[u.tier]), 'X-RateLimit-Remaining': String(RPM[u.tier] - 1),
            'X-RateLimit-Reset': String(Math.floor(Date.now() / 60000) * 60 + 60) };
        if (control.rateLimitNext) {
            const s = control.rateLimitNext;
            control.rateLimitNext = 0;
            return { refuse: [429, 'rate_limit_exceeded', `Rate limit of ${RPM[u.tier]} requests per minute exceeded.`,
                Object.assign({ 'Retry-After': String(s) }, rl, { 'X-RateLimit-Remaining': '0' })] };
        }
        if (u.used + cost > u.total && !u.payg)
            return { refuse: [429, 'credits_exhausted', 'Monthly credits exhausted. Enable pay-as-you-go (POST /billing/payg) or upgrade (POST /billing/checkout).', {}] };
        u.used += cost;
        k.last_used_at = now();
        const entry = { date: new Date().toISOString().slice(0, 10), key_id: k.id, endpoint: tmpl, credits_used: cost, requests: 1 };
        u.usage.push(entry);
        const headers = () => Object.assign({ 'X-Credits-Remaining': String(Math.max(0, u.total - u.used)), 'X-Credits-Used': String(u.used),
            'X-Credits-Total': String(u.total), 'X-Credits-Cost': String(entry.credits_used) }, rl);
        return { headers, refund() { u.used -= cost; entry.credits_used = 0; u.usage.splice(u.usage.indexOf(entry), 1); } };
    }

    async function data(req, res, p, url, body) {
        const tmpl = L.matchPath(spec, p);
        const op = tmpl && spec.paths[tmpl][req.method.toLowerCase()];
        if (!op) return fail(res, req, 404, 'not_found', 'No route for this path.');
        const ku = keyUser(req);
        if (!ku) return fail(res, req, 401, 'invalid_api_key', 'Invalid or revoked API key.');
        // Validate before metering (API.md 7.2).
        const tsOk = (s) => typeof s === 'string' && !Number.isNaN(Date.parse(s));
        if (req.method === 'POST') {
            if (!body || typeof body.market_ticker !== 'string') return fail(res, req, 422, 'validation_error', 'body.market_ticker: Field required');
            if (p === '/orderbook' && !tsOk(body.timestamp)) return fail(res, req, 400, 'invalid_timestamp', 'body.timestamp: invalid');
            if (p !== '/orderbook' && (!tsOk(body.start_time) || !tsOk(body.end_time) || Date.parse(body.start_time) > Date.parse(body.end_time)))
                return fail(res, req, 400, 'invalid_timestamp', 'body.start_time/end_time: invalid');
            if (body.limit !== undefined && !(Number.isInteger(body.limit) && body.limit >= 1 && body.limit <= 1000))
                return fail(res, req, 422, 'validation_error', 'body.limit: must be 1..1000');
        }
        if (tmpl === '/candles/{ticker}') {
            const q = url.searchParams;
            if (!tsOk(q.get('start_time')) || !tsOk(q.get('end_time'))) return fail(res, req, 422, 'validation_error', 'query.start_time: Field required');
            if (!['1m', '1h', '1d'].includes(q.get('interval') || '1h')) return fail(res, req, 422, 'validation_error', 'query.interval: one of 1m, 1h, 1d');
        }
        const mt = meter(ku.u, ku.k, tmpl, req.method);
        if (mt.refuse) return fail(res, req, mt.refuse[0], mt.refuse[1], mt.refuse[2], mt.refuse[3]);
        const rt = { response_time: 0.0012 };
        const ok = (b) => send(res, req, 200, Object.assign(b, { request_id: rid() }, rt), mt.headers());
        const miss = (code, msg) => { mt.refund(); fail(res, req, 404, code, msg, mt.headers()); };
        const tick = decodeURIComponent(p.split('/')[2] || '');
        const summary = (t, m) => ({ ticker: t, title: m.title, event_ticker: 'MOCK', status: 'active', category: 'Mock', first_data_at: m.first, last_data_at: m.last });
        if (tmpl === '/markets') return ok({ data: Object.entries(MARKETS).map(([t, m]) => summary(t, m)) });
        if (tmpl === '/markets/{ticker}/coverage') {
            const m = MARKETS[tick];
            if (!m) return miss('market_not_found', `Market '${tick}' not found.`);
            return ok({ market_ticker: tick, first_data_at: m.first, last_data_at: m.last, gaps: m.gaps });
        }
        if (tmpl === '/markets/{ticker}') {
            const m = MARKETS[tick];
            if (!m) return miss('market_not_found', `Market '${tick}' not found.`);
            return ok({ data: Object.assign(summary(tick, m), { rules: null, strike_price: null, discovered_at: m.first, metadata: null, snapshot_count: 1, delta_count: m.deltas.length }) });
        }
        if (p === '/orderbook') {
            const m = MARKETS[body.market_ticker];
            if (!m) return miss('market_not_found', `Market '${body.market_ticker}' not found.`);
            const ms = Date.parse(body.timestamp);
            if (ms < T0) return miss('no_data_available', `No snapshot at or before this time; the earliest is ${m.first}.`);
            const b = bookAt(m, ms);
            if (body.units !== undefined && body.units !== null && body.units !== 'dollars') { mt.refund(); return fail(res, req, 422, 'validation_error', 'body.units: must be "dollars" or null'); }
            const side = (mp) => [...mp.entries()].sort((x, y) => y[0] - x[0]).slice(0, body.depth === undefined || body.depth === null ? undefined : body.depth).map(([pr, q]) => level(pr, q, body.units));
            const g0 = m.gaps.find((g) => g.channel === 'orderbook' && Date.parse(g.start) <= ms && ms < Date.parse(g.end));
            const gap = g0 && { start: g0.start, end: g0.end, reason: g0.reason };
            return ok({ market_ticker: body.market_ticker, timestamp: iso(ms), snapshot_basis: m.first, deltas_applied: m.deltas.filter((d) => d.ts <= ms).length,
                yes: side(b.yes), no: side(b.no), complete: !gap, gap: gap || null });
        }
        if (p === '/deltas' || p === '/trades') {
            const m = MARKETS[body.market_ticker];
            const a = Date.parse(body.start_time), e = Date.parse(body.end_time), limit = body.limit || 100;
            let after = 0;
            if (body.cursor) {
                try { after = JSON.parse(Buffer.from(body.cursor, 'base64').toString()).id; } catch (_) { mt.refund(); return fail(res, req, 422, 'validation_error', 'body.cursor: invalid pagination cursor'); }
            }
            const rows = !m ? [] : (p === '/deltas' ? m.deltas.filter((d) => d.ts >= a && d.ts <= e) : m.trades.filter((x) => x.ts >= a && x.ts < e)).filter((x) => x.id > after);
            const page = rows.slice(0, limit), more = rows.length > limit;
            const lastRow = page[page.length - 1];
            const out = page.map((x) => (p === '/deltas'
                ? { market_ticker: body.market_ticker, ts: iso(x.ts), seq: x.seq, price_cents: centsNum(x.price), delta_amount: qtyNum(x.amount), side: x.side,
                    price_dollars: dollarsStr(x.price), delta_fp: fpStr(x.amount), received_at: m.fp ? iso(x.ts + 40) : null }
                : { trade_id: x.trade_id, market_ticker: body.market_ticker, yes_price: centsNum(x.yes), no_price: centsNum(10000 - x.yes), count: qtyNum(x.count), taker_side: x.taker, ts: iso(x.ts),
                    yes_price_dollars: dollarsStr(x.yes), no_price_dollars: dollarsStr(10000 - x.yes), count_fp: fpStr(x.count), received_at: m.fp ? iso(x.ts + 40) : null }));
            return ok({ data: out, next_cursor: more ? Buffer.from(JSON.stringify({ ts: iso(lastRow.ts), id: lastRow.id })).toString('base64') : null, has_more: more });
        }
        if (tmpl === '/candles/{ticker}') {
            const m = MARKETS[tick];
            const q = url.searchParams, a = Date.parse(q.get('start_time')), e = Date.parse(q.get('end_time'));
            const w = { '1m': 60000, '1h': 3600000, '1d': 86400000 }[q.get('interval') || '1h'];
            const buckets = new Map();
            for (const x of m ? m.trades.filter((t) => t.ts >= a && t.ts < e) : []) {
                const b = Math.floor(x.ts / w) * w;
                if (!buckets.has(b)) buckets.set(b, []);
                buckets.get(b).push(x);
            }
            const out = [...buckets.entries()].sort((x, y) => x[0] - y[0]).map(([b, ts]) => {
                const ps = ts.map((x) => x.yes), c = { bucket: iso(b).slice(0, 19), market_ticker: tick,
                    open: ps[0], high: Math.max(...ps), low: Math.min(...ps), close: ps[ps.length - 1], volume: ts.reduce((s, x) => s + x.count, 0), trade_count: ts.length };
                return { bucket: c.bucket, market_ticker: tick, open: centsNum(c.open), high: centsNum(c.high), low: centsNum(c.low), close: centsNum(c.close), volume: qtyNum(c.volume), trade_count: c.trade_count,
                    open_dollars: dollarsStr(c.open), high_dollars: dollarsStr(c.high), low_dollars: dollarsStr(c.low), close_dollars: dollarsStr(c.close), volume_fp: fpStr(c.volume) };
            });
            return ok({ data: out });
        }
        if (tmpl === '/events') return ok({ data: [] });
        if (tmpl === '/settlements') return ok({ data: [] });
        if (tmpl === '/events/{event_ticker}') return miss('event_not_found', 'Event not found.');
        if (tmpl === '/settlements/{ticker}') return miss('settlement_not_found', 'Settlement not found.');
        mt.refund();
        return fail(res, req, 404, 'not_found', 'No route for this path.');
    }

    async function handle(req, res) {
        const url = new URL(req.url, 'http://x');
        const p = url.pathname;
        let raw = '';
        for await (const c of req) raw += c;
        let body;
        if (raw) { try { body = JSON.parse(raw); } catch (e) { return fail(res, req, 422, 'validation_error', 'body: invalid JSON'); } }

        if (req.method === 'GET' && /^\/(billing|dashboard(\/(keys|billing|playground))?)$/.test(p))
            return staticFile(res, path.join(L.ROOT, 'static', 'dashboard', 'index.html'), 'text/html; charset=utf-8', '/dashboard/index.html');
        if (req.method === 'GET' && /^\/assets\/[a-z][a-z.-]*$/.test(p)) {
            const f = path.join(L.ROOT, 'static', p);
            if (!fs.existsSync(f)) return fail(res, req, 404, 'not_found', 'Not found.');
            return staticFile(res, f, p.endsWith('.js') ? 'application/javascript; charset=utf-8' : 'text/css; charset=utf-8', p);
        }
        if (req.method === 'GET' && (p === '/plans.json' || p === '/openapi.json')) {
            res.writeHead(200, { 'Content-Type': 'application/json' });
            return res.end(p === '/openapi.json' ? JSON.stringify(spec) : fs.readFileSync(path.join(L.ROOT, 'static', p)));
        }
        // Fake Stripe Checkout: one page with a pay button; paying is the webhook's effect.
        let m = /^\/mock-stripe\/checkout\/(cs_[a-z0-9]+)$/.exec(p);
        if (m && req.method === 'GET') {
            res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
            return res.end(`<!doctype html><html lang="en"><title>Stripe stand-in checkout</title><main><h1>KalshiBook checkout (stand-in)</h1>
<form method="post" action="/mock-stripe/checkout/${m[1]}/pay"><button type="submit">Pay and subscribe</button></form>
<p><a href="/billing?canceled=true">Cancel</a></p></main></html>`);
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
        if (p === '/mock-stripe/portal' && req.method === 'GET') {
            res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
            return res.end('<!doctype html><html lang="en"><title>Billing portal (stand-in)</title><main><h1>Billing portal (stand-in)</h1><p><a href="/billing">Return to KalshiBook</a></p></main></html>');
        }

        if (req.method === 'POST' && (p === '/auth/signup' || p === '/auth/login')) {
            if (!body || typeof body.email !== 'string' || typeof body.password !== 'string')
                return fail(res, req, 422, 'validation_error', 'body.email: Field required');
            let u = users.get(body.email);
            if (p === '/auth/signup') {
                if (u) return fail(res, req, 409, 'user_already_exists', 'User already registered.');
                if (body.password.length < 8) return fail(res, req, 422, 'validation_error', 'body.password: at least 8 characters');
                u = { id: crypto.randomUUID(), email: body.email, password: body.password, tier: 'free', total: 1000,
                    used: 0, payg: false, sub: false, customer: false, keys: [], usage: [], tokenExp: new Map() };
                users.set(body.email, u);
            } else if (!u || u.password !== body.password) {
                return fail(res, req, 401, 'invalid_credentials', 'Invalid email or password.');
            }
            // A JWT-shaped token whose payload carries exp, as the real one does.
            const exp = Math.floor(Date.now() / 1000) + (control.tokenLifetime || 3600);
            const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
            const token = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: u.id, email: u.email, exp })}.${crypto.randomBytes(16).toString('base64url')}`;
            tokens.set(token, u);
            u.tokenExp.set(token, exp * 1000);
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
                    created_at: now(), last_used_at: null, revoked: false };
                u.keys.unshift(k);
                const d = info(k);
                return send(res, req, 200, { data: { id: d.id, key: k.key, name: d.name, key_prefix: d.key_prefix, key_type: d.key_type, created_at: d.created_at } });
            }
            if (req.method === 'GET' && p === '/keys')
                return send(res, req, 200, { data: u.keys.filter((k) => !k.revoked).map(info) });
            if (req.method === 'GET' && p === '/keys/usage') {
                const out = { data: u.keys.filter((k) => !k.revoked).map((k) => Object.assign(info(k), { credits_used: keyCredits(u, k) })) };
                const sd = url.searchParams.get('start_date'), ed = url.searchParams.get('end_date');
                if (sd !== null || ed !== null) {
                    const re = /^\d{4}-\d\d-\d\d$/;
                    if (!re.test(sd || '') || !re.test(ed || '')) return fail(res, req, 422, 'validation_error', 'query.start_date: a date YYYY-MM-DD and end_date are required together');
                    if (sd > ed || (Date.parse(ed) - Date.parse(sd)) / 86400000 > 366) return fail(res, req, 400, 'invalid_timestamp', 'start_date after end_date or more than 366 days');
                    const agg = new Map();
                    for (const x of u.usage) {
                        if (x.date < sd || x.date > ed) continue;
                        const k = `${x.date}|${x.key_id}|${x.endpoint}`;
                        const o = agg.get(k) || { date: x.date, key_id: x.key_id, endpoint: x.endpoint, credits_used: 0, requests: 0 };
                        o.credits_used += x.credits_used; o.requests += x.requests;
                        agg.set(k, o);
                    }
                    out.days = [...agg.values()].sort((x, y) => (x.date + x.key_id + x.endpoint < y.date + y.key_id + y.endpoint ? -1 : 1));
                }
                return send(res, req, 200, out);
            }
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
                if ('overage_cap' in body && body.overage_cap !== null && !(Number.isInteger(body.overage_cap) && body.overage_cap >= 0))
                    return fail(res, req, 422, 'validation_error', 'body.overage_cap: a whole number >= 0 or null');
                if ('overage_cap' in body) u.cap = body.overage_cap;
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
            return fail(res, req, 404, 'not_found', 'No route for this path.');
        }
        return data(req, res, p, url, body);
    }

    const server = http.createServer((req, res) => {
        handle(req, res).catch((e) => { problems.push(`mock crashed: ${e.stack}`); res.writeHead(500); res.end(); });
    });
    return new Promise((resolve) => {
        server.listen(0, '127.0.0.1', () => {
            base = `http://127.0.0.1:${server.address().port}`;
            resolve({ base, problems, added, control, users, markets: MARKETS, bookAt,
                close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }) });
        });
    });
}

module.exports = { start, nginxCsp, usageHasDays };
