// helpers.js - what the browser tests share: a tiny TAP-like runner, watching a page for
// console errors / CSP violations / foreign requests, screenshots, the axe-core audit (run
// offline from node_modules), the keyboard reachability check and the 360 px overflow check.
// Invariants: every check fails loudly (no skips); the axe source is evaluated through the
// DevTools protocol, so the page's CSP stays exactly as nginx sends it.
'use strict';
const fs = require('fs');
const path = require('path');
const L = require('../docs/lib');

const OUT = process.env.KB_TEST_OUTPUT_DIR || path.join(L.ROOT, 'build', 'test-logs', 'browser');
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const counts = { passed: 0, failed: 0 };
const notes = [];
async function test(name, fn) {
    try {
        await fn();
        counts.passed++;
        console.log(`ok - ${name}`);
        return true;
    } catch (e) {
        counts.failed++;
        console.log(`not ok - ${name}\n    ${String(e && e.message || e).split('\n').slice(0, 14).join('\n    ')}`);
        return false;
    }
}
function assert(c, m) { if (!c) throw new Error(m); }
function eq(a, b, what) { assert(JSON.stringify(a) === JSON.stringify(b), `${what}: got ${JSON.stringify(a)}, want ${JSON.stringify(b)}`); }

// Collect CSP violations, page errors, console errors and requests off the page's origin
// (a navigation, e.g. to Stripe's checkout, is not a request of the page). allow4xx: console
// lines Chromium writes for 4xx answers the test provoked on purpose.
async function watch(page, base, { allow4xx = false } = {}) {
    const problems = [];
    await page.addInitScript(() => {
        document.addEventListener('securitypolicyviolation', (e) => {
            console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI}`);
        });
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
        // Pages of other origins (the Stripe stand-in's checkout) are not ours to judge.
        if (m.type() !== 'error' || !page.url().startsWith(base)) return;
        if (allow4xx && /the server responded with a status of 4\d\d/.test(m.text())) return;
        problems.push(`console error: ${m.text()} (${page.url()})`);
    });
    page.on('request', (r) => {
        const u = r.url();
        if (/^(data|blob|about):/.test(u) || u.startsWith(base)) return;
        let fromUs = false;
        try { fromUs = r.frame().url().startsWith(base); } catch (_) { fromUs = false; }
        if (fromUs && !r.isNavigationRequest()) problems.push(`request to another origin from ${r.frame().url()}: ${u}`);
    });
    return problems;
}

async function shot(page, name, fullPage = true, timeout = 30000) {
    fs.mkdirSync(OUT, { recursive: true });
    await page.screenshot({ path: path.join(OUT, `${name}.png`), fullPage, timeout });
}

// axe-core on the page as it is now: serious and critical findings fail; the others are
// returned for the log.
// known: rule ids of third-party markup that are logged as notes instead of failing.
async function axe(page, what, known = []) {
    if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(AXE);
    const r = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
    for (const v of r.violations.filter((x) => known.includes(x.id)))
        notes.push(`axe on ${what}: known third-party finding ${v.id} [${v.impact}] on ${v.nodes.length} element(s)`);
    const bad = r.violations.filter((v) => (v.impact === 'serious' || v.impact === 'critical') && !known.includes(v.id));
    const minor = r.violations.filter((v) => !bad.includes(v) && !known.includes(v.id)).map((v) => `${v.id} (${v.impact}, ${v.nodes.length})`);
    if (minor.length) notes.push(`axe on ${what}: minor findings ${minor.join(', ')}`);
    assert(!bad.length, `axe on ${what}: ` + bad.map((v) => `${v.id} [${v.impact}] ${v.help}: ` +
        v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')).join('\n'));
    return r.violations.length;
}

// Tab through the page from the top: every visible, enabled control must receive focus.
async function tabReachesAll(page, what) {
    const want = await page.evaluate(() => {
        const sel = 'a[href], button, input, select, textarea, summary, [tabindex]';
        let n = 0;
        const out = [];
        for (const e of document.querySelectorAll(sel)) {
            if (e.disabled || e.tabIndex < 0 || e.closest('[hidden], dialog:not([open])') || e.type === 'hidden') continue;
            const r = e.getBoundingClientRect();
            if (!r.width || !r.height || getComputedStyle(e).visibility === 'hidden') continue;
            const d = e.closest('details');
            if (d && !d.open && e.tagName !== 'SUMMARY' && !e.closest('summary')) continue;
            e.dataset.kbTab = String(++n);
            out.push(e.id || e.textContent.trim().slice(0, 30) || e.tagName);
        }
        return out;
    });
    await page.evaluate(() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); });
    await page.focus('body').catch(() => {});
    const seen = new Set();
    for (let i = 0; i < want.length + 25 && seen.size < want.length; i++) {
        await page.keyboard.press('Tab');
        const t = await page.evaluate(() => (document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.kbTab : undefined));
        if (t) seen.add(Number(t));
    }
    const missed = want.filter((_, i) => !seen.has(i + 1));
    assert(!missed.length, `${what}: Tab never reached ${missed.join(', ')}`);
    return want.length;
}

// Focus an element and press a key (the action itself comes from the keyboard).
async function press(page, selector, key = 'Enter') {
    await page.focus(selector);
    await page.keyboard.press(key);
}

async function noOverflow(page, what) {
    const o = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert(o <= 0, `${what}: ${o}px of horizontal overflow`);
}

module.exports = { OUT, counts, notes, test, assert, eq, watch, shot, axe, tabReachesAll, press, noOverflow };
