// kb-app.js - the dashboard shell (window.KB): the same-origin API client, the sign-in
// session, the views and their paths, notices, errors and the confirm dialog. The views
// themselves live in kb-account.js (overview, keys, billing) and kb-playground.js.
// Invariants: only same-origin calls (relative URLs); the user token and any raw API key live
// in sessionStorage at most (this tab, until it closes or the user logs out), and the token is
// sent only to /keys* and /billing/*; nothing from the API is inserted as HTML (textContent
// only); no inline script or style (strict CSP); an expired session returns to the sign-in
// form with a message.
'use strict';
(function () {
    const D = window.KBData;
    const TOKEN = 'kb_user_token';
    const TAB_KEYS = 'kb_tab_keys';        // [{id, key, name, key_prefix}] created in this tab
    const PENDING = 'kb_checkout_pending'; // {kind: 'project'|'payg'} while Stripe Checkout is open
    const $ = (id) => document.getElementById(id);

    const VIEWS = { overview: '/dashboard', keys: '/dashboard/keys', billing: '/dashboard/billing', playground: '/dashboard/playground' };
    const TITLES = { overview: 'Overview', keys: 'API keys', billing: 'Plans and billing', playground: 'Playground' };
    const views = {};           // name -> {load(), reset()} registered by the view scripts
    let current = null;
    let expiryTimer = null;

    const MESSAGES = {
        invalid_credentials: 'Wrong email or password.',
        user_already_exists: 'An account with this email already exists. Log in instead.',
        weak_password: 'That password is too weak. Use at least 8 characters.',
        signup_failed: 'Sign-up failed.',
        validation_error: 'Some input is missing or invalid.',
        invalid_timestamp: 'A time is invalid, or the start is after the end.',
        invalid_auth_method: 'Please log in with your email and password.',
        key_not_found: 'That API key no longer exists.',
        no_fields: 'Nothing to change.',
        invalid_key_type: 'Key type must be dev or prod.',
        no_billing_account: 'There is no billing account yet: upgrade or turn on Pay-As-You-Go first.',
        already_subscribed: 'You already have a Project subscription. Use the billing portal to change it.',
        billing_not_configured: 'Billing is not available on this server right now.',
        stripe_error: 'The payment provider did not answer. Please try again in a minute.',
        rate_limit_exceeded: 'Too many requests.',
        credits_exhausted: 'You have used all the credits of this cycle.',
        market_not_found: 'No such market.',
        no_data_available: 'No data at or before that instant.',
        event_not_found: 'No such event.',
        settlement_not_found: 'No settlement for that market.',
        service_unavailable: 'The service is temporarily unavailable. Please try again shortly.',
        internal_error: 'Something went wrong on our side.',
        payload_too_large: 'That request is too large.',
        not_found: 'This server does not offer that path.',
    };

    class ApiError extends Error {
        constructor(status, code, message, requestId, headers) {
            super(message);
            this.status = status; this.code = code; this.requestId = requestId; this.headers = headers;
        }
    }

    function readable(e) {
        if (!(e instanceof ApiError)) return 'Could not reach the server. Check your connection and try again.';
        let text = MESSAGES[e.code] || `The request failed (HTTP ${e.status}).`;
        if (e.code === 'rate_limit_exceeded' && e.headers) {
            const s = e.headers.get('Retry-After');
            if (s) text += ` Try again in ${s} s.`;
        }
        if (e.message && !text.includes(e.message) && e.code !== 'internal_error') text += ' (' + e.message + ')';
        if (e.requestId) text += ' Reference: ' + e.requestId + '.';
        return text;
    }

    // ---- session ------------------------------------------------------------------------
    function tokenExp(tok) {
        try {
            const p = JSON.parse(atob(tok.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
            return typeof p.exp === 'number' ? p.exp * 1000 : null;
        } catch (_) { return null; }
    }
    function token() {
        const t = sessionStorage.getItem(TOKEN);
        if (!t) return null;
        const exp = tokenExp(t);
        if (exp !== null && exp <= Date.now()) { expire(); return null; }
        return t;
    }
    function startSession(tok) {
        sessionStorage.setItem(TOKEN, tok);
        armExpiry();
    }
    function armExpiry() {
        clearTimeout(expiryTimer);
        const t = sessionStorage.getItem(TOKEN);
        const exp = t && tokenExp(t);
        // setTimeout holds at most ~24.8 days; tokens live an hour.
        if (exp) expiryTimer = setTimeout(expire, Math.min(Math.max(0, exp - Date.now()), 2 ** 31 - 1));
    }
    function expire() { logout('Your session has expired. Please log in again.'); }

    function tabKeys() {
        try { return JSON.parse(sessionStorage.getItem(TAB_KEYS) || '[]'); } catch (_) { return []; }
    }
    function rememberKey(k) {
        const list = tabKeys().filter((x) => x.id !== k.id);
        list.unshift({ id: k.id, key: k.key, name: k.name, key_prefix: k.key_prefix });
        sessionStorage.setItem(TAB_KEYS, JSON.stringify(list));
    }
    function forgetKey(id) { sessionStorage.setItem(TAB_KEYS, JSON.stringify(tabKeys().filter((x) => x.id !== id))); }

    // ---- API ------------------------------------------------------------------------------
    // User-token calls (auth, keys, billing). A 401 ends the session.
    async function api(method, path, body) {
        const headers = { Accept: 'application/json' };
        const userRoute = path.startsWith('/keys') || path.startsWith('/billing/');
        if (userRoute) {
            const t = token();
            if (!t) throw new ApiError(401, 'invalid_api_key', 'Your session has expired.', null, null);
            headers.Authorization = 'Bearer ' + t;
        }
        const init = { method, headers, credentials: 'omit', redirect: 'error', cache: 'no-store' };
        if (body !== undefined) { headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
        const r = await fetch(path, init);
        let data = null;
        try { data = await r.json(); } catch (_) { data = null; }
        if (!r.ok) {
            const err = data && data.error ? data.error : {};
            const e = new ApiError(r.status, err.code || 'http_' + r.status, err.message || '', data && data.request_id, r.headers);
            if (r.status === 401 && userRoute) expire();
            throw e;
        }
        return data;
    }

    // Static JSON of this site (plans.json, openapi.json), fetched once per page.
    const cache = new Map();
    function staticJson(path) {
        if (!cache.has(path)) {
            cache.set(path, fetch(path, { credentials: 'omit', redirect: 'error' }).then(async (r) => {
                if (!r.ok) throw new ApiError(r.status, 'http_' + r.status, `${path} answered ${r.status}`, null, null);
                return r.json();
            }).catch((e) => { cache.delete(path); throw e; }));
        }
        return cache.get(path);
    }
    const plans = () => staticJson('/plans.json');

    // ---- messages ---------------------------------------------------------------------------
    function showError(e, where) {
        const box = where || $('error');
        box.textContent = typeof e === 'string' ? e : readable(e);
        box.hidden = false;
        if (!where) box.scrollIntoView({ block: 'nearest' });
    }
    function clearError() { $('error').hidden = true; $('error').textContent = ''; }
    function notice(text) { const n = $('notice'); n.textContent = text || ''; n.hidden = !text; }
    // Run fn with the button disabled and errors shown; returns fn's result or undefined.
    async function busy(button, fn) {
        clearError();
        const was = button ? button.disabled : false;
        if (button) { button.disabled = true; button.setAttribute('aria-busy', 'true'); }
        try { return await fn(); } catch (e) { if (!(e instanceof ApiError && e.status === 401 && !token())) showError(e); return undefined; } finally {
            if (button) { button.disabled = was; button.removeAttribute('aria-busy'); }
        }
    }
    // A state line: loading / error / empty text, with a class for styling.
    function state(elm, kind, text) {
        elm.textContent = text || '';
        elm.className = 'state' + (kind ? ' ' + kind : '');
    }

    // The confirm dialog: resolves true when confirmed. Each showing is answered by its own
    // submit (a button) or cancel (Escape), both synchronous; the close event is queued and can
    // arrive after the dialog was shown again, so it only answers a showing still waiting
    // while the dialog is closed.
    let answer = null;
    function settleDialog(ok) { const a = answer; answer = null; if (a) a(ok); }
    function confirmDialog(title, text, okLabel) {
        const dlg = $('confirm');
        $('confirm-title').textContent = title;
        $('confirm-text').textContent = text;
        $('confirm-ok').textContent = okLabel || 'Confirm';
        settleDialog(false);
        return new Promise((resolve) => {
            answer = resolve;
            dlg.returnValue = '';
            dlg.showModal();
            $('confirm-cancel').focus();
        });
    }
    function initDialog() {
        const dlg = $('confirm');
        dlg.querySelector('form').addEventListener('submit', (ev) => settleDialog(Boolean(ev.submitter && ev.submitter.value === 'ok')));
        dlg.addEventListener('cancel', () => settleDialog(false));
        dlg.addEventListener('close', () => { if (!dlg.open) settleDialog(dlg.returnValue === 'ok'); });
    }

    // ---- small DOM helpers ------------------------------------------------------------------
    function h(tag, attrs, ...kids) {
        const e = document.createElement(tag);
        for (const [k, v] of Object.entries(attrs || {})) {
            if (v === undefined || v === null || v === false) continue;
            if (k === 'class') e.className = v;
            else if (k === 'text') e.textContent = v;
            else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
            else if (k === 'dataset') Object.assign(e.dataset, v);
            else e.setAttribute(k, v === true ? '' : String(v));
        }
        for (const k of kids) if (k !== null && k !== undefined) e.append(k);
        return e;
    }
    async function copyText(text, button, label) {
        try {
            await navigator.clipboard.writeText(text);
            button.textContent = 'Copied';
        } catch (_) {
            button.textContent = 'Copy failed: select the text and press Ctrl+C';
        }
        setTimeout(() => { button.textContent = label; }, 2500);
    }

    // ---- views --------------------------------------------------------------------------------
    function viewOf(pathname) {
        if (pathname === '/billing') return 'billing';
        for (const [v, p] of Object.entries(VIEWS)) if (p === pathname) return v;
        return 'overview';
    }
    function show(view, focus) {
        current = view;
        const signedIn = Boolean(token());
        $('auth').hidden = signedIn;
        $('nav').hidden = !signedIn;
        $('logout').hidden = !signedIn;
        for (const v of Object.keys(VIEWS)) $('view-' + v).hidden = !signedIn || v !== view;
        for (const a of document.querySelectorAll('#nav a')) {
            if (a.dataset.view === view) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
        }
        document.title = (signedIn ? TITLES[view] : ($('tab-signup').getAttribute('aria-pressed') === 'true' ? 'Sign up' : 'Log in')) + ' - KalshiBook';
        if (!signedIn) { if (focus) $('auth-title').focus(); return; }
        const s = sessionStorage.getItem('kb_email');
        $('who').textContent = s || '';
        if (focus) $('view-' + view).querySelector('h1').focus();
        if (views[view]) views[view].load();
    }
    function go(view) {
        const path = VIEWS[view];
        if (location.pathname !== path || location.search) history.pushState({ view }, '', path);
        clearError();
        notice('');
        show(view, true);
    }

    function logout(message) {
        clearTimeout(expiryTimer);
        sessionStorage.removeItem(TOKEN);
        sessionStorage.removeItem(TAB_KEYS);
        sessionStorage.removeItem(PENDING);
        sessionStorage.removeItem('kb_email');
        for (const v of Object.values(views)) if (v.reset) v.reset();
        clearError();
        notice('');
        show(current || 'overview', false);
        if (message) showError(message);
        $('auth-title').focus();
    }

    // ---- sign-in ------------------------------------------------------------------------------
    let mode = 'login';
    function setMode(m) {
        mode = m;
        $('tab-login').setAttribute('aria-pressed', String(m === 'login'));
        $('tab-signup').setAttribute('aria-pressed', String(m === 'signup'));
        $('auth-title').textContent = m === 'login' ? 'Log in' : 'Create your account';
        $('auth-submit').textContent = m === 'login' ? 'Log in' : 'Sign up';
        $('password').autocomplete = m === 'login' ? 'current-password' : 'new-password';
        $('pw-hint').hidden = m === 'login';
        document.title = (m === 'login' ? 'Log in' : 'Sign up') + ' - KalshiBook';
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
            startSession(r.access_token);
            sessionStorage.setItem('kb_email', email);
            $('password').value = '';
            notice(mode === 'signup' ? 'Welcome! Your account is on the Free plan. Create an API key to start.' : '');
            show(current, true);
        });
    }

    function init() {
        initDialog();
        $('tab-login').addEventListener('click', () => setMode('login'));
        $('tab-signup').addEventListener('click', () => setMode('signup'));
        $('auth-form').addEventListener('submit', submitAuth);
        $('logout').addEventListener('click', () => logout());
        // In-page links to views (the nav and any link with data-view).
        document.addEventListener('click', (ev) => {
            const a = ev.target.closest && ev.target.closest('a[data-view]');
            if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
            ev.preventDefault();
            if (token()) go(a.dataset.view);
        });
        window.addEventListener('popstate', () => { clearError(); notice(''); show(viewOf(location.pathname), true); });
        const q = new URLSearchParams(location.search);
        current = viewOf(location.pathname);
        if (!token()) setMode(q.get('signup') === '1' ? 'signup' : 'login');
        armExpiry();
        show(current, false);
    }

    window.KB = { $, h, api, ApiError, readable, staticJson, plans, showError, clearError, notice, busy, state,
        confirmDialog, copyText, go, tabKeys, rememberKey, forgetKey, token, logout, views, PENDING, D,
        current: () => current };
    document.addEventListener('DOMContentLoaded', init);
})();
