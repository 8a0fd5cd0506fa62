// kb-playground.js - the Playground view: pick a data endpoint, fill its form (a market picker
// over GET /markets, UTC date-times, depth, limit...), see the exact request as curl, Python
// (the kalshibook SDK) and JavaScript, send it with one of the user's API keys, and see the
// status, the X-Credits-* / X-RateLimit-* headers and the JSON. It draws: the cumulative
// depth of /orderbook, candles for /candles, and for /deltas the book scrubbed through time
// (replayed from /orderbook at the start); time axes shade the market's coverage gaps from
// GET /markets/{ticker}/coverage when the server offers it.
// Invariants: the endpoints offered and their credit costs come from /openapi.json; every
// extra call the page makes (market list, coverage, the base book) is named with its cost
// before it is made and listed after; an API key is sent only as Authorization to the data
// routes, never put into the code shown; numbers are drawn from the exact strings when the
// API sends them.
'use strict';
(function () {
    const KB = window.KB, D = window.KBData, C = window.KBCharts, $ = KB.$, h = KB.h;

    // The data endpoints: form fields and SDK call of each. `path` as in openapi.json.
    const ENDPOINTS = [
        { id: 'orderbook', method: 'POST', path: '/orderbook', fields: ['market', 'timestamp', 'depth', 'units'], sdk: 'get_orderbook' },
        { id: 'deltas', method: 'POST', path: '/deltas', fields: ['market', 'start', 'end', 'limit', 'cursor', 'base', 'gaps'], sdk: 'list_deltas' },
        { id: 'trades', method: 'POST', path: '/trades', fields: ['market', 'start', 'end', 'limit', 'cursor'], sdk: 'list_trades' },
        { id: 'candles', method: 'GET', path: '/candles/{ticker}', fields: ['market', 'start', 'end', 'interval', 'gaps'], sdk: 'get_candles' },
        { id: 'markets', method: 'GET', path: '/markets', fields: [], sdk: 'list_markets' },
        { id: 'market', method: 'GET', path: '/markets/{ticker}', fields: ['market'], sdk: 'get_market' },
        { id: 'coverage', method: 'GET', path: '/markets/{ticker}/coverage', fields: ['market'], sdk: null },
        { id: 'events', method: 'GET', path: '/events', fields: ['category', 'series', 'status'], sdk: 'list_events' },
        { id: 'event', method: 'GET', path: '/events/{event_ticker}', fields: ['event'], sdk: 'get_event' },
        { id: 'settlements', method: 'GET', path: '/settlements', fields: ['event_filter', 'result'], sdk: 'list_settlements' },
        { id: 'settlement', method: 'GET', path: '/settlements/{ticker}', fields: ['market'], sdk: 'get_settlement' },
    ];
    const INTERVAL_MS = { '1m': 60000, '1h': 3600000, '1d': 86400000 };
    const SDK_DEFAULT_BASE = 'https://api.kalshibook.io';

    let spec = null;          // /openapi.json
    let offered = [];         // ENDPOINTS the spec has, with cost and summary
    let markets = null;       // GET /markets data, once per tab
    let pastedKey = '';       // kept in this page only
    let lang = 'curl';
    let retryUntil = 0;
    let retryTimer = null;
    let loaded = false;
    let last = null;          // the last deltas result, for "next page"

    const cost = (path, method) => {
        const op = spec && spec.paths[path] && spec.paths[path][method.toLowerCase()];
        return op && typeof op['x-credits'] === 'number' ? op['x-credits'] : null;
    };
    const creditsText = (n) => (n === null ? 'metered' : `${D.credits(n)} credit${n === 1 ? '' : 's'}`);
    const endpoint = () => offered.find((e) => e.id === $('pg-endpoint').value) || offered[0];
    const hasCoverage = () => Boolean(spec && spec.paths['/markets/{ticker}/coverage']);
    // POST /orderbook "units": "dollars" (API.md 7.19), offered when the spec has it.
    const hasUnits = () => Boolean(spec && spec.components.schemas.OrderbookRequest && spec.components.schemas.OrderbookRequest.properties.units);

    // ---- the form -------------------------------------------------------------------------
    function showFields() {
        const ep = endpoint();
        if (!ep) return;
        for (const f of document.querySelectorAll('#pg-form [data-field]')) {
            let on = ep.fields.includes(f.dataset.field);
            if (f.dataset.field === 'gaps') on = on && hasCoverage();
            if (f.dataset.field === 'units') on = on && hasUnits();
            f.hidden = !on;
        }
        $('pg-params').hidden = ep.fields.length === 0;
        const extra = [];
        if (ep.fields.includes('base')) extra.push(`replaying from the book at the start adds ${creditsText(cost('/orderbook', 'POST'))}`);
        if (ep.fields.includes('gaps') && hasCoverage()) extra.push(`marking coverage gaps adds ${creditsText(cost('/markets/{ticker}/coverage', 'GET'))}`);
        $('pg-endpoint-help').textContent = `${ep.summary}. Cost: ${creditsText(ep.cost)} per call` + (extra.length ? `; ${extra.join('; ')}` : '') + '.';
        renderCode();
    }

    function value(id) { return $(id).value.trim(); }
    // The request the form describes: {method, path (with query), body|null, problems[]}.
    function buildRequest() {
        const ep = endpoint();
        const problems = [];
        const need = (id, label) => { const v = value(id); if (!v) problems.push(`${label} is required.`); return v; };
        const time = (id, label) => {
            const raw = $(id).value;
            if (!raw) { problems.push(`${label} is required.`); return ''; }
            const iso = D.inputToIso(raw);
            if (!iso) problems.push(`${label} is not a valid date and time.`);
            return iso || raw;
        };
        let path = ep.path, body = null;
        const query = [];
        const f = ep.fields;
        const ticker = f.includes('market') ? need('pg-market', 'Market ticker') : '';
        if (path.includes('{ticker}')) path = path.replace('{ticker}', encodeURIComponent(ticker || 'TICKER'));
        if (path.includes('{event_ticker}')) path = path.replace('{event_ticker}', encodeURIComponent(need('pg-event', 'Event ticker') || 'EVENT'));
        if (ep.id === 'orderbook') {
            body = { market_ticker: ticker, timestamp: time('pg-ts', 'Instant') };
            const d = value('pg-depth');
            if (d !== '') { if (/^\d+$/.test(d)) body.depth = Number(d); else problems.push('Depth must be a whole number (0 or more).'); }
            if (hasUnits() && $('pg-units').value) body.units = $('pg-units').value;
        } else if (ep.id === 'deltas' || ep.id === 'trades') {
            body = { market_ticker: ticker, start_time: time('pg-start', 'Start'), end_time: time('pg-end', 'End') };
            const l = value('pg-limit');
            if (l !== '') { if (/^\d+$/.test(l) && Number(l) >= 1 && Number(l) <= 1000) body.limit = Number(l); else problems.push('Limit must be a whole number from 1 to 1000.'); }
            const c = value('pg-cursor');
            if (c) body.cursor = c;
        } else if (ep.id === 'candles') {
            query.push(['start_time', time('pg-start', 'Start')], ['end_time', time('pg-end', 'End')], ['interval', $('pg-interval').value]);
        } else if (ep.id === 'events') {
            for (const [id, k] of [['pg-category', 'category'], ['pg-series', 'series_ticker'], ['pg-status-filter', 'status']]) if (value(id)) query.push([k, value(id)]);
        } else if (ep.id === 'settlements') {
            for (const [id, k] of [['pg-event-filter', 'event_ticker'], ['pg-result-filter', 'result']]) if (value(id)) query.push([k, value(id)]);
        }
        if ((body && body.start_time && body.end_time && D.tsKey(body.start_time) > D.tsKey(body.end_time)) ||
            (query.length && ep.id === 'candles' && D.tsKey(query[0][1]) > D.tsKey(query[1][1]))) problems.push('The start is after the end.');
        const qs = query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
        return { ep, method: ep.method, path: path + (qs ? '?' + qs : ''), body, query, ticker, problems };
    }

    // ---- code ---------------------------------------------------------------------------------
    const shq = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;
    const py = (s) => JSON.stringify(String(s));
    // A JSON body as a Python literal (true/false/null spelled the Python way).
    const pyValue = (v) => (v === null ? 'None' : v === true ? 'True' : v === false ? 'False' : Array.isArray(v) ? `[${v.map(pyValue).join(', ')}]`
        : typeof v === 'object' ? `{${Object.entries(v).map(([k, x]) => `${py(k)}: ${pyValue(x)}`).join(', ')}}` : typeof v === 'string' ? py(v) : String(v));
    function pyTime(iso) {
        const k = D.tsKey(iso);
        if (!k) return py(iso);
        const n = [k.slice(0, 4), k.slice(5, 7), k.slice(8, 10), k.slice(11, 13), k.slice(14, 16), k.slice(17, 19)].map(Number);
        return `datetime(${n.join(', ')}, tzinfo=timezone.utc)`;
    }
    function code(req, which) {
        const origin = location.origin, url = origin + req.path;
        if (which === 'curl') {
            const lines = [`curl -sS${req.method === 'GET' ? '' : ' -X ' + req.method} ${shq(url)}`, `  -H "Authorization: Bearer $KALSHIBOOK_API_KEY"`];
            if (req.body) lines.push(`  -H 'Content-Type: application/json'`, `  -d ${shq(JSON.stringify(req.body))}`);
            return lines.join(' \\\n');
        }
        if (which === 'js') {
            const init = [`  method: ${JSON.stringify(req.method)},`, '  headers: {', '    Authorization: `Bearer ${process.env.KALSHIBOOK_API_KEY}`,'];
            if (req.body) init.push(`    'Content-Type': 'application/json',`);
            init.push('  },');
            if (req.body) init.push(`  body: JSON.stringify(${JSON.stringify(req.body, null, 2).replace(/\n/g, '\n  ')}),`);
            return [`const res = await fetch(${JSON.stringify(url)}, {`, ...init, '});',
                `console.log(res.status, res.headers.get('x-credits-remaining'), 'credits left');`,
                'console.log(await res.json());'].join('\n');
        }
        // Python, through the SDK (kalshibook 0.1.0) where it has the call.
        const ep = req.ep;
        const base = origin === SDK_DEFAULT_BASE ? '' : `, base_url=${py(origin)}`;
        const head = ['import os'];
        const b = req.body || {};
        const q = Object.fromEntries(req.query);
        if (!ep.sdk || b.units) {
            const what = ep.sdk ? '"units" is' : 'This endpoint is';
            const send = req.body ? `r = httpx.post(${py(url)},\n               json=${pyValue(req.body)},` : `r = httpx.get(${py(url)},`;
            return [`# ${what} not in the kalshibook SDK 0.1.0: plain HTTP with httpx.`, 'import os', 'import httpx', '',
                send, '               headers={"Authorization": f"Bearer {os.environ[\'KALSHIBOOK_API_KEY\']}"})',
                'print(r.status_code, r.headers.get("x-credits-remaining"), "credits left")', 'print(r.json())'].join('\n');
        }
        let call, after = 'print(r)';
        const t = py(req.ticker || 'TICKER');
        if (ep.id === 'orderbook') call = `r = client.get_orderbook(\n    ${t},\n    ${pyTime(b.timestamp)},` + (b.depth !== undefined ? `\n    depth=${b.depth},` : '') + '\n)';
        else if (ep.id === 'deltas' || ep.id === 'trades') {
            call = `# The SDK follows next_cursor itself; this page shows one page at a time.\nfor row in client.${ep.sdk}(\n    ${t},\n    ${pyTime(b.start_time)},\n    ${pyTime(b.end_time)},` +
                (b.limit !== undefined ? `\n    limit=${b.limit},` : '') + '\n):\n    print(row)';
            after = '';
        } else if (ep.id === 'candles') call = `r = client.get_candles(\n    ${t},\n    start_time=${pyTime(q.start_time)},\n    end_time=${pyTime(q.end_time)},\n    interval=${py(q.interval)},\n)`;
        else if (ep.id === 'markets') call = 'r = client.list_markets()';
        else if (ep.id === 'market' || ep.id === 'settlement') call = `r = client.${ep.sdk}(${t})`;
        else if (ep.id === 'event') call = `r = client.get_event(${py(value('pg-event') || 'EVENT')})`;
        else {
            const args = Object.entries(q).map(([k, v]) => `${k}=${py(v)}`).join(', ');
            call = `r = client.${ep.sdk}(${args})`;
        }
        if (/datetime\(/.test(call)) head.push('from datetime import datetime, timezone');
        head.push('from kalshibook import KalshiBook', '');
        return [...head, `client = KalshiBook(os.environ["KALSHIBOOK_API_KEY"]${base})`, call, after].filter((x) => x !== null).join('\n').trimEnd();
    }
    function renderCode() {
        if (!offered.length) return;
        $('pg-code').textContent = code(buildRequest(), lang);
    }

    // ---- keys ------------------------------------------------------------------------------------
    function renderKeyChoice() {
        const sel = $('pg-key');
        const before = sel.value;
        sel.replaceChildren(...KB.tabKeys().map((k) => h('option', { value: k.id, text: `${k.name || '(unnamed)'} (${k.key_prefix}...), created in this tab` })),
            h('option', { value: 'paste', text: 'Paste a key...' }));
        // Keep the choice unless it was "paste" with nothing pasted and a tab key now exists.
        const keep = [...sel.options].some((o) => o.value === before) && !(before === 'paste' && !$('pg-paste').value && sel.options.length > 1);
        if (keep) sel.value = before;
        $('pg-paste-wrap').hidden = sel.value !== 'paste';
    }
    function chosenKey() {
        if ($('pg-key').value === 'paste') return (pastedKey = $('pg-paste').value.trim());
        const k = KB.tabKeys().find((x) => x.id === $('pg-key').value);
        return k ? k.key : '';
    }

    // ---- sending -----------------------------------------------------------------------------------
    // One data call with the key: {status, ok, headers, data, text, ms, path, method}.
    async function call(method, path, body, key) {
        const headers = { Accept: 'application/json', Authorization: 'Bearer ' + key };
        const init = { method, headers, credentials: 'omit', redirect: 'error', cache: 'no-store' };
        if (body) { headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
        const t0 = performance.now();
        const r = await fetch(path, init);
        const text = await r.text();
        let data = null;
        try { data = JSON.parse(text); } catch (_) { data = null; }
        return { status: r.status, ok: r.ok, headers: r.headers, data, text, ms: performance.now() - t0, path, method };
    }
    const also = [];   // helper calls of the last send, listed under the response
    async function helper(method, path, body, key) {
        const r = await call(method, path, body, key);
        also.push(r);
        return r;
    }

    function problemText(r) {
        const e = r.data && r.data.error;
        if (!e) return `HTTP ${r.status}: the answer was not JSON.`;
        const ref = r.data.request_id ? ` Reference: ${r.data.request_id}.` : '';
        if (e.code === 'credits_exhausted') return null;    // rendered with a link
        if (e.code === 'rate_limit_exceeded') return null;
        if (e.code === 'invalid_api_key') return `This API key was not accepted: it may be revoked or mistyped. (${e.message})${ref}`;
        return KB.readable(new KB.ApiError(r.status, e.code, e.message, r.data.request_id, r.headers));
    }

    function startRetryWait(seconds) {
        retryUntil = Date.now() + seconds * 1000;
        clearInterval(retryTimer);
        const tick = () => {
            const left = Math.ceil((retryUntil - Date.now()) / 1000);
            if (left <= 0) {
                clearInterval(retryTimer);
                $('pg-send').disabled = false;
                $('pg-wait').textContent = 'You can send again.';
                return;
            }
            $('pg-send').disabled = true;
            $('pg-wait').textContent = `Rate limit: you can send again in ${left} s.`;
        };
        tick();
        retryTimer = setInterval(tick, 500);
    }

    function showProblem(r) {
        const box = $('pg-problem');
        const e = r.data && r.data.error;
        box.replaceChildren();
        if (e && e.code === 'credits_exhausted') {
            box.append(`You have used all the credits of this cycle (${e.message}) `,
                h('a', { href: '/dashboard/billing', dataset: { view: 'billing' }, text: 'See the plans' }),
                ' to upgrade or turn on Pay-As-You-Go, or wait for the next cycle.');
        } else if (e && e.code === 'rate_limit_exceeded') {
            const s = Number(r.headers.get('Retry-After'));
            const lim = r.headers.get('X-RateLimit-Limit');
            box.append(`Too many requests${lim ? ` (your plan allows ${lim} per minute)` : ''}: wait ${Number.isFinite(s) ? s : 'a few'} seconds and send again. Nothing was charged.`);
            if (Number.isFinite(s) && s > 0) startRetryWait(s);
        } else {
            box.textContent = problemText(r);
        }
        box.hidden = false;
    }

    const HEADERS = [['X-Credits-Cost', 'Credits charged'], ['X-Credits-Used', 'Used this cycle'], ['X-Credits-Remaining', 'Remaining'],
        ['X-Credits-Total', 'Cycle allowance'], ['X-RateLimit-Limit', 'Rate limit (per minute)'], ['X-RateLimit-Remaining', 'Requests left this minute'],
        ['X-RateLimit-Reset', 'Window resets'], ['Retry-After', 'Retry after (s)'], ['X-Request-ID', 'Request id']];
    function renderHeaders(r) {
        const dl = $('pg-headers');
        dl.replaceChildren();
        for (const [name, label] of HEADERS) {
            let v = r.headers.get(name);
            if (v === null) continue;
            if (/^X-Credits-(Used|Remaining|Total)$/.test(name) && /^\d+$/.test(v)) v = D.credits(Number(v));
            if (name === 'X-RateLimit-Reset' && /^\d+$/.test(v)) v = D.utc(new Date(Number(v) * 1000).toISOString().replace('Z', '+00:00'));
            dl.append(h('dt', {}, h('code', { text: name }), ` (${label})`), h('dd', { dataset: { header: name.toLowerCase() }, text: v }));
        }
        const rt = r.data && typeof r.data.response_time === 'number' ? ` (server ${r.data.response_time} s)` : '';
        dl.append(h('dt', { text: 'Round trip' }), h('dd', { text: `${Math.round(r.ms)} ms${rt}` }));
    }
    function renderAlso() {
        const box = $('pg-also');
        box.replaceChildren();
        if (!also.length) return;
        box.append(h('p', { text: 'The page also sent, to draw this:' }));
        box.append(h('ul', {}, ...also.map((r) => h('li', { dataset: { path: r.path } },
            h('code', { text: `${r.method} ${r.path}` }), ` \u2192 ${r.status}, ${creditsText(r.headers.get('X-Credits-Cost') === null ? null : Number(r.headers.get('X-Credits-Cost')))} charged`))));
    }

    const MAX_JSON = 400000;
    function renderJson(r) {
        let text = r.data ? JSON.stringify(r.data, null, 2) : r.text;
        const note = text.length > MAX_JSON ? `\n\n... ${D.credits(text.length - MAX_JSON)} more characters (use Copy JSON for all of it)` : '';
        $('pg-json').textContent = text.slice(0, MAX_JSON) + note;
        lastJson = text;
    }
    let lastJson = '';

    async function send(ev) {
        ev.preventDefault();
        if (Date.now() < retryUntil) return;
        const req = buildRequest();
        if (req.problems.length) return KB.showError(req.problems.join(' '));
        const key = chosenKey();
        if (!key) return KB.showError($('pg-key').value === 'paste' ? 'Paste an API key (it starts with kb-).' : 'Choose an API key.');
        if (!/^kb-\S+$/.test(key)) return KB.showError('An API key starts with kb-.');
        also.length = 0;
        last = null;
        const res = $('pg-result');
        res.hidden = false;
        KB.state($('pg-status'), 'loading', `Sending ${req.method} ${req.path}...`);
        $('pg-problem').hidden = true;
        $('pg-headers').replaceChildren();
        $('pg-draw').replaceChildren();
        $('pg-also').replaceChildren();
        $('pg-json').textContent = '';
        await KB.busy($('pg-send'), async () => {
            let r;
            try {
                r = await call(req.method, req.path, req.body, key);
            } catch (e) {
                KB.state($('pg-status'), 'bad', 'Could not reach the server. Check your connection and try again.');
                return;
            }
            KB.state($('pg-status'), r.ok ? 'ok' : 'bad', `${r.status} ${r.ok ? 'OK' : (r.data && r.data.error ? r.data.error.code : 'error')} \u2014 ${req.method} ${req.path}`);
            renderHeaders(r);
            renderJson(r);
            if (!r.ok) { showProblem(r); $('pg-result-title').focus(); return; }
            try {
                await draw(req, r, key);
            } catch (e) {
                $('pg-draw').replaceChildren(h('p', { class: 'state bad', text: 'Could not draw this answer: ' + (e && e.message || e) }));
            }
            renderAlso();
            $('pg-result-title').focus();
        });
        // busy() re-enabled the button; a Retry-After wait keeps it off.
        if (Date.now() < retryUntil) $('pg-send').disabled = true;
    }

    // GET /markets/{ticker}/coverage when asked and offered; gaps [] when it is not (200 only).
    async function coverage(req, key) {
        if (!hasCoverage() || !$('pg-gaps').checked || !req.ticker) return null;
        const r = await helper('GET', `/markets/${encodeURIComponent(req.ticker)}/coverage`, null, key);
        return r.ok && r.data && Array.isArray(r.data.gaps) ? r.data : null;
    }

    // ---- drawing -------------------------------------------------------------------------------------
    function levelsTable(lv, caption) {
        const rows = Math.max(lv.yes.length, lv.no.length);
        const tb = [];
        for (let i = 0; i < rows; i++) {
            const y = lv.yes[i], n = lv.no[i];
            tb.push(h('tr', {}, h('td', { text: y ? D.cents(y.price) : '' }), h('td', { text: y ? D.qty(y.qty) : '' }),
                h('td', { text: n ? D.cents(n.price) : '' }), h('td', { text: n ? D.qty(n.qty) : '' })));
        }
        return h('div', { class: 'table-wrap' }, h('table', { class: 'levels' },
            h('caption', { text: caption }),
            h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'YES bid' }), h('th', { scope: 'col', text: 'Quantity' }),
                h('th', { scope: 'col', text: 'NO bid' }), h('th', { scope: 'col', text: 'Quantity' }))),
            h('tbody', {}, ...tb)));
    }
    function bookSummary(lv) {
        const by = lv.yes.length ? lv.yes.reduce((a, b) => (b.price > a.price ? b : a)) : null;
        const bn = lv.no.length ? lv.no.reduce((a, b) => (b.price > a.price ? b : a)) : null;
        const bits = [`${lv.yes.length} YES level${lv.yes.length === 1 ? '' : 's'}`, `${lv.no.length} NO level${lv.no.length === 1 ? '' : 's'}`];
        if (by) bits.push(`best YES bid ${D.cents(by.price)}`);
        if (bn) bits.push(`best NO bid ${D.cents(bn.price)} (YES ask ${D.cents(D.PRICE_MAX - bn.price)})`);
        return bits.join(', ');
    }
    function depthFigure(host, lv, title) {
        C.depth(host, { depth: D.depth(lv), title, desc: bookSummary(lv) });
    }

    async function draw(req, r, key) {
        const box = $('pg-draw');
        const d = r.data;
        if (req.ep.id === 'orderbook') {
            const lv = D.levels(d);
            const fig = h('figure', { class: 'figure' });
            const host = h('div', { class: 'chart-host', id: 'pg-depth-chart' });
            fig.append(host, h('figcaption', { text: `Cumulative depth of ${d.market_ticker} at ${D.utc(d.timestamp, true)}: ${bookSummary(lv)}. Built from the snapshot of ${D.utc(d.snapshot_basis, true)} and ${D.credits(d.deltas_applied)} deltas.` }));
            if (d.complete === false) {
                const g = d.gap || {};
                box.append(h('p', { class: 'warn', text: `This instant lies in a recorded coverage gap${g.reason ? ` (${g.reason})` : ''}${g.start ? ` from ${D.utc(g.start)}` : ''}${g.start ? ` to ${g.end ? D.utc(g.end) : 'now'}` : ''}: the book may be incomplete.` }));
            }
            box.append(fig, levelsTable(lv, 'Levels, price descending'));
            depthFigure(host, lv, `Order book depth, ${d.market_ticker}`);
        } else if (req.ep.id === 'candles') {
            const cov = await coverage(req, key);
            const q = Object.fromEntries(req.query);
            const cs = d.data.map(D.candle);
            const gaps = cov ? D.gapsIn(cov.gaps, q.start_time, q.end_time) : [];
            const host = h('div', { class: 'chart-host', id: 'pg-candle-chart' });
            box.append(h('figure', { class: 'figure' }, host, h('figcaption', { text: `${D.credits(cs.length)} ${q.interval} candle${cs.length === 1 ? '' : 's'} of ${req.ticker}, ${D.utc(q.start_time)} to ${D.utc(q.end_time)}` +
                (cov ? `; ${gaps.length} coverage gap${gaps.length === 1 ? '' : 's'} in this range (shaded)` : '') + '.' })));
            C.candles(host, { candles: cs, from: q.start_time, to: q.end_time, intervalMs: INTERVAL_MS[q.interval] || 3600000, gaps,
                title: `Candles, ${req.ticker}`, desc: cs.length ? `From ${D.cents(cs[0].open)} to ${D.cents(cs[cs.length - 1].close)}` : 'No trades in this range' });
        } else if (req.ep.id === 'deltas') {
            await drawDeltas(req, r, key);
        } else if (req.ep.id === 'coverage') {
            const first = d.first_data_at, lastAt = d.last_data_at;
            if (first && lastAt) {
                const host = h('div', { class: 'chart-host', id: 'pg-coverage-chart' });
                box.append(h('figure', { class: 'figure' }, host, h('figcaption', { text: `Data from ${D.utc(first)} to ${D.utc(lastAt)}; ${d.gaps.length} gap${d.gaps.length === 1 ? '' : 's'} (shaded).` })));
                C.timeline(host, { from: first, to: lastAt, marks: [], cursor: null, gaps: D.gapsIn(d.gaps, first, lastAt), title: `Coverage of ${d.market_ticker}`, desc: `${d.gaps.length} gaps` });
            }
        }
    }

    async function drawDeltas(req, r, key, append) {
        const box = $('pg-draw');
        const b = req.body;
        if (!append) {
            let base = { yes: new Map(), no: new Map() }, baseAt = null, baseNote = 'from an empty book (only the changes)';
            if ($('pg-base').checked) {
                const ob = await helper('POST', '/orderbook', { market_ticker: b.market_ticker, timestamp: b.start_time }, key);
                if (ob.ok) { base = D.bookMaps(ob.data); baseAt = ob.data.timestamp; baseNote = `from the book at ${D.utc(ob.data.timestamp, true)}`; }
                else baseNote = `from an empty book: the book at the start could not be had (${ob.status} ${ob.data && ob.data.error ? ob.data.error.code : ''})`;
            }
            const cov = await coverage(req, key);
            last = { req, key, base, baseAt, baseNote, deltas: r.data.data.slice(), cursor: r.data.next_cursor, more: r.data.has_more,
                gaps: cov ? D.gapsIn(cov.gaps, b.start_time, b.end_time) : [], covered: Boolean(cov) };
        } else {
            last.deltas.push(...r.data.data);
            last.cursor = r.data.next_cursor;
            last.more = r.data.has_more;
        }
        const L = last;
        const rp = D.replay(L.base, L.deltas, L.baseAt);
        const n = rp.steps.length;
        box.replaceChildren();
        const strip = h('div', { class: 'chart-host', id: 'pg-strip' });
        const depthHost = h('div', { class: 'chart-host', id: 'pg-scrub-chart' });
        const label = h('p', { id: 'pg-scrub-label', class: 'scrub-label', 'aria-live': 'polite' });
        const slider = h('input', { type: 'range', id: 'pg-scrub', min: 0, max: n, step: 1, value: n });
        const ladder = h('div', { id: 'pg-scrub-ladder' });
        box.append(h('p', { text: `${D.credits(L.deltas.length)} delta${L.deltas.length === 1 ? '' : 's'} loaded; replayed ${L.baseNote}` +
            (rp.skipped ? `; ${rp.skipped} at or before that instant are already in it` : '') + (L.covered ? `; ${L.gaps.length} coverage gap${L.gaps.length === 1 ? '' : 's'} in the range (shaded)` : '') + '.' }),
        strip, h('div', { class: 'field' }, h('label', { for: 'pg-scrub', text: 'Step through the deltas (arrow keys move one at a time)' }), slider), label, depthHost, ladder);
        if (L.more) {
            const next = h('button', { type: 'button', id: 'pg-next-page', text: `Load the next page (${creditsText(endpoint().cost)})` });
            next.addEventListener('click', () => nextPage(next));
            box.append(next);
        }
        const marks = rp.steps.map((d) => D.tsMs(d.ts));
        const show = (i) => {
            const book = D.mapsToLevels(rp.at(i));
            const d = i > 0 ? rp.steps[i - 1] : null;
            const when = d ? d.ts : (L.baseAt || b.start_time);
            const what = d ? `after delta ${i} of ${n}: ${d.side.toUpperCase()} ${D.cents(D.priceOf(d, 'price_cents'))} ${D.qtyOf(d, 'delta_amount', 'delta_fp') > 0 ? '+' : ''}${D.qty(D.qtyOf(d, 'delta_amount', 'delta_fp'))} at ${D.utc(d.ts, true)}`
                : `before the first delta (${D.utc(when, true)})`;
            label.textContent = `Book ${what}.`;
            slider.setAttribute('aria-valuetext', `Step ${i} of ${n}: ${what}`);
            C.timeline(strip, { from: b.start_time, to: b.end_time, marks, cursor: D.tsMs(when), gaps: L.gaps, title: 'Deltas in time', desc: `${n} deltas; cursor at step ${i}` });
            depthFigure(depthHost, book, `Order book ${what}`);
            ladder.replaceChildren(levelsTable(book, `Book at step ${i} of ${n}`));
        };
        slider.addEventListener('input', () => show(Number(slider.value)));
        show(n);
    }
    async function nextPage(button) {
        const L = last;
        if (!L || !L.cursor) return;
        await KB.busy(button, async () => {
            const body = Object.assign({}, L.req.body, { cursor: L.cursor });
            const r = await helper('POST', '/deltas', body, L.key);
            if (!r.ok) { showProblem(r); renderAlso(); return; }
            renderHeaders(r);
            renderJson(r);
            await drawDeltas(L.req, r, L.key, true);
            renderAlso();
            $('pg-scrub').focus();
        });
    }

    // ---- the market picker --------------------------------------------------------------------------
    function fillMarkets(filter) {
        if (!markets) return;
        const f = filter.toUpperCase();
        const hits = [];
        for (const m of markets) {
            if (!f || m.ticker.toUpperCase().includes(f) || (m.title || '').toUpperCase().includes(f)) hits.push(m);
            if (hits.length >= 50) break;
        }
        $('pg-markets').replaceChildren(...hits.map((m) => h('option', { value: m.ticker, label: m.title || m.ticker })));
    }
    function marketInfo() {
        const t = value('pg-market');
        const m = markets && markets.find((x) => x.ticker === t);
        $('pg-market-range').hidden = !(m && m.first_data_at);
        $('pg-market-info').textContent = m ? `${m.title || m.ticker} \u2014 ${m.status}` +
            (m.first_data_at ? `; data from ${D.utc(m.first_data_at)} to ${m.last_data_at ? D.utc(m.last_data_at) : 'now'}` : '; no data yet') : '';
    }
    async function loadMarkets() {
        const key = chosenKey();
        if (!key) return KB.showError('Choose or paste an API key first: the market list is a metered call.');
        await KB.busy($('pg-markets-load'), async () => {
            $('pg-market-info').textContent = 'Loading markets...';
            const r = await call('GET', '/markets', null, key);
            if (!r.ok) {
                $('pg-market-info').textContent = '';
                throw new KB.ApiError(r.status, r.data && r.data.error ? r.data.error.code : 'http_' + r.status, r.data && r.data.error ? r.data.error.message : '', r.data && r.data.request_id, r.headers);
            }
            markets = r.data.data;
            sessionStorage.setItem('kb_markets', JSON.stringify(markets));
            fillMarkets(value('pg-market'));
            $('pg-market-info').textContent = `${D.credits(markets.length)} markets loaded (${creditsText(Number(r.headers.get('X-Credits-Cost')))} charged). Type to search by ticker or title.`;
            $('pg-markets-load').textContent = 'Reload the market list (' + creditsText(cost('/markets', 'GET')) + ')';
            $('pg-market').focus();
        });
    }
    function useRange() {
        const m = markets && markets.find((x) => x.ticker === value('pg-market'));
        if (!m || !m.first_data_at) return;
        const lastAt = m.last_data_at || m.first_data_at;
        $('pg-start').value = D.isoToInput(m.first_data_at);
        $('pg-end').value = D.isoToInput(lastAt);
        $('pg-ts').value = D.isoToInput(lastAt);
        renderCode();
    }

    // ---- view --------------------------------------------------------------------------------------------
    async function load() {
        renderKeyChoice();
        if (loaded) { renderCode(); return; }
        try {
            spec = await KB.staticJson('/openapi.json');
        } catch (e) {
            KB.showError('Could not load the API description (/openapi.json): ' + KB.readable(e));
            return;
        }
        offered = ENDPOINTS.filter((e) => spec.paths[e.path] && spec.paths[e.path][e.method.toLowerCase()]).map((e) => {
            const op = spec.paths[e.path][e.method.toLowerCase()];
            return Object.assign({ cost: typeof op['x-credits'] === 'number' ? op['x-credits'] : null, summary: op.summary || e.path }, e);
        });
        $('pg-endpoint').replaceChildren(...offered.map((e) => h('option', { value: e.id, text: `${e.method} ${e.path} \u2014 ${creditsText(e.cost)}` })));
        $('pg-markets-cost').textContent = creditsText(cost('/markets', 'GET'));
        $('pg-base-cost').textContent = '+' + creditsText(cost('/orderbook', 'POST'));
        $('pg-gaps-cost').textContent = '+' + creditsText(cost('/markets/{ticker}/coverage', 'GET'));
        try { markets = JSON.parse(sessionStorage.getItem('kb_markets') || 'null'); } catch (_) { markets = null; }
        if (markets) fillMarkets('');
        // Sensible times: the last full UTC hour, and the day before it.
        const now = new Date(Math.floor(Date.now() / 3600000) * 3600000).toISOString().replace('.000Z', '+00:00');
        if (!$('pg-ts').value) $('pg-ts').value = D.isoToInput(now);
        if (!$('pg-end').value) $('pg-end').value = D.isoToInput(now);
        if (!$('pg-start').value) $('pg-start').value = D.isoToInput(new Date(Date.parse(now) - 86400000).toISOString().replace('.000Z', '+00:00'));
        loaded = true;
        showFields();
    }
    function reset() {
        pastedKey = '';
        $('pg-paste').value = '';
        $('pg-result').hidden = true;
        $('pg-json').textContent = '';
        $('pg-draw').replaceChildren();
        last = null;
    }

    document.addEventListener('DOMContentLoaded', () => {
        $('pg-endpoint').addEventListener('change', showFields);
        $('pg-form').addEventListener('input', (ev) => {
            if (ev.target.id === 'pg-market') { fillMarkets(value('pg-market')); marketInfo(); }
            renderCode();
        });
        $('pg-form').addEventListener('change', (ev) => { if (ev.target.id === 'pg-market') marketInfo(); renderCode(); });
        $('pg-form').addEventListener('submit', send);
        $('pg-key').addEventListener('change', () => { $('pg-paste-wrap').hidden = $('pg-key').value !== 'paste'; if ($('pg-key').value === 'paste') $('pg-paste').focus(); });
        $('pg-markets-load').addEventListener('click', loadMarkets);
        $('pg-market-range').addEventListener('click', useRange);
        for (const b of document.querySelectorAll('[data-lang]')) {
            b.addEventListener('click', () => {
                lang = b.dataset.lang;
                for (const x of document.querySelectorAll('[data-lang]')) x.setAttribute('aria-pressed', String(x === b));
                renderCode();
            });
        }
        $('pg-code-copy').addEventListener('click', (ev) => KB.copyText($('pg-code').textContent, ev.currentTarget, 'Copy code'));
        $('pg-json-copy').addEventListener('click', (ev) => KB.copyText(lastJson, ev.currentTarget, 'Copy JSON'));
    });

    KB.views.playground = { load, reset };
    KB.playgroundCode = code;
})();
