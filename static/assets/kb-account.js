// kb-account.js - the Overview, API keys and Plans-and-billing views of the dashboard.
// Overview: tier, credits this cycle, cycle dates, rate limit, and credits by day / endpoint /
// key from GET /keys/usage?start_date=&end_date= (the `days` array); a server without `days`
// gets the cycle totals per key. Keys: create (shown once, remembered by this tab for the
// playground), rename, revoke after a confirmation, usage and last use. Billing: the plans
// from /plans.json (the one source of prices and limits), Checkout, the states after it,
// Pay-As-You-Go with its cap, the customer portal.
// Invariants: plan figures come only from /plans.json; credits are integers.
'use strict';
(function () {
    const KB = window.KB, D = window.KBData, C = window.KBCharts, $ = KB.$, h = KB.h;
    let status = null;

    function planOf(p, tier) { return p.plans.find((x) => x.tier === tier) || null; }

    async function loadStatus() {
        status = await KB.api('GET', '/billing/status');
        return status;
    }

    // The cycle's last day: Free/PAYG reset on the 1st of the UTC month; Project with the
    // Stripe period (the API reports only the start, so about a month after it).
    function cycleEnd(s) {
        const start = s.billing_cycle_start.slice(0, 10);
        if (s.billing_cycle_end) return { text: D.utc(s.billing_cycle_end), day: s.billing_cycle_end.slice(0, 10) };
        if (s.tier === 'project') {
            const y = Number(start.slice(0, 4)), m = Number(start.slice(5, 7));
            const next = m === 12 ? `${y + 1}-01${start.slice(7)}` : `${y}-${String(m + 1).padStart(2, '0')}${start.slice(7)}`;
            return { text: `with the Stripe billing period (about ${D.day(next)})`, day: next };
        }
        const next = D.nextMonthStart(start);
        return { text: `${D.day(D.addDays(next, -1))} (credits reset ${D.day(next)}, 00:00 UTC)`, day: next };
    }

    // ---- overview ---------------------------------------------------------------------------
    let usageRange = null;
    function renderOverview(s, p) {
        const plan = planOf(p, s.tier);
        $('ov-tier').textContent = plan ? plan.name : s.tier;
        // A per-account limit, if the API ever reports one, wins over the plan's.
        const rpm = typeof s.requests_per_minute === 'number' ? s.requests_per_minute : plan && plan.requests_per_minute;
        $('ov-rate').textContent = rpm ? `${D.credits(rpm)} requests per minute` : 'unknown';
        $('ov-used').textContent = D.credits(s.credits_used);
        $('ov-total').textContent = D.credits(s.credits_total);
        $('ov-remaining').textContent = D.credits(s.credits_remaining);
        const pct = s.credits_total > 0 ? Math.min(100, (100 * s.credits_used) / s.credits_total) : 100;
        $('ov-fill').style.width = pct.toFixed(1) + '%';
        $('ov-fill').classList.toggle('full', s.credits_remaining === 0);
        $('ov-bar').setAttribute('aria-valuenow', String(Math.min(s.credits_used, s.credits_total)));
        $('ov-bar').setAttribute('aria-valuemax', String(s.credits_total));
        $('ov-bar').setAttribute('aria-valuetext', `${D.credits(s.credits_used)} of ${D.credits(s.credits_total)} credits used`);
        $('ov-start').textContent = D.utc(s.billing_cycle_start);
        $('ov-end').textContent = cycleEnd(s).text;
        $('ov-payg').textContent = s.payg_enabled ? 'On' : 'Off';
    }

    function setRange(kind) {
        const end = D.today();
        let start;
        if (kind === 'cycle' && status) start = status.billing_cycle_start.slice(0, 10);
        else start = D.addDays(end, -(Number(kind) - 1 || 29));
        $('usage-start').value = start;
        $('usage-end').value = end;
    }

    function usageTable(head, rows) {
        const t = $('usage-table');
        t.tHead.replaceChildren(h('tr', {}, ...head.map((x) => h('th', { scope: 'col', text: x }))));
        t.tBodies[0].replaceChildren(...rows.map((r) => h('tr', {}, ...r.map((x, i) => (i === 0 ? h('th', { scope: 'row', text: x }) : h('td', { text: x }))))));
    }

    async function loadUsage() {
        const start = $('usage-start').value, end = $('usage-end').value;
        const st = $('usage-state');
        if (!/^\d{4}-\d\d-\d\d$/.test(start) || !/^\d{4}-\d\d-\d\d$/.test(end)) return KB.state(st, 'bad', 'Enter both dates.');
        if (start > end) return KB.state(st, 'bad', 'The start date is after the end date.');
        if (D.daysBetween(start, end) > 365) return KB.state(st, 'bad', 'Choose at most 366 days.');
        KB.state(st, 'loading', 'Loading usage...');
        let r;
        try {
            r = await KB.api('GET', `/keys/usage?start_date=${start}&end_date=${end}`);
        } catch (e) {
            return KB.state(st, 'bad', KB.readable(e));
        }
        usageRange = { start, end };
        const keyName = new Map(r.data.map((k) => [k.id, `${k.name || '(unnamed)'} (${k.key_prefix}...)`]));
        const byDay = Array.isArray(r.days);
        $('usage-by-day').hidden = !byDay;
        $('usage-cycle').hidden = byDay;
        if (byDay) {
            const u = D.usageByDay(r.days, start, end);
            const series = u.endpoints.map((x) => x[0]);
            C.stackedBars($('usage-day-chart'), { rows: u.days, series, title: `Credits by day, ${D.day(start)} to ${D.day(end)}`,
                desc: `${D.credits(u.total)} credits in total` + (u.endpoints.length ? `; most on ${u.endpoints[0][0]} (${D.credits(u.endpoints[0][1])})` : '') });
            $('usage-legend').replaceChildren(...series.map((name, i) => h('li', {}, h('span', { class: `swatch s${i % 8}`, 'aria-hidden': 'true' }), `${name}: ${D.credits(u.endpoints[i][1])}`)));
            C.hBars($('usage-endpoint-chart'), { rows: u.endpoints.length ? u.endpoints : [['no use', 0]], title: 'Credits by endpoint', colours: u.endpoints.map((_, i) => i),
                desc: u.endpoints.map(([e, v]) => `${e} ${D.credits(v)}`).join(', ') || 'none' });
            const keyRows = u.keys.map(([id, v]) => [keyName.get(id) || `revoked key ${id.slice(0, 8)}`, v]);
            C.hBars($('usage-key-chart'), { rows: keyRows.length ? keyRows : [['no use', 0]], title: 'Credits by key', colour: 1,
                desc: keyRows.map(([k, v]) => `${k} ${D.credits(v)}`).join(', ') || 'none' });
            usageTable(['Day', ...series, 'Total'], u.days.filter((d) => d.total > 0 || u.days.length <= 31)
                .map((d) => [D.day(d.date), ...series.map((s) => D.credits(d.parts.get(s) || 0)), D.credits(d.total)]));
            KB.state(st, 'ok', `${D.credits(u.total)} credits from ${D.day(start)} to ${D.day(end)} (UTC).`);
        } else {
            const rows = r.data.map((k) => [keyName.get(k.id), k.credits_used]);
            C.hBars($('usage-key-chart'), { rows: rows.length ? rows : [['no keys', 0]], title: 'Credits by key, this cycle', colour: 1,
                desc: rows.map(([k, v]) => `${k} ${D.credits(v)}`).join(', ') || 'none' });
            usageTable(['Key', 'Credits this cycle', 'Last used'], r.data.map((k) => [keyName.get(k.id), D.credits(k.credits_used), D.utc(k.last_used_at)]));
            const total = r.data.reduce((a, k) => a + k.credits_used, 0);
            KB.state(st, 'ok', `${D.credits(total)} credits this cycle on your current keys.`);
        }
    }

    async function loadOverview() {
        const st = $('usage-state');
        try {
            const [s, p] = await Promise.all([loadStatus(), KB.plans()]);
            renderOverview(s, p);
            if (!usageRange) setRange('cycle');
            await loadUsage();
        } catch (e) {
            if (KB.token()) KB.state(st, 'bad', KB.readable(e));
        }
    }

    // ---- keys ----------------------------------------------------------------------------------
    function renderKeys(keys) {
        const body = $('keys-body');
        body.replaceChildren();
        $('keys-empty').hidden = keys.length > 0;
        for (const k of keys) {
            const cell = (label, text, cls) => h('td', { dataset: { label }, class: cls, text });
            const tr = h('tr', { dataset: { keyId: k.id } },
                cell('Name', k.name || '(unnamed)', 'key-name'),
                h('td', { dataset: { label: 'Key' } }, h('code', { text: k.key_prefix + '...' })),
                cell('Type', k.key_type),
                cell('Created', D.utc(k.created_at)),
                cell('Last used', k.last_used_at ? D.utc(k.last_used_at) : 'never', 'key-last'),
                cell('Credits this cycle', D.credits(k.credits_used), 'key-credits'));
            const label = `${k.name || '(unnamed)'} (${k.key_prefix}...)`;
            tr.append(h('td', { dataset: { label: 'Actions' } }, h('div', { class: 'row tight' },
                h('button', { type: 'button', class: 'rename', 'aria-label': `Rename ${label}`, text: 'Rename', onclick: () => startRename(tr, k) }),
                h('button', { type: 'button', class: 'danger revoke', 'aria-label': `Revoke ${label}`, text: 'Revoke', onclick: (ev) => revoke(ev.currentTarget, k) }))));
            body.append(tr);
        }
    }
    async function loadKeys() {
        const st = $('keys-state');
        KB.state(st, 'loading', 'Loading keys...');
        try {
            const r = await KB.api('GET', '/keys/usage');
            renderKeys(r.data);
            // Keys revoked elsewhere are no longer usable from this tab.
            for (const k of KB.tabKeys()) if (!r.data.some((x) => x.id === k.id)) KB.forgetKey(k.id);
            KB.state(st, '', '');
        } catch (e) {
            if (KB.token()) KB.state(st, 'bad', KB.readable(e));
        }
    }
    function startRename(tr, k) {
        const td = tr.querySelector('.key-name');
        const input = h('input', { maxlength: 100, 'aria-label': `New name for ${k.key_prefix}...` });
        input.value = k.name;
        const save = h('button', { type: 'submit', class: 'primary', text: 'Save' });
        const form = h('form', { class: 'row tight rename-form' }, input, save,
            h('button', { type: 'button', class: 'link', text: 'Cancel', onclick: () => loadKeys() }));
        form.addEventListener('submit', (ev) => {
            ev.preventDefault();
            KB.busy(save, async () => {
                await KB.api('PATCH', '/keys/' + encodeURIComponent(k.id), { name: input.value });
                KB.notice(`Key ${k.key_prefix}... renamed to "${input.value}".`);
                await loadKeys();
                const b = document.querySelector(`#keys-body tr[data-key-id="${CSS.escape(k.id)}"] button.rename`);
                if (b) b.focus();
            });
        });
        td.replaceChildren(form);
        input.focus();
    }
    async function revoke(button, k) {
        const ok = await KB.confirmDialog('Revoke this key?',
            `Revoke "${k.name || '(unnamed)'}" (${k.key_prefix}...)? Programs using it stop working at once. This cannot be undone.`, 'Revoke key');
        if (!ok) { button.focus(); return; }
        await KB.busy(button, async () => {
            await KB.api('DELETE', '/keys/' + encodeURIComponent(k.id));
            KB.forgetKey(k.id);
            KB.notice(`Key ${k.key_prefix}... revoked.`);
            await loadKeys();
            $('keys-title').focus();
        });
    }
    async function createKey(ev) {
        ev.preventDefault();
        await KB.busy($('key-create'), async () => {
            const body = { key_type: $('key-type').value };
            const name = $('key-name').value.trim();
            if (name) body.name = name;
            const r = await KB.api('POST', '/keys', body);
            KB.rememberKey(r.data);
            $('new-key-value').textContent = r.data.key;
            $('new-key').hidden = false;
            $('copy-key').textContent = 'Copy';
            $('key-name').value = '';
            await loadKeys();
            $('copy-key').focus();
        });
    }
    function hideNewKey() {
        $('new-key').hidden = true;
        $('new-key-value').textContent = '';
        $('key-name').focus();
    }

    // ---- billing -------------------------------------------------------------------------------
    function renderPlans(p, s) {
        const list = $('plans');
        list.replaceChildren();
        for (const x of p.plans) {
            const currentPlan = s.tier === x.tier;
            const price = x.overage === 'metered' ? `${D.dollars(p.payg_price_per_credit)} per extra credit` : `${D.dollars(x.price_per_month)} per month`;
            const facts = h('ul', { class: 'plan-facts' },
                h('li', { text: `${D.credits(x.credits_per_month)} credits per month` }),
                h('li', { text: `${D.credits(x.requests_per_minute)} requests per minute` }),
                h('li', { text: x.overage === 'none' ? 'Stops at the monthly credits' :
                    x.overage === 'metered' ? `Then ${D.dollars(p.payg_price_per_credit)} per credit, billed monthly` :
                        `Pay-As-You-Go on top: ${D.dollars(p.payg_price_per_credit)} per extra credit` }));
            let action = null;
            if (currentPlan) action = h('p', { class: 'badge', text: 'Your plan' });
            else if (x.tier === 'project') action = h('button', { type: 'button', class: 'primary', id: 'upgrade', text: `Upgrade to ${x.name}`, onclick: upgrade });
            else if (x.tier === 'payg' && s.tier === 'free') action = h('button', { type: 'button', id: 'plan-payg', text: `Turn on ${x.name}`, onclick: () => $('payg-toggle').click() });
            else if (x.tier === 'free') action = h('p', { class: 'hint', text: 'To return to Free, cancel in the billing portal.' });
            list.append(h('li', { class: 'plan' + (currentPlan ? ' current' : ''), dataset: { tier: x.tier } },
                h('h2', { text: x.name }), h('p', { class: 'price', text: price }), facts, h('p', { class: 'hint', text: x.summary }), action));
        }
    }
    function renderPayg(p, s) {
        $('payg-text').textContent = `Keep working past your monthly credits at ${D.dollars(p.payg_price_per_credit)} per extra credit, billed monthly by Stripe.`;
        const cap = typeof s.overage_cap === 'number' ? `, cap ${D.credits(s.overage_cap)} extra credits per cycle` : '';
        $('payg-state').textContent = s.payg_enabled ? `On, ${D.dollars(p.payg_price_per_credit)} per credit beyond your allowance${cap}` : 'Off';
        $('payg-toggle').textContent = s.payg_enabled ? 'Turn off Pay-As-You-Go' : `Turn on Pay-As-You-Go (${D.dollars(p.payg_price_per_credit)} per credit)`;
        $('payg-toggle').classList.toggle('primary', !s.payg_enabled);
        $('payg-cap-save').hidden = !s.payg_enabled;
        $('payg-cap-remove').hidden = !s.payg_enabled;
    }
    async function loadBilling() {
        const st = $('plans-state');
        KB.state(st, 'loading', 'Loading your plan...');
        try {
            const [s, p] = await Promise.all([loadStatus(), KB.plans()]);
            renderPlans(p, s);
            renderPayg(p, s);
            KB.state(st, '', `You are on ${(planOf(p, s.tier) || { name: s.tier }).name}: ${D.credits(s.credits_used)} of ${D.credits(s.credits_total)} credits used this cycle.`);
            return s;
        } catch (e) {
            if (KB.token()) KB.state(st, 'bad', KB.readable(e));
            return null;
        }
    }
    // The cap field: {ok, cap} with cap undefined when empty (leave the cap as it is).
    function capValue() {
        const v = $('payg-cap').value.trim();
        if (v === '') return { ok: true, cap: undefined };
        if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 2147483647) return { ok: false };
        return { ok: true, cap: Number(v) };
    }
    async function upgrade(ev) {
        await KB.busy(ev.currentTarget, async () => {
            const r = await KB.api('POST', '/billing/checkout');
            sessionStorage.setItem(KB.PENDING, JSON.stringify({ kind: 'project' }));
            KB.notice('Opening secure checkout...');
            window.location.assign(r.checkout_url);
        });
    }
    async function portal() {
        await KB.busy($('portal'), async () => {
            const r = await KB.api('POST', '/billing/portal');
            window.location.assign(r.portal_url);
        });
    }
    async function paygSubmit(ev) {
        ev.preventDefault();
        const enable = !(status && status.payg_enabled);
        await setPayg(enable, $('payg-toggle'));
    }
    // enable, and the cap: a number, null (remove it) or undefined (leave it as it is).
    async function setPayg(enable, button, removeCap) {
        const c = removeCap ? { ok: true, cap: null } : capValue();
        if (!c.ok) return KB.showError('The cap must be a whole number of credits, at least 1. To allow no extra credits, turn Pay-As-You-Go off.');
        if (button.id === 'payg-cap-save' && c.cap === undefined) return KB.showError('Enter the cap to save, in credits.');
        await KB.busy(button, async () => {
            const body = { enable };
            if (enable && c.cap !== undefined) body.overage_cap = c.cap;
            const r = await KB.api('POST', '/billing/payg', body);
            if (enable && !r.payg_enabled && r.checkout_url) {
                sessionStorage.setItem(KB.PENDING, JSON.stringify({ kind: 'payg' }));
                KB.notice(r.message + ' Opening secure checkout...');
                window.location.assign(r.checkout_url);
                return;
            }
            const capText = !enable || c.cap === undefined ? '' : c.cap === null ? ' The cap is removed.' : ` Cap: ${D.credits(c.cap)} extra credits per cycle.`;
            KB.notice(r.message + capText);
            await loadBilling();
        });
    }

    // After Stripe Checkout: ?success=true / ?canceled=true on /billing (API.md 5.13). The
    // webhook may land a moment after the return, so wait for the plan to show it.
    async function afterCheckout() {
        const q = new URLSearchParams(location.search);
        const success = q.get('success') === 'true', canceled = q.get('canceled') === 'true';
        if (!success && !canceled) return false;
        history.replaceState({ view: 'billing' }, '', '/dashboard/billing');
        let pending = null;
        try { pending = JSON.parse(sessionStorage.getItem(KB.PENDING) || 'null'); } catch (_) { pending = null; }
        sessionStorage.removeItem(KB.PENDING);
        if (canceled) { KB.notice('Checkout canceled. Nothing was charged.'); return false; }
        KB.notice('Payment received. Waiting for Stripe to confirm it...');
        const done = (s) => (pending && pending.kind === 'payg' ? s.payg_enabled : s.tier === 'project');
        const deadline = Date.now() + 30000;
        for (;;) {
            const s = await loadBilling();
            if (!s || !KB.token()) return true;
            if (done(s)) {
                KB.notice(pending && pending.kind === 'payg' ? 'Payment received: Pay-As-You-Go is on.' : 'Payment received: you are on the Project plan now.');
                return true;
            }
            if (Date.now() > deadline) {
                KB.notice('Payment received. Stripe has not confirmed it yet; reload this page in a minute to see your new plan.');
                return true;
            }
            await new Promise((r) => setTimeout(r, 1000));
        }
    }
    let checkoutChecked = false;
    async function billingView() {
        if (!checkoutChecked) { checkoutChecked = true; if (await afterCheckout()) return; }
        await loadBilling();
    }

    function init() {
        $('key-form').addEventListener('submit', createKey);
        $('copy-key').addEventListener('click', (ev) => KB.copyText($('new-key-value').textContent, ev.currentTarget, 'Copy'));
        $('new-key-done').addEventListener('click', hideNewKey);
        $('portal').addEventListener('click', portal);
        $('payg-form').addEventListener('submit', paygSubmit);
        $('payg-cap-save').addEventListener('click', (ev) => setPayg(true, ev.currentTarget));
        $('payg-cap-remove').addEventListener('click', (ev) => setPayg(true, ev.currentTarget, true));
        $('usage-form').addEventListener('submit', (ev) => { ev.preventDefault(); loadUsage(); });
        for (const b of document.querySelectorAll('#usage-form [data-range]'))
            b.addEventListener('click', () => { setRange(b.dataset.range); loadUsage(); });
    }
    // A return from Checkout shows its message even before the sign-in (the token may be gone).
    document.addEventListener('DOMContentLoaded', () => {
        init();
        const q = new URLSearchParams(location.search);
        if (!KB.token() && (q.get('success') === 'true' || q.get('canceled') === 'true'))
            KB.notice(q.get('success') === 'true' ? 'Payment received. Log in to see your plan.' : 'Checkout canceled. Nothing was charged.');
    });

    KB.views.overview = { load: loadOverview, reset() { usageRange = null; status = null; } };
    KB.views.keys = { load: loadKeys, reset() { $('new-key').hidden = true; $('new-key-value').textContent = ''; $('keys-body').replaceChildren(); } };
    KB.views.billing = { load: billingView, reset() { status = null; } };
    KB.loadStatus = loadStatus;
})();
