// lib.js - shared helpers for the static-surface tests: load static/openapi.json, parse the
// router table (app/routes.c), find the operation for (method, path), and validate a
// response (status, headers, body) against the spec with Ajv (JSON Schema 2020-12).
// Invariants: no network here; paths are matched segment by segment, a {param} matches one
// non-empty segment; literal segments win over {param} ones, as in the router.
'use strict';
const fs = require('fs');
const path = require('path');
const Ajv2020 = require('ajv/dist/2020');
const addFormats = require('ajv-formats');

const ROOT = path.resolve(__dirname, '..', '..');
const SPEC_FILE = path.join(ROOT, 'static', 'openapi.json');
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

function loadSpec(file = SPEC_FILE) {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
}

// "/keys/{key_id}" -> "/keys/{}" so parameter names do not matter when comparing.
function normalisePath(p) {
    return p.replace(/\{[^}/]*\}/g, '{}');
}

// The router table: lines like  {"GET", "/health", h_health, 0, KB_OK},  inside kb_routes[]
// (method, pattern, handler, then optionally the cost and the code for an undecodable {param}).
const ROUTE_RE = /\{\s*"([A-Z]+)"\s*,\s*"([^"]+)"\s*,\s*[A-Za-z_][A-Za-z0-9_]*\s*(?:,\s*([0-9]+)\s*(?:,\s*[A-Z_][A-Z0-9_]*\s*)?)?\}/g;
function routerRoutes(file = path.join(ROOT, 'app', 'routes.c')) {
    const src = fs.readFileSync(file, 'utf8');
    const start = src.indexOf('kb_routes[]');
    if (start < 0) throw new Error(`${file}: no kb_routes[] table`);
    const end = src.indexOf('};', start);
    const table = src.slice(start, end);
    const out = [];
    const re = new RegExp(ROUTE_RE);
    let m;
    while ((m = re.exec(table)) !== null) out.push(`${m[1]} ${normalisePath(m[2])}`);
    return out;
}

// The credit cost each route of app/routes.c carries (its fourth field): {"GET /markets": 1, ...}.
function routerCosts(file = path.join(ROOT, 'app', 'routes.c')) {
    const src = fs.readFileSync(file, 'utf8');
    const start = src.indexOf('kb_routes[]');
    const table = src.slice(start, src.indexOf('};', start));
    const out = {};
    const re = new RegExp(ROUTE_RE);
    let m;
    while ((m = re.exec(table)) !== null) if (m[3] !== undefined) out[`${m[1]} ${normalisePath(m[2])}`] = Number(m[3]);
    return out;
}

function specRoutes(spec) {
    const out = [];
    for (const [p, item] of Object.entries(spec.paths || {}))
        for (const m of METHODS) if (item[m]) out.push(`${m.toUpperCase()} ${normalisePath(p)}`);
    return out;
}

function routerHas(route, routes = routerRoutes()) {
    return routes.includes(route);
}

// Match a concrete path (no query) to a spec path template. Returns the template or null.
function matchPath(spec, concrete) {
    const segs = concrete.split('?')[0].split('/');
    let best = null, bestLiterals = -1;
    for (const tmpl of Object.keys(spec.paths)) {
        const ts = tmpl.split('/');
        if (ts.length !== segs.length) continue;
        let ok = true, literals = 0;
        for (let i = 0; i < ts.length && ok; i++) {
            if (/^\{[^}]+\}$/.test(ts[i])) ok = segs[i].length > 0;
            else if (ts[i] === segs[i]) literals++;
            else ok = false;
        }
        if (ok && literals > bestLiterals) { best = tmpl; bestLiterals = literals; }
    }
    return best;
}

function resolve(spec, obj) {
    let guard = 0;
    while (obj && obj.$ref && guard++ < 10) {
        const parts = obj.$ref.replace(/^#\//, '').split('/')
            .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
        obj = parts.reduce((o, k) => (o ? o[k] : undefined), spec);
    }
    return obj;
}

function pointer(parts) {
    return '#/' + parts.map((s) => String(s).replace(/~/g, '~0').replace(/\//g, '~1')).join('/');
}

let ajvCache = null;
function ajvFor(spec) {
    if (ajvCache && ajvCache.spec === spec) return ajvCache.ajv;
    const ajv = new Ajv2020({ strict: false, allErrors: true, validateSchema: false });
    addFormats(ajv);
    const doc = JSON.parse(JSON.stringify(spec));
    doc.$id = 'kb:openapi';
    ajv.addSchema(doc, 'kb:openapi');
    ajvCache = { spec, ajv };
    return ajv;
}

// Which response object documents (method, path, status)? Returns {where, response} or
// {where, response:null}. Unmatched paths and methods use the generic Default response,
// the way the server answers them (404 not_found, 405 method_not_allowed, 413, 5xx).
function responseFor(spec, method, concretePath, status) {
    const tmpl = matchPath(spec, concretePath);
    const m = method.toLowerCase();
    if (!tmpl || !spec.paths[tmpl][m]) {
        return { where: ['components', 'responses', 'Default'], op: null, tmpl,
            response: spec.components.responses.Default, generic: true };
    }
    const op = spec.paths[tmpl][m];
    const key = String(status) in op.responses ? String(status) : 'default';
    const raw = op.responses[key];
    let where = ['paths', tmpl, m, 'responses', key];
    if (raw && raw.$ref) where = raw.$ref.replace(/^#\//, '').split('/');
    return { where, op, tmpl, response: resolve(spec, raw), generic: false, key };
}

function headerGet(headers, name) {
    if (!headers) return undefined;
    if (typeof headers.get === 'function') return headers.get(name) ?? undefined;
    const k = Object.keys(headers).find((h) => h.toLowerCase() === name.toLowerCase());
    return k === undefined ? undefined : headers[k];
}

// Validate one response. headers may be a fetch Headers, a plain object, or null (skip
// header checks). Returns a list of problems (empty when it conforms).
function validateResponse(spec, { method, path: p, status, body, headers }) {
    const errs = [];
    const found = responseFor(spec, method, p, status);
    const resp = found.response;
    if (!resp) return [`${method} ${p}: status ${status} is not documented`];
    if (found.generic && status < 400)
        errs.push(`${method} ${p}: not in the spec, yet answered ${status}`);
    const media = resp.content && resp.content['application/json'];
    if (!media) return errs.concat([`${method} ${p} ${status}: documented response has no JSON body`]);
    const ajv = ajvFor(spec);
    const ptr = 'kb:openapi' + pointer(found.where.concat(['content', 'application/json', 'schema']));
    const validate = ajv.getSchema(ptr);
    if (!validate) return errs.concat([`no schema at ${ptr}`]);
    if (!validate(body)) {
        for (const e of validate.errors)
            errs.push(`${method} ${p} ${status}: body${e.instancePath} ${e.message}` +
                (e.params && Object.keys(e.params).length ? ' ' + JSON.stringify(e.params) : ''));
    }
    if (status >= 400 && body && body.error) {
        if (body.error.status !== status) errs.push(`error.status ${body.error.status} != HTTP ${status}`);
        const byCode = spec.components.schemas.ErrorCode['x-status-by-code'];
        if (byCode[body.error.code] !== undefined && byCode[body.error.code] !== status)
            errs.push(`code ${body.error.code} belongs to HTTP ${byCode[body.error.code]}, got ${status}`);
    }
    if (headers) {
        const rid = headerGet(headers, 'x-request-id');
        if (!rid || !/^req_[0-9a-f]{12}$/.test(rid)) errs.push(`X-Request-ID missing or malformed: ${rid}`);
        if (body && typeof body.request_id === 'string' && rid !== body.request_id)
            errs.push(`X-Request-ID ${rid} != body request_id ${body.request_id}`);
        for (const h of ['X-Credits-Remaining', 'X-Credits-Used', 'X-Credits-Total', 'X-Credits-Cost',
            'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset', 'Retry-After']) {
            const v = headerGet(headers, h);
            if (v !== undefined && !/^[0-9]+$/.test(v)) errs.push(`${h} is not a decimal integer: ${v}`);
            if (v !== undefined && !found.generic && !(resp.headers && h in resp.headers))
                errs.push(`${h} sent but not documented for ${method} ${found.tmpl} ${status}`);
        }
        if (found.op && status === 200 && found.op['x-credits'] > 0) {
            for (const h of ['X-Credits-Remaining', 'X-Credits-Used', 'X-Credits-Total', 'X-Credits-Cost'])
                if (headerGet(headers, h) === undefined) errs.push(`${h} missing on a metered 200`);
            const cost = headerGet(headers, 'X-Credits-Cost');
            if (cost !== undefined && Number(cost) !== found.op['x-credits'])
                errs.push(`X-Credits-Cost ${cost} != x-credits ${found.op['x-credits']}`);
        }
        if (status === 405 && !headerGet(headers, 'allow')) errs.push('405 without an Allow header');
        if (body && body.error && body.error.code === 'rate_limit_exceeded' && !headerGet(headers, 'retry-after'))
            errs.push('rate_limit_exceeded without Retry-After');
    }
    return errs;
}

// Field names of a JSON value, as sorted dotted paths (arrays: the first element).
function fieldPaths(v, prefix = '', out = new Set()) {
    if (Array.isArray(v)) {
        if (v.length) fieldPaths(v[0], prefix + '[]', out);
    } else if (v && typeof v === 'object') {
        for (const [k, x] of Object.entries(v)) {
            out.add(prefix + '.' + k);
            fieldPaths(x, prefix + '.' + k, out);
        }
    }
    return out;
}

module.exports = {
    ROOT, SPEC_FILE, METHODS, loadSpec, normalisePath, routerRoutes, routerCosts, specRoutes, routerHas,
    matchPath, resolve, responseFor, validateResponse, fieldPaths, headerGet,
};
