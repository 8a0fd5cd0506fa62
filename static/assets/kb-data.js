// kb-data.js - the dashboard's arithmetic, with no DOM: exact prices and quantities, order
// book depth and replay, usage aggregation, UTC times and human formats. Loaded by the page
// (window.KBData) and by node for the unit tests (module.exports).
// Invariants: prices and quantities are never floating point: a price is an integer count
// of 1/100 cent (so "0.4250" dollars = 4250, 42 cents = 4200, 5.5 cents = 550) and a
// quantity an integer count of 1/100 contract ("150.00" = 15000); the exact strings
// (price_dollars, quantity_fp, delta_fp, ...) win over the numbers when both are present.
// Timestamps are compared as strings normalised to microseconds, never through Date.
'use strict';
(function (root) {
    const PRICE_MAX = 10000;            // 100 cents in 1/100 cent units

    // "12.25" / "-30.00" / "5" -> integer count of 10^-scale units, or null. Exact.
    function scaled(text, scale) {
        const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(String(text).trim());
        if (!m) return null;
        const frac = (m[3] || '').replace(/0+$/, '');
        if (frac.length > scale) return null;
        const v = Number(m[2]) * 10 ** scale + Number((frac + '0'.repeat(scale)).slice(0, scale) || 0);
        if (!Number.isSafeInteger(v)) return null;
        return m[1] ? -v : v;
    }
    // A JSON number (42, 5.5, -30) -> scaled integer through its decimal text, or null.
    function numScaled(n, scale) {
        if (typeof n !== 'number' || !Number.isFinite(n)) return null;
        const t = String(n);
        return /e/i.test(t) ? null : scaled(t, scale);
    }
    function pick(strValue, strScale, numValue, numScale, factor) {
        if (typeof strValue === 'string') { const v = scaled(strValue, strScale); if (v !== null) return v; }
        const v = numScaled(numValue, numScale);
        return v === null ? null : v * factor;
    }
    // price_dollars has 4 decimals (1/100 cent); a cents number gets 2 (1/100 cent).
    const priceOf = (o, centsField) => pick(o.price_dollars, 4, o[centsField || 'price'], 2, 1);
    const qtyOf = (o, field, fpField) => pick(o[fpField || 'quantity_fp'], 2, o[field || 'quantity'], 2, 1);

    // ---- formats -----------------------------------------------------------------------
    function group(intText) { return intText.replace(/\B(?=(\d{3})+(?!\d))/g, ','); }
    // Integer count of 10^-scale units -> "1,234.5" (trailing zeros dropped).
    function fixed(v, scale, keep) {
        const neg = v < 0, a = Math.abs(v), d = 10 ** scale;
        let frac = String(a % d).padStart(scale, '0');
        if (!keep) frac = frac.replace(/0+$/, '');
        return (neg ? '-' : '') + group(String(Math.floor(a / d))) + (frac ? '.' + frac : '');
    }
    const cents = (p) => fixed(p, 2) + '\u00a2';                         // 4250 -> "42.5¢"
    const qty = (q) => fixed(q, 2);                                       // 15000 -> "150"
    const credits = (n) => (Number.isSafeInteger(n) ? (n < 0 ? '-' : '') + group(String(Math.abs(n))) : String(n));
    // "12" / "0.125" -> "$12" / "$0.125"; never through floating point.
    function dollars(text) {
        const m = /^(\d+)(?:\.(\d+))?$/.exec(String(text));
        if (!m) return String(text);
        return '$' + group(m[1]) + (m[2] ? '.' + m[2] : '');
    }

    // ---- time (UTC) ----------------------------------------------------------------------
    // "2026-01-15T11:30:00.5+00:00" / "...Z" / offset-less -> "2026-01-15T11:30:00.500000", or null.
    function tsKey(s) {
        const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d)?)(?:\.(\d{1,6}))?(Z|[+-]00:?00)?$/.exec(String(s || ''));
        if (!m) return null;
        const base = m[1].length === 16 ? m[1] + ':00' : m[1];
        return base + '.' + (m[2] || '').padEnd(6, '0');
    }
    const tsMs = (s) => { const k = tsKey(s); return k ? Date.parse(k.slice(0, 23) + 'Z') : NaN; };
    // value of <input type="datetime-local"> (read as UTC) -> "2026-01-15T11:30:00+00:00".
    function inputToIso(v) {
        const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d)(?::(\d\d)(?:\.\d+)?)?$/.exec(String(v || ''));
        return m ? `${m[1]}:${m[2] || '00'}+00:00` : null;
    }
    // A timestamp -> the value for a datetime-local input (UTC, seconds kept).
    function isoToInput(s) { const k = tsKey(s); return k ? k.slice(0, 19) : ''; }
    const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
    // "2026-01-15T11:30:05+00:00" -> "Jan 15, 2026, 11:30:05 UTC" (seconds only when not 0).
    function utc(s, withSeconds) {
        const k = tsKey(s);
        if (!k) return s ? String(s) : 'never';
        const sec = k.slice(17, 19), frac = k.slice(20).replace(/0+$/, '');
        let t = k.slice(11, 16);
        if (withSeconds || sec !== '00' || frac) t += ':' + sec + (withSeconds && frac ? '.' + frac : '');
        return `${MONTHS[Number(k.slice(5, 7)) - 1]} ${Number(k.slice(8, 10))}, ${k.slice(0, 4)}, ${t} UTC`;
    }
    // "2026-01-15" -> "Jan 15, 2026".
    function day(d) {
        const m = /^(\d{4})-(\d\d)-(\d\d)/.exec(String(d || ''));
        return m ? `${MONTHS[Number(m[2]) - 1]} ${Number(m[3])}, ${m[1]}` : String(d);
    }
    const dayShort = (d) => { const m = /^\d{4}-(\d\d)-(\d\d)/.exec(d); return m ? `${MONTHS[Number(m[1]) - 1]} ${Number(m[2])}` : d; };
    // UTC calendar date arithmetic on "YYYY-MM-DD".
    function addDays(d, n) {
        const t = Date.UTC(Number(d.slice(0, 4)), Number(d.slice(5, 7)) - 1, Number(d.slice(8, 10))) + n * 86400000;
        return new Date(t).toISOString().slice(0, 10);
    }
    function daysBetween(a, b) {
        const t = (d) => Date.UTC(Number(d.slice(0, 4)), Number(d.slice(5, 7)) - 1, Number(d.slice(8, 10)));
        return Math.round((t(b) - t(a)) / 86400000);
    }
    // The first day of the month after the one that holds `d` ("YYYY-MM-DD...").
    function nextMonthStart(d) {
        const y = Number(d.slice(0, 4)), m = Number(d.slice(5, 7));
        return m === 12 ? `${y + 1}-01-01` : `${y}-${String(m + 1).padStart(2, '0')}-01`;
    }
    const today = () => new Date().toISOString().slice(0, 10);

    // ---- order book ------------------------------------------------------------------------
    // An /orderbook answer -> {yes:[{price, qty, raw}], no:[...]} in the answer's order, exact.
    function levels(book) {
        const side = (arr) => (Array.isArray(arr) ? arr : []).map((l) => ({ price: priceOf(l), qty: qtyOf(l), raw: l }))
            .filter((l) => l.price !== null && l.qty !== null);
        return { yes: side(book.yes), no: side(book.no) };
    }
    // Depth series on the YES price axis: YES bids from the best (highest) down with their
    // cumulative quantity; NO bids at q are YES asks at 100c - q, from the best (lowest) up.
    function depth(lv) {
        const bids = lv.yes.slice().sort((a, b) => b.price - a.price);
        const asks = lv.no.map((l) => Object.assign({}, l, { x: PRICE_MAX - l.price })).sort((a, b) => a.x - b.x);
        let c = 0;
        const yes = bids.map((l) => (c += l.qty, Object.assign({ x: l.price, cum: c }, l)));
        c = 0;
        const no = asks.map((l) => (c += l.qty, Object.assign({ cum: c }, l)));
        return { yes, no, maxCum: Math.max(yes.length ? yes[yes.length - 1].cum : 0, no.length ? no[no.length - 1].cum : 0) };
    }

    // A book as two Maps price -> qty (exact units), from an /orderbook answer.
    function bookMaps(book) {
        const lv = levels(book);
        const m = (arr) => new Map(arr.map((l) => [l.price, l.qty]));
        return { yes: m(lv.yes), no: m(lv.no) };
    }
    function cloneBook(b) { return { yes: new Map(b.yes), no: new Map(b.no) }; }
    // API.md 5.6 step 5: q = book[price] + delta; q <= 0 removes the level.
    function applyDelta(b, d) {
        const side = d.side === 'yes' ? b.yes : b.no;
        const p = priceOf(d, 'price_cents'), a = qtyOf(d, 'delta_amount', 'delta_fp');
        if (p === null || a === null) return false;
        const q = (side.get(p) || 0) + a;
        if (q <= 0) side.delete(p); else side.set(p, q);
        return true;
    }
    // Replay: step 0 is the base book; step i the book after deltas[0..i-1]. Deltas at or
    // before `after` (the base book's timestamp) are already in it and are skipped.
    function replay(base, deltas, after) {
        const afterKey = after ? tsKey(after) : null;
        const steps = deltas.filter((d) => !afterKey || tsKey(d.ts) > afterKey);
        const every = 64, checkpoints = [cloneBook(base)];
        let cur = cloneBook(base);
        steps.forEach((d, i) => { applyDelta(cur, d); if ((i + 1) % every === 0) checkpoints.push(cloneBook(cur)); });
        return {
            steps,
            skipped: deltas.length - steps.length,
            at(i) {
                const n = Math.max(0, Math.min(i, steps.length));
                const b = cloneBook(checkpoints[Math.floor(n / every)]);
                for (let k = Math.floor(n / every) * every; k < n; k++) applyDelta(b, steps[k]);
                return b;
            },
        };
    }
    // Maps -> the level lists `levels()` gives, price descending.
    function mapsToLevels(b) {
        const side = (m) => [...m.entries()].sort((x, y) => y[0] - x[0]).map(([price, q]) => ({ price, qty: q, raw: null }));
        return { yes: side(b.yes), no: side(b.no) };
    }

    // ---- candles -------------------------------------------------------------------------------
    function candle(c) {
        const f = (k) => pick(c[k + '_dollars'], 4, c[k], 2, 1);
        return { bucket: c.bucket, open: f('open'), high: f('high'), low: f('low'), close: f('close'),
            volume: pick(c.volume_fp, 2, c.volume, 2, 1), trades: c.trade_count, raw: c };
    }

    // ---- usage ---------------------------------------------------------------------------------
    // `days` of GET /keys/usage (usage_contract.md) over [start, end] -> per day, per endpoint
    // and per key totals; every day of the range is present, days without use hold 0.
    function usageByDay(days, start, end) {
        const out = [], byDate = new Map(), endpoints = new Map(), keys = new Map();
        const n = daysBetween(start, end);
        for (let i = 0; i <= n; i++) { const d = addDays(start, i); const row = { date: d, total: 0, requests: 0, parts: new Map() }; out.push(row); byDate.set(d, row); }
        for (const x of days || []) {
            const row = byDate.get(x.date);
            if (!row) continue;
            row.total += x.credits_used; row.requests += x.requests;
            row.parts.set(x.endpoint, (row.parts.get(x.endpoint) || 0) + x.credits_used);
            endpoints.set(x.endpoint, (endpoints.get(x.endpoint) || 0) + x.credits_used);
            keys.set(x.key_id, (keys.get(x.key_id) || 0) + x.credits_used);
        }
        const sorted = (m) => [...m.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
        return { days: out, endpoints: sorted(endpoints), keys: sorted(keys), total: out.reduce((s, r) => s + r.total, 0) };
    }

    // Gaps ({start, end|null, reason}) that overlap [from, to] (timestamps), clipped.
    function gapsIn(gaps, from, to) {
        const a = tsKey(from), b = tsKey(to);
        return (gaps || []).filter((g) => tsKey(g.start) && tsKey(g.start) <= b && (!g.end || tsKey(g.end) >= a))
            .map((g) => ({ start: tsKey(g.start) < a ? from : g.start, end: !g.end || tsKey(g.end) > b ? to : g.end, open: !g.end, raw: g }));
    }

    // Round axis ticks from 0 to the first one at or above max (integers), about n of them.
    function ticks(max, n) {
        if (!(max > 0)) return [0, 1];
        const raw = Math.max(1, max / n), mag = 10 ** Math.floor(Math.log10(raw));
        const step = [1, 2, 5, 10].map((s) => s * mag).find((s) => s >= raw) || 10 * mag;
        const out = [];
        for (let v = 0; ; v += step) { out.push(Math.round(v)); if (v >= max) break; }
        return out;
    }

    const api = { PRICE_MAX, scaled, numScaled, priceOf, qtyOf, fixed, cents, qty, credits, dollars, group,
        tsKey, tsMs, inputToIso, isoToInput, utc, day, dayShort, addDays, daysBetween, nextMonthStart, today,
        levels, depth, bookMaps, applyDelta, replay, mapsToLevels, candle, usageByDay, gapsIn, ticks };
    if (typeof module !== 'undefined' && module.exports) module.exports = api;
    else root.KBData = api;
})(typeof window !== 'undefined' ? window : globalThis);
