#!/usr/bin/env python3
"""make-fixture.py DEMO_JSONL - old-answers.jsonl on stdout (see make-fixture.sh).

Asks the running stack (KB_BASE_URL, KB_CA_CERT, KB_DATABASE_URL from run.env) a fixed
list of data requests about the demo set and prints one JSON object per request:
{"req": [kind, args...], "status": N, "body": "<exact body without request_id and
response_time>"}. Kinds: orderbook TICKER TS DEPTH(-1 = none); deltas/trades TICKER
START END LIMIT CURSOR(or ""); candles TICKER START END INTERVAL; markets; market
TICKER; events; event E; settlements; settlement TICKER.
"""
import hashlib, json, os, re, secrets, ssl, subprocess, sys, urllib.request
from datetime import datetime, timedelta, timezone

BASE = os.environ["KB_BASE_URL"]
CTX = ssl.create_default_context(cafile=os.environ["KB_CA_CERT"])
KEY = "kb-" + secrets.token_urlsafe(32).rstrip("=")
subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", os.environ["KB_DATABASE_URL"], "-c",
    "WITH u AS (INSERT INTO users (email, password_hash) VALUES ('fixture@example.test', 'x')"
    " RETURNING id), k AS (INSERT INTO api_keys (user_id, key_hash, key_prefix)"
    " SELECT id, '%s', '%s' FROM u RETURNING user_id)"
    " INSERT INTO billing_accounts (user_id, tier, credits_total, credits_override, rpm_override,"
    " billing_cycle_start) SELECT user_id, 'project', 100000000, 100000000, 1000000,"
    " kb_cycle_month(kb_now()) FROM k"
    % (hashlib.sha256(KEY.encode()).hexdigest(), KEY[:7])], check=True)

TAIL = re.compile(r',"request_id":"req_[0-9a-f]+"(,"response_time":[0-9.eE+-]+)?}$')


def call(method, path, body=None):
    req = urllib.request.Request(BASE + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": "Bearer " + KEY,
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=CTX) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    stripped, n = TAIL.subn("}", text)
    assert n == 1, text
    return status, stripped, json.loads(text)


def emit(req, status, body):
    print(json.dumps({"req": req, "status": status, "body": body}, separators=(",", ":")))


def iso(t):
    return t.astimezone(timezone.utc).isoformat()


lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
tickers = [l["market"]["ticker"] for l in lines if "market" in l]
delta_ms = {}
for l in lines:
    if l.get("type") == "orderbook_delta":
        delta_ms.setdefault(l["msg"]["market_ticker"], []).append(l["msg"]["ts"])
start = datetime(2026, 1, 14, tzinfo=timezone.utc)
end = start + timedelta(days=1)

for t in tickers + ["KXNOPE"]:
    instants = [start - timedelta(minutes=30)]
    instants += [start + timedelta(minutes=97 * k) for k in range(16)]
    instants += [start + timedelta(hours=3 * k) for k in range(9)]
    for ms in delta_ms.get(t, [])[::60]:
        at = datetime.fromtimestamp(ms / 1000, timezone.utc)
        instants += [at, at - timedelta(milliseconds=1)]
    for at in instants:
        s, b, _ = call("POST", "/orderbook", {"market_ticker": t, "timestamp": iso(at)})
        emit(["orderbook", t, iso(at), -1], s, b)
    for depth in (0, 1, 2):
        at = start + timedelta(hours=5, minutes=17)
        s, b, _ = call("POST", "/orderbook", {"market_ticker": t, "timestamp": iso(at),
                                               "depth": depth})
        emit(["orderbook", t, iso(at), depth], s, b)
    for kind in ("deltas", "trades"):
        for lo, hi, limit in ((start + timedelta(hours=2), start + timedelta(hours=8), 40),
                              (start + timedelta(hours=23), end + timedelta(hours=1), 1000),
                              (start + timedelta(hours=2), start + timedelta(hours=3), 4)):
            cursor = ""
            while True:
                body = {"market_ticker": t, "start_time": iso(lo), "end_time": iso(hi),
                        "limit": limit}
                if cursor:
                    body["cursor"] = cursor
                s, b, j = call("POST", "/" + kind, body)
                emit([kind, t, iso(lo), iso(hi), limit, cursor], s, b)
                cursor = j.get("next_cursor") or ""
                if not cursor:
                    break
    for lo, hi, iv in ((start, end, "1h"), (start + timedelta(hours=1), start + timedelta(hours=3),
                                            "1m"), (start - timedelta(days=1), end, "1d")):
        q = "start_time=%s&end_time=%s&interval=%s" % (iso(lo).replace("+", "%2B"),
                                                        iso(hi).replace("+", "%2B"), iv)
        s, b, _ = call("GET", "/candles/%s?%s" % (t, q))
        emit(["candles", t, iso(lo), iso(hi), iv], s, b)
    s, b, _ = call("GET", "/markets/" + t)
    emit(["market", t], s, b)
    s, b, _ = call("GET", "/settlements/" + t)
    emit(["settlement", t], s, b)

s, b, _ = call("GET", "/markets")
emit(["markets"], s, b)
s, b, j = call("GET", "/events")
emit(["events"], s, b)
for e in [x["event_ticker"] for x in j["data"]] + ["KXNOPE"]:
    s, b, _ = call("GET", "/events/" + e)
    emit(["event", e], s, b)
s, b, _ = call("GET", "/settlements")
emit(["settlements"], s, b)
