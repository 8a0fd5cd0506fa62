// billing.js - the /billing page: log in or sign up, plan and credits, upgrade, billing
// portal, Pay-As-You-Go, and API keys (create shown once, list with usage, rename, revoke).
// Invariants: only same-origin calls (relative URLs); the user token lives in
// sessionStorage and is sent only as Authorization to /keys* and /billing/*; nothing from
// the API is inserted as HTML (textContent only); no inline script or style (strict CSP).
'use strict';
(function () {
    const TOKEN = 'kb_user_token';
    const $ = (id) => document.getElementById(id);
    let mode = 'login';
    let status = null;

    const MESSAGES = {
        invalid_credentials: 'Wrong email or password.',
        user_already_exists: 'An account with this email already exists. Log in instead.',
        weak_password: 'That password is too weak. Use at least 8 characters.',
        signup_failed: 'Sign-up failed.',
        validation_error: 'Some input is missing or invalid.',
        invalid_api_key: 'Your session has expired. Please log in again.',
        invalid_auth_method: 'Please log in with your email and password.',
        key_not_found: 'That API key no longer exists.',
        no_fields: 'Nothing to change.',
        invalid_key_type: 'Key type must be dev or prod.',
        no_billing_account: 'There is no billing account yet. Upgrade or turn on Pay-As-You-Go first.',
        already_subscribed: 'You already have a Project subscription. Use "Manage billing" to change it.',
        billing_not_configured: 'Billing is not available on this server right now.',
        stripe_error: 'The payment provider did not answer. Please try again in a minute.',
        rate_limit_exceeded: 'Too many requests. Please wait a moment.',
        service_unavailable: 'The service is temporarily unavailable. Please try again shortly.',
        internal_error: 'Something went wrong on our side.',
        payload_too_large: 'That request is too large.',
    };

    class ApiError extends Error {
        constructor(status, code, message, requestId) {
            super(message);
            this.status = status; this.code = code; this.requestId = requestId;
        }
    }

    function readable(e) {
        if (!(e instanceof ApiError)) return 'Could not reach the server. Check your connection and try again.';
        const base = MESSAGES[e.code] || 'The request failed.';
        let text = base;
        if (e.message && !base.includes(e.message) && e.code !== 'internal_error') text += ' (' + e.message + ')';
        if (e.requestId) text += ' Reference: ' + e.requestId + '.';
        return text;
    }

    async function api(method, path, body) {
        const headers = { Accept: 'application/json' };
        const token = sessionStorage.getItem(TOKEN);
        if (token && (path.startsWith('/keys') || path.startsWith('/billing/'))) headers.Authorization = 'Bearer ' + token;
        const init = { method, headers, credentials: 'omit', redirect: 'error' };
        if (body !== undefined) { headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
        const r = await fetch(path, init);
        let data = null;
        try { data = await r.json(); } catch (_) { data = null; }
        if (!r.ok) {
            const err = data && data.error ? data.error : {};
            const e = new ApiError(r.status, err.code || 'http_' + r.status, err.message || '', data && data.request_id);
            if (r.status === 401 && path !== '/auth/login' && path !== '/auth/signup') logout(false);
            throw e;
        }
        return data;
    }

    function showError(e) {
        const box = $('error');
        box.textContent = typeof e === 'string' ? e : readable(e);
        box.hidden = false;
        box.scrollIntoView({ block: 'nearest' });
    }
    function clearError() { $('error').hidden = true; $('error').textContent = ''; }
    function notice(text) { const n = $('notice'); n.textContent = text; n.hidden = !text; }

    async function busy(button, fn) {
        clearError();
        if (button) button.disabled = true;
        try { await fn(); } catch (e) { showError(e); } finally { if (button) button.disabled = false; }
    }

    function fmtDate(ts) {
        if (!ts) return 'never';
        const d = new Date(ts);
        if (isNaN(d)) return ts;
        return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', timeZone: 'UTC', timeZoneName: 'short' });
    }
    function fmtDay(d) {
        return d.toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric', timeZone: 'UTC' });
    }
    const TIER = { free: 'Free', payg: 'Pay-As-You-Go', project: 'Project' };

    // ---- auth ---------------------------------------------------------------------------
    function setMode(m) {
        mode = m;
        $('tab-login').setAttribute('aria-selected', String(m === 'login'));
        $('tab-signup').setAttribute('aria-selected', String(m === 'signup'));
        $('auth-title').textContent = m === 'login' ? 'Log in' : 'Create your account';
        $('auth-submit').textContent = m === 'login' ? 'Log in' : 'Sign up';
        $('password').autocomplete = m === 'login' ? 'current-password' : 'new-password';
        $('pw-hint').hidden = m === 'login';
        clearError();
    }

    async function submitAuth(ev) {
        ev.preventDefault();
        const email = $('email').value.trim();
        const password = $('password').value;
        if (!email || !password) return showError('Enter your email and password.');
        if (mode === 'signup' && password.length < 8) return showError('The password needs at least 8 characters.');
        await busy($('auth-submit'), async () => {
            const r = await api('POST', mode === 'login' ? '/auth/login' : '/auth/signup', { email, password });
            sessionStorage.setItem(TOKEN, r.access_token);
            $('password').value = '';
            await showAccount();
        });
    }

    function logout(clearNotice = true) {
        sessionStorage.removeItem(TOKEN);
        $('account').hidden = true;
        $('auth').hidden = false;
        $('logout').hidden = true;
        $('new-key').hidden = true;
        $('new-key-value').textContent = '';
        if (clearNotice) notice('');
    }

    // ---- plan and credits -----------------------------------------------------------------
    function renderStatus(s) {
        status = s;
        $('tier').textContent = TIER[s.tier] || s.tier;
        $('credits-used').textContent = s.credits_used.toLocaleString('en-US');
        $('credits-total').textContent = s.credits_total.toLocaleString('en-US');
        $('credits-remaining').textContent = s.credits_remaining.toLocaleString('en-US');
        const pct = s.credits_total > 0 ? Math.min(100, (100 * s.credits_used) / s.credits_total) : 100;
        $('credits-fill').style.width = pct.toFixed(1) + '%';
        $('credits-fill').classList.toggle('full', s.credits_remaining === 0);
        const bar = $('credits-bar');
        bar.setAttribute('aria-valuenow', String(s.credits_used));
        bar.setAttribute('aria-valuemax', String(s.credits_total));
        const start = new Date(s.billing_cycle_start);
        $('cycle-start').textContent = fmtDay(start);
        if (s.tier === 'project') {
            $('cycle-reset').textContent = 'with each subscription period (about ' + fmtDay(new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, start.getUTCDate()))) + ')';
        } else {
            $('cycle-reset').textContent = fmtDay(new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1)));
        }
        $('payg-state').textContent = s.payg_enabled ? 'On - $0.008 per credit beyond your allowance' : 'Off';
        $('payg-toggle').textContent = s.payg_enabled ? 'Turn off Pay-As-You-Go'
            : 'Turn on Pay-As-You-Go ($0.008 per credit)';
        $('upgrade').hidden = s.tier === 'project';
    }

    async function loadStatus() { renderStatus(await api('GET', '/billing/status')); }

    async function upgrade() {
        await busy($('upgrade'), async () => {
            const r = await api('POST', '/billing/checkout');
            notice('Opening secure checkout...');
            window.location.assign(r.checkout_url);
        });
    }
    async function portal() {
        await busy($('portal'), async () => {
            const r = await api('POST', '/billing/portal');
            window.location.assign(r.portal_url);
        });
    }
    async function togglePayg() {
        const enable = !(status && status.payg_enabled);
        await busy($('payg-toggle'), async () => {
            const r = await api('POST', '/billing/payg', { enable });
            if (enable && !r.payg_enabled && r.checkout_url) {
                notice(r.message + ' Opening secure checkout...');
                window.location.assign(r.checkout_url);
                return;
            }
            notice(r.message);
            await loadStatus();
        });
    }

    // ---- keys -------------------------------------------------------------------------------
    function cell(tr, label, text) {
        const td = document.createElement('td');
        td.dataset.label = label;
        if (text !== undefined) td.textContent = text;
        tr.appendChild(td);
        return td;
    }
    function button(text, cls, onclick) {
        const b = document.createElement('button');
        b.type = 'button'; b.textContent = text;
        if (cls) b.className = cls;
        b.addEventListener('click', () => onclick(b));
        return b;
    }

    function renderKeys(keys) {
        const body = $('keys-body');
        body.replaceChildren();
        $('keys-empty').hidden = keys.length > 0;
        for (const k of keys) {
            const tr = document.createElement('tr');
            tr.dataset.keyId = k.id;
            const nameTd = cell(tr, 'Name', k.name || '(unnamed)');
            nameTd.className = 'key-name';
            const pre = cell(tr, 'Key');
            const code = document.createElement('code');
            code.textContent = k.key_prefix + '...';
            pre.appendChild(code);
            cell(tr, 'Type', k.key_type);
            cell(tr, 'Created', fmtDate(k.created_at));
            cell(tr, 'Last used', fmtDate(k.last_used_at));
            const used = cell(tr, 'Credits this cycle', String(k.credits_used));
            used.className = 'key-credits';
            const act = cell(tr, 'Actions');
            const row = document.createElement('div');
            row.className = 'row';
            row.appendChild(button('Rename', 'rename', () => startRename(tr, k)));
            row.appendChild(button('Revoke', 'danger revoke', (b) => revoke(b, k)));
            act.appendChild(row);
            body.appendChild(tr);
        }
    }

    async function loadKeys() { renderKeys((await api('GET', '/keys/usage')).data); }

    function startRename(tr, k) {
        const td = tr.querySelector('.key-name');
        const form = document.createElement('form');
        form.className = 'row rename-form';
        const input = document.createElement('input');
        input.maxLength = 100; input.value = k.name; input.setAttribute('aria-label', 'New name');
        const save = document.createElement('button');
        save.type = 'submit'; save.textContent = 'Save'; save.className = 'primary';
        form.append(input, save, button('Cancel', 'link', () => loadKeys().catch(showError)));
        form.addEventListener('submit', (ev) => {
            ev.preventDefault();
            busy(save, async () => {
                await api('PATCH', '/keys/' + encodeURIComponent(k.id), { name: input.value });
                notice('Key renamed.');
                await loadKeys();
            });
        });
        td.replaceChildren(form);
        input.focus();
    }

    async function revoke(b, k) {
        if (!window.confirm('Revoke the key "' + k.name + '" (' + k.key_prefix + '...)? Programs using it will stop working immediately.')) return;
        await busy(b, async () => {
            await api('DELETE', '/keys/' + encodeURIComponent(k.id));
            notice('Key ' + k.key_prefix + '... revoked.');
            await loadKeys();
        });
    }

    async function createKey(ev) {
        ev.preventDefault();
        await busy($('key-create'), async () => {
            const body = { key_type: $('key-type').value };
            const name = $('key-name').value.trim();
            if (name) body.name = name;
            const r = await api('POST', '/keys', body);
            $('new-key-value').textContent = r.data.key;
            $('new-key').hidden = false;
            $('copy-key').textContent = 'Copy';
            $('key-name').value = '';
            await loadKeys();
        });
    }

    async function copyKey() {
        const value = $('new-key-value').textContent;
        try {
            await navigator.clipboard.writeText(value);
            $('copy-key').textContent = 'Copied';
        } catch (_) {
            const range = document.createRange();
            range.selectNodeContents($('new-key-value'));
            const sel = window.getSelection();
            sel.removeAllRanges(); sel.addRange(range);
            $('copy-key').textContent = 'Selected - press Ctrl+C';
        }
    }

    function hideNewKey() {
        $('new-key').hidden = true;
        $('new-key-value').textContent = '';
    }

    // ---- page -------------------------------------------------------------------------------
    async function showAccount() {
        $('auth').hidden = true;
        $('account').hidden = false;
        $('logout').hidden = false;
        await Promise.all([loadStatus(), loadKeys()]);
    }

    function init() {
        $('tab-login').addEventListener('click', () => setMode('login'));
        $('tab-signup').addEventListener('click', () => setMode('signup'));
        $('auth-form').addEventListener('submit', submitAuth);
        $('logout').addEventListener('click', () => logout());
        $('upgrade').addEventListener('click', upgrade);
        $('portal').addEventListener('click', portal);
        $('payg-toggle').addEventListener('click', togglePayg);
        $('key-form').addEventListener('submit', createKey);
        $('copy-key').addEventListener('click', copyKey);
        $('new-key-done').addEventListener('click', hideNewKey);
        const q = new URLSearchParams(window.location.search);
        if (q.get('success') === 'true') notice('Payment received. Your plan updates as soon as Stripe confirms it; refresh in a few seconds if it has not yet.');
        if (q.get('canceled') === 'true') notice('Checkout canceled. Nothing was charged.');
        if (sessionStorage.getItem(TOKEN)) busy(null, showAccount);
        else setMode(q.get('signup') === '1' ? 'signup' : 'login');
    }

    document.addEventListener('DOMContentLoaded', init);
})();
