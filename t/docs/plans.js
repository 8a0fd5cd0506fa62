#!/usr/bin/env node
// plans.js - static/plans.json is the one source of the plans' prices and limits. The
// dashboard reads it at run time (GET /plans.json); the text documents carry generated
// copies: the "Plans" block of llms.txt, the "Tiers" table of llms-full.txt and the plans
// sentence of openapi.json's info.description. This module renders those blocks, checks
// that every document holds exactly the rendered text, that no other plan figure anywhere in
// the documents disagrees with plans.json, that the dashboard's own files hold no figure at
// all, and (given a database URL) that the tiers table charges by the same numbers.
//   node t/docs/plans.js           check, print problems, exit 1 on any
//   node t/docs/plans.js --write   rewrite the generated blocks from plans.json
// Invariants: money stays a decimal string (no floating point); the rendered text is a pure
// function of plans.json.
'use strict';
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const ROOT = path.resolve(__dirname, '..', '..');
const S = (p) => path.join(ROOT, 'static', p);

function load(file = S('plans.json')) {
    const p = JSON.parse(fs.readFileSync(file, 'utf8'));
    const errs = [];
    if (!/^\d+\.\d+$|^\d+$/.test(p.payg_price_per_credit)) errs.push('payg_price_per_credit is not a decimal string');
    const tiers = p.plans.map((x) => x.tier);
    if (JSON.stringify(tiers) !== JSON.stringify(['free', 'payg', 'project'])) errs.push(`tiers ${tiers}`);
    for (const x of p.plans) {
        if (!/^\d+(\.\d\d)?$/.test(x.price_per_month)) errs.push(`${x.tier}: price_per_month ${x.price_per_month}`);
        if (!Number.isInteger(x.credits_per_month) || x.credits_per_month <= 0) errs.push(`${x.tier}: credits_per_month`);
        if (!Number.isInteger(x.requests_per_minute) || x.requests_per_minute <= 0) errs.push(`${x.tier}: requests_per_minute`);
        if (!['none', 'metered', 'optional'].includes(x.overage)) errs.push(`${x.tier}: overage ${x.overage}`);
    }
    if (errs.length) throw new Error(`static/plans.json: ${errs.join('; ')}`);
    return p;
}

const num = (n) => n.toLocaleString('en-US');
const usd = (s) => `$${s}`;
const by = (p, tier) => p.plans.find((x) => x.tier === tier);

// llms.txt: the lines from the "Plans" header to the blank line after them.
function llmsBlock(p) {
    const lines = ['Plans (the same figures as JSON: /plans.json):'];
    for (const x of p.plans) {
        const c = num(x.credits_per_month), r = `${x.requests_per_minute} requests/minute`;
        if (x.overage === 'none') lines.push(`- ${x.name}: ${c} credits/month, ${r}, no card needed.`);
        else if (x.overage === 'metered') lines.push(`- ${x.name}: the ${c} monthly credits, then ${usd(p.payg_price_per_credit)} per overage credit; ${r}.`);
        else lines.push(`- ${x.name}: ${usd(x.price_per_month)}/month for ${c} credits/month, ${r}; with Pay-As-You-Go on, ${usd(p.payg_price_per_credit)} per credit beyond them.`);
    }
    return lines.join('\n') + '\n';
}

// llms-full.txt: the table under "### Tiers" and the sentence after it.
function fullBlock(p) {
    const rows = ['| tier | price | credits per month | rate limit |', '|---|---|---|---|'];
    for (const x of p.plans) {
        const c = num(x.credits_per_month), r = `${x.requests_per_minute} requests/minute`;
        if (x.overage === 'none') rows.push(`| ${x.name} | ${usd(x.price_per_month)}, no card | ${c} | ${r} |`);
        else if (x.overage === 'metered') rows.push(`| ${x.name} (PAYG) | ${usd(p.payg_price_per_credit)} per credit beyond the ${c} | ${c} + overage | ${r} |`);
        else rows.push(`| ${x.name} | ${usd(x.price_per_month)}/month | ${c} | ${r} |`);
    }
    const opt = p.plans.filter((x) => x.overage === 'optional')
        .map((x) => `On ${x.name} with PAYG on, credits beyond ${num(x.credits_per_month)} are billed at ${usd(p.payg_price_per_credit)} each.`);
    return rows.join('\n') + '\n\n' + opt.join('\n') + '\n';
}

// openapi.json info.description: one sentence.
function openapiSentence(p) {
    const parts = p.plans.map((x) => {
        const c = num(x.credits_per_month), r = `${x.requests_per_minute} requests/minute`;
        if (x.overage === 'none') return `**${x.name}** ${c} credits/month, ${r}, no card`;
        if (x.overage === 'metered') return `**${x.name}** ${c} credits + ${usd(p.payg_price_per_credit)} per overage credit, ${r}`;
        return `**${x.name}** ${usd(x.price_per_month)}/month for ${c} credits, ${r}`;
    });
    return `Plans (also as \`/plans.json\`): ${parts.join('; ')}.`;
}

// Where each block lives: [file, regexp matching the current block, renderer].
const BLOCKS = [
    ['llms.txt', /^Plans[^\n]*:\n(?:- [^\n]*\n)+/m, llmsBlock],
    ['llms-full.txt', /(?<=^### Tiers\n\n)\| tier \|[^]*?\n\n(?:On [^\n]*\n)+/m, fullBlock],
    ['openapi.json', /Plans(?: \([^)]*\))?: \*\*[^]*?requests\/minute\./, (p) => JSON.stringify(openapiSentence(p)).slice(1, -1)],
];

// Every plan figure that text may state, and the values plans.json allows for it.
function figureRules(p) {
    const prices = p.plans.filter((x) => x.price_per_month !== '0').map((x) => x.price_per_month);
    const credits = p.plans.map((x) => num(x.credits_per_month)).concat(p.plans.map((x) => String(x.credits_per_month)));
    const rpm = p.plans.map((x) => String(x.requests_per_minute));
    return [
        ['a monthly price', /\$(\d+(?:\.\d+)?)\s*(?:\/|per |a )month/g, prices],
        ['the price of a credit', /\$(\d+\.\d+)\s+(?:per (?:overage )?credit|each)/g, [p.payg_price_per_credit]],
        ['a rate limit', /\b(\d[\d,]*)\s+requests?\s*(?:\/|per |a )\s*minute/g, rpm],
        ['a monthly allowance', /\b(\d[\d,]*)\s+(?:monthly\s+)?credits?\s*(?:\/|per |a )\s*month/g, credits],
    ];
}

function documents() {
    const list = ['static/llms.txt', 'static/llms-full.txt', 'static/openapi.json', 'README.md'];
    const docs = path.join(ROOT, 'docs');
    if (fs.existsSync(docs)) for (const f of fs.readdirSync(docs)) if (f.endsWith('.md')) list.push(`docs/${f}`);
    return list;
}

// The dashboard's files: they read /plans.json and must not state a figure themselves.
function dashboardFiles() {
    const out = [];
    for (const dir of ['static/dashboard', 'static/assets'])
        if (fs.existsSync(path.join(ROOT, dir)))
            for (const f of fs.readdirSync(path.join(ROOT, dir))) if (/\.(html|js|css)$/.test(f)) out.push(`${dir}/${f}`);
    return out;
}

function check(p = load()) {
    const errs = [];
    for (const [f, re, render] of BLOCKS) {
        const text = fs.readFileSync(S(f), 'utf8');
        const m = re.exec(text);
        if (!m) errs.push(`static/${f}: no plans block found`);
        else if (m[0] !== render(p)) errs.push(`static/${f}: the plans block differs from static/plans.json (run node t/docs/plans.js --write)`);
    }
    const rules = figureRules(p);
    for (const f of documents()) {
        const text = fs.readFileSync(path.join(ROOT, f), 'utf8').replace(/\\n/g, ' ').replace(/\s+/g, ' ');
        for (const [what, re, allowed] of rules)
            for (const m of text.matchAll(re))
                if (!allowed.includes(m[1])) errs.push(`${f}: "${m[0]}" states ${what} that static/plans.json does not have`);
    }
    const figures = [usd(p.payg_price_per_credit), p.payg_price_per_credit]
        .concat(p.plans.filter((x) => x.price_per_month !== '0').map((x) => usd(x.price_per_month)));
    for (const f of dashboardFiles()) {
        const text = fs.readFileSync(path.join(ROOT, f), 'utf8');
        for (const fig of figures) if (text.includes(fig)) errs.push(`${f}: states ${fig} itself instead of reading /plans.json`);
        for (const [what, re] of rules) for (const m of text.matchAll(re)) errs.push(`${f}: "${m[0]}" states ${what} itself`);
    }
    return errs;
}

// The tiers table the meter charges by (db/migrations) against plans.json: each plan's row
// has its credits and rate. Other rows (an operator's custom tier, a test's) are not plans.
function checkDb(url, p = load()) {
    const out = execFileSync('psql', [url, '-X', '-q', '-A', '-t', '-F', ' ', '-c',
        'SELECT name, credits_per_cycle, requests_per_minute FROM tiers ORDER BY name'], { encoding: 'utf8' });
    const db = out.trim().split('\n').map((l) => l.split(' '));
    const errs = [];
    for (const x of p.plans) {
        const row = db.find((r) => r[0] === x.tier);
        if (!row) errs.push(`tiers has no row ${x.tier}`);
        else if (Number(row[1]) !== x.credits_per_month || Number(row[2]) !== x.requests_per_minute)
            errs.push(`tiers ${x.tier}: ${row[1]} credits, ${row[2]} rpm; plans.json ${x.credits_per_month}, ${x.requests_per_minute}`);
    }
    return errs;
}

function write(p = load()) {
    for (const [f, re, render] of BLOCKS) {
        const text = fs.readFileSync(S(f), 'utf8');
        if (!re.test(text)) throw new Error(`static/${f}: no plans block found to rewrite`);
        fs.writeFileSync(S(f), text.replace(re, () => render(p)));
    }
}

module.exports = { load, check, checkDb, write, llmsBlock, fullBlock, openapiSentence };

if (require.main === module) {
    if (process.argv[2] === '--write') write();
    const errs = check();
    for (const e of errs) console.log(e);
    process.exitCode = errs.length ? 1 : 0;
}
