#!/usr/bin/env python3
"""t/bench/visible.py - how long a live book change takes to be visible through the API.

Usage: visible.py BASE_URL CA_FILE API_KEY SECONDS TICKER...

Polls POST /deltas for the given markets in turn over one keep-alive HTTPS connection,
each time from the newest delta already seen (start_time inclusive) to a minute ahead.
Every delta seen for the first time whose exchange time (its ts, Kalshi's ts_ms) is after
the start of the run is one sample: the wall clock when the answer holding it arrived
minus that exchange time. The poll interval of a market (the round of all of them) is in
every sample, so the figures are upper bounds. Prints one JSON line: samples, polls,
p50_ms, p99_ms, max_ms, poll_ms (mean time between two polls of one market).

The stand-in stamps ts_ms with this machine's wall clock, so no clock offset enters.
"""
import http.client
import json
import ssl
import sys
import time
from datetime import datetime, timezone
from urllib.parse import urlsplit


def iso(ms):
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3] + 'Z'


def ts_ms(s):
    return datetime.fromisoformat(s).timestamp() * 1000


def main():
    base, ca, key, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    tickers = sys.argv[5:]
    u = urlsplit(base)
    ctx = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection(u.hostname, u.port or 443, context=ctx, timeout=10)
    headers = {'Authorization': 'Bearer ' + key, 'Content-Type': 'application/json'}
    t_start = time.time() * 1000
    since = {t: t_start for t in tickers}
    seen = {t: set() for t in tickers}
    samples, polls, errors = [], 0, 0
    deadline = time.time() + seconds
    while time.time() < deadline:
        for t in tickers:
            body = json.dumps({'market_ticker': t, 'start_time': iso(since[t]),
                               'end_time': iso(time.time() * 1000 + 60000), 'limit': 1000})
            conn.request('POST', '/deltas', body, headers)
            resp = conn.getresponse()
            data = resp.read()
            now = time.time() * 1000
            polls += 1
            if resp.status != 200:
                errors += 1
                continue
            for d in json.loads(data)['data']:
                ms = ts_ms(d['ts'])
                k = (d['ts'], d['seq'], d['side'], d['price_dollars'])
                if k in seen[t]:
                    continue
                if ms > since[t]:
                    since[t] = ms
                    seen[t] = set()
                seen[t].add(k)
                if ms >= t_start:
                    samples.append(now - ms)
    samples.sort()
    n = len(samples)

    def pct(p):
        return round(samples[min(n - 1, int(n * p))], 1) if n else None

    print(json.dumps({'samples': n, 'polls': polls, 'errors': errors, 'p50_ms': pct(0.5),
                      'p99_ms': pct(0.99), 'max_ms': round(samples[-1], 1) if n else None,
                      'poll_ms': round(seconds * 1000 * len(tickers) / max(polls, 1), 1)}))


if __name__ == '__main__':
    main()
