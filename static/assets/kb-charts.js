// kb-charts.js - the dashboard's charts, hand-drawn SVG (window.KBCharts): credits by day
// stacked by endpoint, horizontal totals, the order book's cumulative depth, candles, and a
// time strip with a cursor. Time axes shade the market's coverage gaps when given.
// Invariants: values arrive exact (integers from KBData); only pixel positions are
// fractional. Every chart is one <svg role="img"> named by its <title>/<desc>; colours come
// from CSS classes (the CSP allows no inline style); every drawn datum is an element with a
// class and data-* attributes, so tests count what was drawn. Charts redraw at the width of
// their host when the window is resized.
'use strict';
(function () {
    const D = window.KBData;
    const NS = 'http://www.w3.org/2000/svg';
    let uid = 0;

    function el(tag, attrs, ...kids) {
        const e = document.createElementNS(NS, tag);
        for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
        for (const k of kids) if (k !== null && k !== undefined) e.append(typeof k === 'string' ? document.createTextNode(k) : k);
        return e;
    }
    const tip = (text) => el('title', {}, text);

    function frame(host, height, title, desc) {
        const width = Math.max(280, Math.floor(host.clientWidth || 600));
        const id = 'kbc' + (++uid);
        const svg = el('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', class: 'chart',
            'aria-labelledby': `${id}t ${id}d` },
        el('title', { id: id + 't' }, title), el('desc', { id: id + 'd' }, desc || ''));
        host.replaceChildren(svg);
        return { svg, width, height };
    }
    // Remember how to draw a host again at its new width.
    const drawn = new Set();
    function keep(host, fn) { host.kbRedraw = fn; drawn.add(host); fn(); }
    let pending = false;
    window.addEventListener('resize', () => {
        if (pending) return;
        pending = true;
        requestAnimationFrame(() => {
            pending = false;
            for (const h of drawn) {
                if (!h.isConnected) { drawn.delete(h); continue; }
                if (h.offsetParent !== null) h.kbRedraw();
            }
        });
    });

    function yAxis(g, ticksList, y, x0, x1, fmt) {
        for (const t of ticksList) {
            g.append(el('line', { x1: x0, x2: x1, y1: y(t), y2: y(t), class: 'grid' }));
            g.append(el('text', { x: x0 - 6, y: y(t) + 4, class: 'tick', 'text-anchor': 'end' }, fmt(t)));
        }
    }

    // Time ticks for [a, b] ms: about n of them on round UTC boundaries.
    function timeTicks(a, b, n) {
        const span = b - a, M = 60000, H = 3600000, DAY = 86400000;
        const steps = [M, 5 * M, 15 * M, 30 * M, H, 3 * H, 6 * H, 12 * H, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY];
        const step = steps.find((s) => span / s <= n) || 30 * DAY;
        const out = [];
        for (let t = Math.ceil(a / step) * step; t <= b; t += step) out.push(t);
        const label = (t) => {
            const iso = new Date(t).toISOString();
            if (step >= DAY) return D.dayShort(iso);
            if (span > DAY) return `${D.dayShort(iso)} ${iso.slice(11, 16)}`;
            return iso.slice(11, 16);
        };
        return out.map((t) => [t, label(t)]);
    }
    function timeAxis(g, a, b, x, y0, n) {
        const x0 = x(a), x1 = x(b);
        for (const [t, text] of timeTicks(a, b, n)) {
            g.append(el('line', { x1: x(t), x2: x(t), y1: y0, y2: y0 + 4, class: 'axis' }));
            g.append(el('text', { x: x(t), y: y0 + 16, class: 'tick', 'text-anchor': anchor(x(t), x0, x1) }, text));
        }
    }
    // Labels at the ends of an axis stay inside the chart.
    function anchor(px, x0, x1) { return px - x0 < 18 ? 'start' : x1 - px < 18 ? 'end' : 'middle'; }
    // Price ticks (1/100 cent units) on round cent values within [lo, hi].
    function priceTicks(lo, hi, n) {
        const span = hi - lo, raw = span / Math.max(1, n);
        const step = [10, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000].find((s) => s >= raw) || 5000;
        const out = [];
        for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) out.push(v);
        return out;
    }
    // Shade coverage gaps ({start, end, open, raw}) between y0 and y1.
    function gapBands(g, gaps, x, y0, y1) {
        for (const gp of gaps || []) {
            const xa = x(D.tsMs(gp.start)), xb = Math.max(xa + 2, x(D.tsMs(gp.end)));
            g.append(el('rect', { x: xa, y: y0, width: xb - xa, height: y1 - y0, class: 'gap',
                'data-start': gp.raw.start, 'data-end': gp.raw.end || '' },
            tip(`Coverage gap: ${D.utc(gp.raw.start)} to ${gp.raw.end ? D.utc(gp.raw.end) : 'now (still open)'}` +
                (gp.raw.reason ? ` (${gp.raw.reason})` : ''))));
        }
    }

    // Credits by day, each bar stacked by endpoint. rows: [{date, total, parts: Map}],
    // series: endpoint names in legend order.
    function stackedBars(host, o) {
        keep(host, () => {
            const { svg, width, height } = frame(host, 260, o.title, o.desc);
            const L = 52, R = 12, T = 14, B = 34;
            const max = Math.max(0, ...o.rows.map((r) => r.total));
            const tk = D.ticks(max, 4), top = tk[tk.length - 1];
            const y = (v) => T + (height - T - B) * (1 - v / top);
            const g = el('g');
            svg.append(g);
            yAxis(g, tk, y, L, width - R, D.credits);
            const n = o.rows.length, slot = (width - L - R) / Math.max(1, n), bw = Math.max(2, Math.min(40, slot * 0.7));
            const every = Math.ceil(n / Math.max(1, Math.floor((width - L - R) / 56)));
            o.rows.forEach((r, i) => {
                const cx = L + slot * (i + 0.5);
                let acc = 0;
                const bar = el('g', { class: 'bar', 'data-date': r.date, 'data-credits': r.total });
                o.series.forEach((name, si) => {
                    const v = r.parts.get(name) || 0;
                    if (!v) return;
                    bar.append(el('rect', { x: cx - bw / 2, y: y(acc + v), width: bw, height: Math.max(1, y(acc) - y(acc + v)),
                        class: `seg s${si % 8}`, 'data-endpoint': name, 'data-credits': v },
                    tip(`${D.day(r.date)}: ${name} ${D.credits(v)} credits`)));
                    acc += v;
                });
                if (r.total > 0 && bw >= 14) bar.append(el('text', { x: cx, y: y(r.total) - 4, class: 'val', 'text-anchor': 'middle' }, D.credits(r.total)));
                g.append(bar);
                if (i % every === 0) g.append(el('text', { x: cx, y: height - B + 16, class: 'tick', 'text-anchor': 'middle' }, D.dayShort(r.date)));
            });
            g.append(el('line', { x1: L, x2: width - R, y1: y(0), y2: y(0), class: 'axis' }));
        });
    }

    // Horizontal bars: rows [[label, value]] (value an integer), fmt formats a value; colours
    // (optional) gives each row's series class, colour one class for all.
    function hBars(host, o) {
        keep(host, () => {
            const rowH = 28;
            const { svg, width } = frame(host, Math.max(1, o.rows.length) * rowH + 8, o.title, o.desc);
            const L = Math.min(200, width * 0.45, Math.max(90, ...o.rows.map((r) => 6.6 * String(r[0]).length + 10)));
            const max = Math.max(1, ...o.rows.map((r) => r[1]));
            const fmt = o.fmt || D.credits, valW = 70;
            o.rows.forEach(([label, v], i) => {
                const y0 = 4 + i * rowH, w = (width - L - valW) * v / max;
                const g = el('g', { class: 'hbar', 'data-label': label, 'data-value': v });
                g.append(el('text', { x: L - 8, y: y0 + 17, class: 'tick', 'text-anchor': 'end' }, String(label)));
                const colour = o.colours ? o.colours[i] : (o.colour || 0);
                g.append(el('rect', { x: L, y: y0 + 4, width: Math.max(v ? 2 : 0, w), height: rowH - 10, class: `seg s${colour % 8}` }));
                g.append(el('text', { x: L + w + 6, y: y0 + 17, class: 'val' }, fmt(v)));
                svg.append(g);
            });
        });
    }

    // Cumulative depth on the YES price axis (KBData.depth output). YES bids step down to the
    // left of the best bid; NO bids, as YES asks at 100c - price, step up to the right.
    function depth(host, o) {
        keep(host, () => {
            const { svg, width, height } = frame(host, 300, o.title, o.desc);
            const dp = o.depth, L = 64, R = 14, T = 14, B = 40;
            const xs = dp.yes.map((l) => l.x).concat(dp.no.map((l) => l.x));
            let lo = xs.length ? Math.min(...xs) : 0, hi = xs.length ? Math.max(...xs) : D.PRICE_MAX;
            const pad = Math.max(100, Math.round((hi - lo) * 0.08));
            lo = Math.max(0, lo - pad); hi = Math.min(D.PRICE_MAX, hi + pad);
            if (hi <= lo) { lo = 0; hi = D.PRICE_MAX; }
            const tk = D.ticks(dp.maxCum, 4), top = tk[tk.length - 1];
            const x = (p) => L + (width - L - R) * (p - lo) / (hi - lo);
            const y = (q) => T + (height - T - B) * (1 - q / top);
            const g = el('g');
            svg.append(g);
            yAxis(g, tk, y, L, width - R, D.qty);
            for (const v of priceTicks(lo, hi, Math.max(2, Math.floor((width - L - R) / 70))))
                g.append(el('text', { x: x(v), y: height - B + 16, class: 'tick', 'text-anchor': anchor(x(v), L, width - R) }, D.cents(v)));
            g.append(el('text', { x: L + (width - L - R) / 2, y: height - 6, class: 'label', 'text-anchor': 'middle' }, width < 480 ? 'YES price (NO bid = 100\u00a2 \u2212 ask)' : 'YES price (NO bids shown as YES asks at 100\u00a2 \u2212 price)'));
            g.append(el('line', { x1: L, x2: width - R, y1: y(0), y2: y(0), class: 'axis' }));
            const step = (pts, toLeft) => {
                if (!pts.length) return '';
                let d = `M${x(pts[0].x)},${y(0)}`;
                let prev = 0;
                for (const l of pts) { d += ` L${x(l.x)},${y(prev)} L${x(l.x)},${y(l.cum)}`; prev = l.cum; }
                d += ` L${toLeft ? L : width - R},${y(prev)} L${toLeft ? L : width - R},${y(0)} Z`;
                return d;
            };
            g.append(el('path', { d: step(dp.yes, true), class: 'area yes' }));
            g.append(el('path', { d: step(dp.no, false), class: 'area no' }));
            for (const l of dp.yes)
                g.append(el('circle', { cx: x(l.x), cy: y(l.cum), r: 4, class: 'level yes', 'data-side': 'yes', 'data-price': D.cents(l.price), 'data-qty': D.qty(l.qty) },
                    tip(`YES bid ${D.cents(l.price)} \u00d7 ${D.qty(l.qty)} (cumulative ${D.qty(l.cum)})`)));
            for (const l of dp.no)
                g.append(el('circle', { cx: x(l.x), cy: y(l.cum), r: 4, class: 'level no', 'data-side': 'no', 'data-price': D.cents(l.price), 'data-qty': D.qty(l.qty) },
                    tip(`NO bid ${D.cents(l.price)} (YES ask ${D.cents(l.x)}) \u00d7 ${D.qty(l.qty)} (cumulative ${D.qty(l.cum)})`)));
        });
    }

    // Candles: [{bucket, open, high, low, close, volume}] (KBData.candle output) over the
    // request's [from, to] (timestamps); width of a candle from the interval (ms).
    function candles(host, o) {
        keep(host, () => {
            const { svg, width, height } = frame(host, 320, o.title, o.desc);
            const L = 56, R = 14, T = 14, B = 40, volH = 50;
            const a = D.tsMs(o.from), b = D.tsMs(o.to);
            const x = (t) => L + (width - L - R) * (t - a) / Math.max(1, b - a);
            const ps = o.candles.flatMap((c) => [c.high, c.low]).filter((v) => v !== null);
            let lo = ps.length ? Math.min(...ps) : 0, hi = ps.length ? Math.max(...ps) : D.PRICE_MAX;
            const pad = Math.max(100, Math.round((hi - lo) * 0.1));
            lo = Math.max(0, lo - pad); hi = Math.min(D.PRICE_MAX, hi + pad);
            const pT = T, pB = height - B - volH - 8;
            const y = (p) => pT + (pB - pT) * (1 - (p - lo) / Math.max(1, hi - lo));
            const g = el('g');
            svg.append(g);
            gapBands(g, o.gaps, x, T, height - B);
            for (const v of priceTicks(lo, hi, 4)) {
                g.append(el('line', { x1: L, x2: width - R, y1: y(v), y2: y(v), class: 'grid' }));
                g.append(el('text', { x: L - 6, y: y(v) + 4, class: 'tick', 'text-anchor': 'end' }, D.cents(v)));
            }
            const vmax = Math.max(1, ...o.candles.map((c) => c.volume || 0));
            const slotW = (width - L - R) * o.intervalMs / Math.max(1, b - a), bw = Math.max(1, Math.min(24, slotW * 0.7));
            for (const c of o.candles) {
                const t = D.tsMs(c.bucket), cx = x(t + o.intervalMs / 2);
                const up = c.close >= c.open;
                const grp = el('g', { class: `candle ${up ? 'up' : 'down'}`, 'data-bucket': c.bucket },
                    tip(`${D.utc(c.bucket)}: open ${D.cents(c.open)}, high ${D.cents(c.high)}, low ${D.cents(c.low)}, close ${D.cents(c.close)}, volume ${D.qty(c.volume)}, ${D.credits(c.trades)} trades`));
                grp.append(el('line', { x1: cx, x2: cx, y1: y(c.high), y2: y(c.low), class: 'wick' }));
                const top = y(Math.max(c.open, c.close)), bot = y(Math.min(c.open, c.close));
                grp.append(el('rect', { x: cx - bw / 2, y: top, width: bw, height: Math.max(1.5, bot - top), class: 'body' }));
                const vh = volH * (c.volume || 0) / vmax;
                grp.append(el('rect', { x: cx - bw / 2, y: height - B - vh, width: bw, height: vh, class: 'vol' }));
                g.append(grp);
            }
            g.append(el('line', { x1: L, x2: width - R, y1: height - B, y2: height - B, class: 'axis' }));
            timeAxis(g, a, b, x, height - B, Math.max(2, Math.floor((width - L - R) / 90)));
            g.append(el('text', { x: L + (width - L - R) / 2, y: height - 4, class: 'label', 'text-anchor': 'middle' }, 'Time (UTC)'));
        });
    }

    // A time strip over [from, to]: one tick per mark (ms), gaps shaded, a cursor at `cursor`.
    function timeline(host, o) {
        keep(host, () => {
            const { svg, width, height } = frame(host, 64, o.title, o.desc);
            const L = 14, R = 14, a = D.tsMs(o.from), b = D.tsMs(o.to);
            const x = (t) => L + (width - L - R) * (t - a) / Math.max(1, b - a);
            const g = el('g');
            svg.append(g);
            gapBands(g, o.gaps, x, 4, 34);
            g.append(el('line', { x1: L, x2: width - R, y1: 34, y2: 34, class: 'axis' }));
            for (const t of o.marks) g.append(el('line', { x1: x(t), x2: x(t), y1: 14, y2: 34, class: 'mark' }));
            if (o.cursor !== null && o.cursor !== undefined)
                g.append(el('line', { x1: x(o.cursor), x2: x(o.cursor), y1: 4, y2: 38, class: 'cursor' }));
            timeAxis(g, a, b, x, 34, Math.max(2, Math.floor((width - L - R) / 90)));
        });
    }

    window.KBCharts = { stackedBars, hBars, depth, candles, timeline, timeTicks };
})();
