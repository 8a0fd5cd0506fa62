#!/usr/bin/env python3
"""t/stripe/standin.py - a Stripe stand-in for tests and `make run` (Python 3 stdlib only).

Speaks Stripe's wire format for every call KalshiBook makes: form-encoded
bodies with bracketed nested keys, JSON objects with Stripe's ids and shapes,
Stripe's error objects, Idempotency-Key replay (400 idempotency_error on reuse
with other parameters, 409 while the first request is in flight; as Stripe's v1 API
saves "the status code and body of the first request ... after endpoint execution
begins", an error injected after processing is what the key replays, 500 included,
while one injected before processing saves nothing), meter-event
identifier dedupe, a hosted Checkout page a person or a test can complete, and
webhooks signed exactly like Stripe's (Stripe-Signature: t=..,v1=HMAC-SHA256
of "t.body" under the whole whsec_ secret), delivered to the app's webhook URL.

Controls (JSON in, JSON out) under /_control/ for tests:
  GET  requests | events | meter_events | meter_totals | state
  POST reset                       forget failure injection, holds, delays
  POST fail      {"status":500|429, "rate":0.5, "prefix":"/v1/..", "count":N,
                  "when":"before"|"after"|"random", "timeout":false}
                 before: refused before processing (nothing saved for the
                 Idempotency-Key); after: processed, then the error is answered
                 (the client cannot tell) and saved as the key's result, so a
                 retry with the same key gets the same error until
                 forget_idempotency; timeout: hang 30 s.
  POST outage    {"on":true|false}  every /v1 call answers 500 before processing
  POST delay     {"prefix":"/v1/billing/meter_events", "ms":5000}  after processing
  POST forget_idempotency          drop saved Idempotency-Key results (24 h passed)
  POST checkout/<cs_id>/complete   same as paying on the hosted page
  POST subscriptions/<id>/renew | cancel | fail_payment | pay
  POST hold      {"on":true}  queue webhooks instead of delivering them
  POST release   {"order":"fifo"|"reverse"}  deliver held webhooks
  POST events/<evt_id>/redeliver  {"url": ...} optional: to another app host than
                                   --webhook-url (Stripe retrying onto another host)
Every request to /v1 is recorded (method, path, params, idempotency key,
Stripe-Version, status) for assertions.

Usage: standin.py --port P --api-key sk_test_.. --webhook-secret whsec_..
                  --webhook-url https://127.0.0.1:N/billing/webhook [--cafile F]
                  [--project-price price_..] [--payg-price price_..]
"""
import argparse
import hashlib
import hmac
import json
import random
import secrets
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_VERSION = "2025-09-30.clover"
LOCK = threading.RLock()
S = {}  # the whole state, under LOCK


def reset_state(keep_objects=True):
    if not keep_objects:
        S.update(customers={}, sessions={}, subscriptions={}, items={}, invoices={},
                 products={}, prices={}, meters={}, meter_events={}, events=[],
                 requests=[], idem={}, portal={})
    S.update(fail=None, outage=False, delay=None, hold=False, held=[])


def new_id(prefix):
    return prefix + "_" + secrets.token_hex(12)


def now():
    return int(time.time())


# ---- form decoding: a[b][0][c]=v -> {"a": {"b": [{"c": "v"}]}} ----------------------

def parse_form(body):
    root = {}
    for key, value in urllib.parse.parse_qsl(body, keep_blank_values=True):
        parts = [key.split("[", 1)[0]]
        rest = key[len(parts[0]):]
        while rest.startswith("["):
            end = rest.index("]")
            parts.append(rest[1:end])
            rest = rest[end + 1:]
        node = root
        for i, p in enumerate(parts):
            last = i == len(parts) - 1
            if last:
                node[p] = value
            else:
                node = node.setdefault(p, {})
    return listify(root)


def listify(d):
    if isinstance(d, dict):
        d = {k: listify(v) for k, v in d.items()}
        if d and all(k.isdigit() for k in d):
            return [d[k] for k in sorted(d, key=int)]
    return d


def error(status, typ, message, code=None, param=None):
    e = {"type": typ, "message": message}
    if code:
        e["code"] = code
    if param:
        e["param"] = param
    e["request_log_url"] = "https://dashboard.stripe.com/test/logs/" + new_id("req")
    return status, {"error": e}


# ---- webhooks -------------------------------------------------------------------

def sign(payload, secret, t=None):
    t = now() if t is None else t
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def emit(typ, obj):
    """Create an event (under LOCK) and deliver it unless held."""
    last = S["events"][-1]["created"] if S["events"] else 0
    ev = {"id": new_id("evt"), "object": "event", "api_version": API_VERSION,
          "created": max(now(), last), "data": {"object": json.loads(json.dumps(obj))},
          "livemode": False, "pending_webhooks": 1,
          "request": {"id": None, "idempotency_key": None}, "type": typ,
          "deliveries": []}
    S["events"].append(ev)
    if S["hold"]:
        S["held"].append(ev)
    else:
        deliver(ev)
    return ev


def deliver(ev, url=None):
    body = json.dumps({k: v for k, v in ev.items() if k != "deliveries"}).encode()
    req = urllib.request.Request(url or ARGS.webhook_url, data=body, method="POST", headers={
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": sign(body, ARGS.webhook_secret),
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"})
    ctx = ssl.create_default_context(cafile=ARGS.cafile) if ARGS.cafile else None
    try:
        with urllib.request.urlopen(req, timeout=15, context=ctx) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except Exception as e:  # noqa: BLE001 - recorded for the test to see
        status = "error: " + str(e)
    ev["deliveries"].append(status)
    return status


# ---- objects --------------------------------------------------------------------

def price_obj(pid):
    p = S["prices"].get(pid)
    if p:
        return p
    metered = pid == ARGS.payg_price
    return {"id": pid, "object": "price", "active": True, "currency": "usd",
            "product": "prod_standin", "type": "recurring", "lookup_key": None,
            "recurring": {"interval": "month", "interval_count": 1,
                          "usage_type": "metered" if metered else "licensed",
                          "meter": None},
            "unit_amount": None if metered else 2900,
            "unit_amount_decimal": "0.8" if metered else "2900"}


def add_month(t):
    return t + 30 * 86400


def make_item(sub, price, start, end):
    item = {"id": new_id("si"), "object": "subscription_item", "created": now(),
            "current_period_start": start, "current_period_end": end, "metadata": {},
            "price": price_obj(price), "subscription": sub["id"]}
    if price != ARGS.payg_price:
        item["quantity"] = 1
    sub["items"]["data"].append(item)
    S["items"][item["id"]] = sub["id"]
    return item


def make_subscription(customer, prices, metadata):
    t = now()
    sub = {"id": new_id("sub"), "object": "subscription", "customer": customer,
           "status": "active", "created": t, "start_date": t, "billing_cycle_anchor": t,
           "cancel_at_period_end": False, "canceled_at": None, "ended_at": None,
           "collection_method": "charge_automatically", "currency": "usd", "livemode": False,
           "metadata": metadata or {}, "latest_invoice": None,
           "items": {"object": "list", "data": [], "has_more": False, "total_count": 0,
                     "url": "/v1/subscription_items"}}
    sub["items"]["url"] += "?subscription=" + sub["id"]
    for p in prices:
        make_item(sub, p, t, add_month(t))
    sub["items"]["total_count"] = len(sub["items"]["data"])
    S["subscriptions"][sub["id"]] = sub
    return sub


def make_invoice(sub, reason, status):
    item = sub["items"]["data"][0] if sub["items"]["data"] else None
    start = item["current_period_start"] if item else now()
    end = item["current_period_end"] if item else now()
    inv = {"id": new_id("in"), "object": "invoice", "customer": sub["customer"],
           "status": status, "billing_reason": reason, "created": now(),
           "period_start": start, "period_end": end, "livemode": False,
           "parent": {"type": "subscription_details", "quote_details": None,
                      "subscription_details": {"subscription": sub["id"],
                                               "metadata": sub["metadata"]}},
           "lines": {"object": "list", "has_more": False, "data": [
               {"id": new_id("il"), "object": "line_item",
                "period": {"start": i["current_period_start"], "end": i["current_period_end"]},
                "pricing": {"type": "price_details",
                            "price_details": {"price": i["price"]["id"],
                                              "product": i["price"]["product"]}}}
               for i in sub["items"]["data"]]}}
    S["invoices"][inv["id"]] = inv
    sub["latest_invoice"] = inv["id"]
    return inv


def complete_checkout(cs_id):
    cs = S["sessions"].get(cs_id)
    if cs is None:
        return error(404, "invalid_request_error", f"No such checkout.session: '{cs_id}'",
                     "resource_missing", "id")
    if cs["status"] != "open":
        return 400, {"error": {"type": "invalid_request_error",
                               "message": "This Checkout Session is no longer open."}}
    prices = [li["price"] for li in cs["_line_items"]]
    meta = dict(cs.get("_subscription_metadata") or {})
    sub = make_subscription(cs["customer"], prices, meta)
    inv = make_invoice(sub, "subscription_create", "paid")
    cs.update(status="complete", payment_status="paid", subscription=sub["id"],
              invoice=inv["id"])
    emit("customer.subscription.created", sub)
    emit("checkout.session.completed", public(cs))
    emit("invoice.paid", inv)
    return 200, public(cs)


def public(o):
    return {k: v for k, v in o.items() if not k.startswith("_")}


# ---- /v1 routes -------------------------------------------------------------------

def v1(method, path, p, q):
    parts = path.strip("/").split("/")[1:]  # after "v1"
    if method == "POST" and parts == ["customers"]:
        c = {"id": new_id("cus"), "object": "customer", "created": now(),
             "email": p.get("email"), "metadata": p.get("metadata", {}), "livemode": False,
             "name": p.get("name"), "invoice_settings": {"default_payment_method": None}}
        S["customers"][c["id"]] = c
        return 200, c
    if method == "GET" and len(parts) == 2 and parts[0] == "customers":
        c = S["customers"].get(parts[1])
        return (200, c) if c else error(404, "invalid_request_error",
                                        f"No such customer: '{parts[1]}'", "resource_missing", "id")
    if method == "POST" and parts == ["checkout", "sessions"]:
        cus = p.get("customer")
        if cus and cus not in S["customers"]:
            return error(400, "invalid_request_error", f"No such customer: '{cus}'",
                         "resource_missing", "customer")
        items = p.get("line_items") or []
        if p.get("mode") != "subscription" or not items:
            return error(400, "invalid_request_error", "Missing required param: line_items.",
                         "parameter_missing", "line_items")
        for li in items:
            pr = price_obj(li.get("price", ""))
            if pr["recurring"]["usage_type"] == "metered" and "quantity" in li:
                return error(400, "invalid_request_error",
                             "Quantity should not be specified where usage_type is `metered`.",
                             None, "line_items[0][quantity]")
        cs = {"id": "cs_test_" + secrets.token_hex(16), "object": "checkout.session",
              "mode": "subscription", "customer": cus, "status": "open",
              "payment_status": "unpaid", "client_reference_id": p.get("client_reference_id"),
              "metadata": p.get("metadata", {}), "success_url": p.get("success_url"),
              "cancel_url": p.get("cancel_url"), "subscription": None, "created": now(),
              "expires_at": now() + 86400, "livemode": False,
              "_line_items": items,
              "_subscription_metadata": (p.get("subscription_data") or {}).get("metadata")}
        cs["url"] = f"{ARGS.public_url}/checkout/{cs['id']}"
        S["sessions"][cs["id"]] = cs
        return 200, public(cs)
    if method == "POST" and parts == ["billing_portal", "sessions"]:
        cus = p.get("customer")
        if cus not in S["customers"]:
            return error(400, "invalid_request_error", f"No such customer: '{cus}'",
                         "resource_missing", "customer")
        ps = {"id": new_id("bps"), "object": "billing_portal.session", "customer": cus,
              "return_url": p.get("return_url"), "created": now(), "livemode": False}
        ps["url"] = f"{ARGS.public_url}/portal/{ps['id']}"
        S["portal"][ps["id"]] = ps
        return 200, ps
    if method == "POST" and parts == ["subscription_items"]:
        sub = S["subscriptions"].get(p.get("subscription", ""))
        if sub is None:
            return error(400, "invalid_request_error", "No such subscription",
                         "resource_missing", "subscription")
        if any(i["price"]["id"] == p.get("price") for i in sub["items"]["data"]):
            return error(400, "invalid_request_error",
                         "Cannot add multiple subscription items with the same price.",
                         None, "price")
        first = sub["items"]["data"][0]
        item = make_item(sub, p.get("price"), first["current_period_start"],
                         first["current_period_end"])
        emit("customer.subscription.updated", sub)
        return 200, item
    if method == "DELETE" and len(parts) == 2 and parts[0] == "subscription_items":
        sid = S["items"].pop(parts[1], None)
        if sid is None:
            return error(404, "invalid_request_error", "No such subscription item",
                         "resource_missing", "id")
        sub = S["subscriptions"][sid]
        sub["items"]["data"] = [i for i in sub["items"]["data"] if i["id"] != parts[1]]
        emit("customer.subscription.updated", sub)
        return 200, {"id": parts[1], "object": "subscription_item", "deleted": True}
    if method == "GET" and parts == ["subscriptions"]:
        subs = [s for s in S["subscriptions"].values()
                if not q.get("customer") or s["customer"] == q["customer"]]
        if q.get("status", "all") != "all":
            subs = [s for s in subs if s["status"] == q["status"]]
        elif "status" not in q:
            subs = [s for s in subs if s["status"] != "canceled"]
        subs.sort(key=lambda s: s["created"], reverse=True)
        if q.get("starting_after"):
            ids = [s["id"] for s in subs]
            if q["starting_after"] in ids:
                subs = subs[ids.index(q["starting_after"]) + 1:]
        lim = int(q.get("limit", 10))
        return 200, {"object": "list", "url": "/v1/subscriptions", "data": subs[:lim],
                     "has_more": len(subs) > lim}
    if method == "GET" and len(parts) == 2 and parts[0] == "subscriptions":
        s = S["subscriptions"].get(parts[1])
        return (200, s) if s else error(404, "invalid_request_error", "No such subscription",
                                        "resource_missing", "id")
    if method == "POST" and parts == ["billing", "meter_events"]:
        name = p.get("event_name")
        ident = p.get("identifier") or new_id("mev")
        pl = p.get("payload") or {}
        if not name or "stripe_customer_id" not in pl or "value" not in pl:
            return error(400, "invalid_request_error", "Missing required param.",
                         "parameter_missing", "payload")
        ts = int(p.get("timestamp", now()))
        if ts < now() - 35 * 86400 or ts > now() + 300:
            return error(400, "invalid_request_error",
                         "Timestamp must be within the past 35 calendar days or up to 5 "
                         "minutes in the future.", "timestamp_out_of_range", "timestamp")
        if ident in S["meter_events"]:
            return error(400, "invalid_request_error",
                         f"An event already exists with identifier {ident}.",
                         "resource_already_exists", "identifier")
        ev = {"object": "billing.meter_event", "created": now(), "event_name": name,
              "identifier": ident, "livemode": False, "payload": pl, "timestamp": ts}
        S["meter_events"][ident] = ev
        return 200, ev
    if method == "POST" and parts == ["products"]:
        pid = p.get("id") or new_id("prod")
        if pid in S["products"]:
            return error(400, "invalid_request_error", "Product already exists.",
                         "resource_already_exists", "id")
        S["products"][pid] = {"id": pid, "object": "product", "name": p.get("name"),
                              "active": True, "created": now(), "livemode": False}
        return 200, S["products"][pid]
    if method == "GET" and len(parts) == 2 and parts[0] == "products":
        pr = S["products"].get(parts[1])
        return (200, pr) if pr else error(404, "invalid_request_error", "No such product",
                                          "resource_missing", "id")
    if method == "POST" and parts == ["prices"]:
        rec = p.get("recurring") or {}
        pr = {"id": new_id("price"), "object": "price", "active": True, "product": p.get("product"),
              "currency": p.get("currency"), "lookup_key": p.get("lookup_key"),
              "type": "recurring" if rec else "one_time", "created": now(), "livemode": False,
              "unit_amount": int(p["unit_amount"]) if "unit_amount" in p else None,
              "unit_amount_decimal": p.get("unit_amount_decimal", p.get("unit_amount")),
              "recurring": {"interval": rec.get("interval"), "interval_count": 1,
                            "usage_type": rec.get("usage_type", "licensed"),
                            "meter": rec.get("meter")} if rec else None}
        S["prices"][pr["id"]] = pr
        return 200, pr
    if method == "GET" and parts == ["prices"]:
        keys = q.get("lookup_keys[0]") or q.get("lookup_keys[]")
        data = [x for x in S["prices"].values() if not keys or x["lookup_key"] == keys]
        return 200, {"object": "list", "data": data, "has_more": False, "url": "/v1/prices"}
    if method == "POST" and parts == ["billing", "meters"]:
        m = {"id": "mtr_" + secrets.token_hex(12), "object": "billing.meter",
             "display_name": p.get("display_name"), "event_name": p.get("event_name"),
             "status": "active", "default_aggregation": p.get("default_aggregation"),
             "customer_mapping": p.get("customer_mapping"),
             "value_settings": p.get("value_settings"), "created": now(), "livemode": False}
        S["meters"][m["id"]] = m
        return 200, m
    if method == "GET" and parts == ["billing", "meters"]:
        return 200, {"object": "list", "data": list(S["meters"].values()), "has_more": False,
                     "url": "/v1/billing/meters"}
    return error(404, "invalid_request_error", f"Unrecognized request URL ({method}: {path}).")


# ---- controls -----------------------------------------------------------------------

def control(method, path, body):
    parts = path.strip("/").split("/")[1:]
    if method == "GET" and parts == ["requests"]:
        return 200, S["requests"]
    if method == "GET" and parts == ["events"]:
        return 200, S["events"]
    if method == "GET" and parts == ["meter_events"]:
        return 200, list(S["meter_events"].values())
    if method == "GET" and parts == ["meter_totals"]:
        tot = {}
        for e in S["meter_events"].values():
            c = e["payload"]["stripe_customer_id"]
            tot[c] = tot.get(c, 0) + int(e["payload"]["value"])
        return 200, tot
    if method == "GET" and parts == ["state"]:
        return 200, {k: S[k] for k in ("customers", "subscriptions", "invoices", "prices",
                                       "products", "meters")}
    if method != "POST":
        return 404, {"error": "no such control"}
    if parts == ["reset"]:
        reset_state(keep_objects=not body.get("all"))
        return 200, {"ok": True}
    if parts == ["forget_idempotency"]:  # as if Stripe's 24 h key window had passed
        S["idem"].clear()
        return 200, {"ok": True}
    if parts == ["fail"]:
        S["fail"] = body
        return 200, {"ok": True}
    if parts == ["outage"]:
        S["outage"] = bool(body.get("on", True))
        return 200, {"ok": True}
    if parts == ["delay"]:
        S["delay"] = body
        return 200, {"ok": True}
    if parts == ["hold"]:
        S["hold"] = bool(body.get("on", True))
        return 200, {"ok": True}
    if parts == ["release"]:
        held, S["held"] = S["held"], []
        if body.get("order") == "reverse":
            held.reverse()
        return 200, {"delivered": [deliver(e) for e in held]}
    if len(parts) == 3 and parts[0] == "events" and parts[2] == "redeliver":
        ev = next((e for e in S["events"] if e["id"] == parts[1]), None)
        url = body.get("url")
        if url is not None and not (isinstance(url, str) and url.startswith("https://127.0.0.1:")):
            return 400, {"error": "url must be https://127.0.0.1:PORT/..."}
        return (200, {"status": deliver(ev, url)}) if ev else (404, {"error": "no such event"})
    if len(parts) == 3 and parts[0] == "checkout" and parts[2] == "complete":
        return complete_checkout(parts[1])
    if len(parts) == 3 and parts[0] == "subscriptions":
        sub = S["subscriptions"].get(parts[1])
        if sub is None:
            return 404, {"error": "no such subscription"}
        act = parts[2]
        if act == "renew":
            for i in sub["items"]["data"]:
                i["current_period_start"] = i["current_period_end"]
                i["current_period_end"] = add_month(i["current_period_start"])
            sub["status"] = "active"
            inv = make_invoice(sub, "subscription_cycle", "paid")
            emit("customer.subscription.updated", sub)
            emit("invoice.paid", inv)
        elif act == "cancel":
            sub.update(status="canceled", canceled_at=now(), ended_at=now())
            emit("customer.subscription.deleted", sub)
        elif act == "fail_payment":
            inv = make_invoice(sub, "subscription_cycle", "open")
            sub["status"] = "past_due"
            emit("invoice.payment_failed", inv)
            emit("customer.subscription.updated", sub)
        elif act == "pay":
            inv = make_invoice(sub, "subscription_cycle", "paid")
            sub["status"] = "active"
            emit("invoice.paid", inv)
            emit("customer.subscription.updated", sub)
        else:
            return 404, {"error": "no such action"}
        return 200, sub
    return 404, {"error": "no such control"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("standin: " + (fmt % args) + "\n")

    def send(self, status, obj, extra=None, html=None):
        body = html.encode() if html is not None else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if html is not None else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Request-Id", new_id("req"))
        self.send_header("Stripe-Version", API_VERSION)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")

    def route(self, method):
        url = urllib.parse.urlsplit(self.path)
        raw = self.body()
        if url.path.startswith("/_control/"):
            try:
                b = json.loads(raw or b"{}")
            except ValueError:
                b = {}
            with LOCK:
                status, obj = control(method, url.path, b)
            return self.send(status, obj)
        if url.path.startswith("/checkout/"):
            cs_id = url.path.split("/")[2]
            if method == "POST":
                with LOCK:
                    status, obj = complete_checkout(cs_id)
                target = obj.get("success_url") if status == 200 else None
                if target:
                    self.send_response(303)
                    self.send_header("Location", target)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                return self.send(status, obj)
            return self.send(200, None, html=(
                "<!doctype html><title>Stripe stand-in checkout</title>"
                f"<h1>Test checkout {cs_id}</h1><p>No money moves here.</p>"
                f"<form method=post action=/checkout/{cs_id}><button>Pay (test)</button></form>"))
        if url.path.startswith("/portal/"):
            return self.send(200, None, html="<!doctype html><h1>Billing portal (stand-in)</h1>")
        if not url.path.startswith("/v1/"):
            return self.send(*error(404, "invalid_request_error", "Unrecognized request URL."))
        return self.api(method, url, raw)

    def api(self, method, url, raw):
        q = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        text = raw.decode("utf-8", "replace")
        rec = {"method": method, "path": url.path, "query": q, "params": parse_form(text),
               "idempotency_key": self.headers.get("Idempotency-Key"),
               "stripe_version": self.headers.get("Stripe-Version"), "time": time.time()}
        auth = self.headers.get("Authorization", "")
        with LOCK:
            S["requests"].append(rec)
            fail = S["fail"]
            inject = None
            hang = False
            if S["outage"]:
                inject = "before"
            elif fail and url.path.startswith(fail.get("prefix", "/v1/")) and \
                    fail.get("count", 1) != 0 and random.random() < float(fail.get("rate", 1)):
                inject = fail.get("when", "before")
                if inject == "random":
                    inject = random.choice(["before", "after"])
                if "count" in fail:
                    fail["count"] -= 1
                hang = bool(fail.get("timeout"))
            delay = S["delay"]
        if hang:
            time.sleep(30)  # longer than any client timeout; then carry on as Stripe would
            inject = None
        if auth != "Bearer " + ARGS.api_key:
            rec["status"] = 401
            return self.send(*error(401, "invalid_request_error",
                                    "Invalid API Key provided: sk_test_****"))
        if inject == "before":
            return self.injected(rec, None if S["outage"] else fail)
        status, obj, hdr = self.process(method, url, text, rec)
        if delay and url.path.startswith(delay.get("prefix", "/v1/")):
            time.sleep(float(delay.get("ms", 0)) / 1000)
        if inject == "after":
            return self.injected(rec, fail, saved_as=rec.get("idem_saved"))
        rec["status"] = status
        return self.send(status, obj, hdr)

    def injected(self, rec, fail, saved_as=None):
        """Answer the injected error; saved_as: the Idempotency-Key whose first execution this
        was, which then replays this error (Stripe saves whatever the first request got)."""
        st = int((fail or {}).get("status", 500))
        rec["status"] = st
        if st == 429:
            status, obj = error(429, "invalid_request_error", "Too many requests.", "rate_limit")
            hdr = {"Stripe-Should-Retry": "true"}
        else:
            status, obj = error(st, "api_error", "An unknown error occurred (injected).")
            hdr = {}
        if saved_as:
            with LOCK:
                S["idem"][saved_as].update(status=status, obj=obj)
        return self.send(status, obj, hdr)

    def process(self, method, url, text, rec):
        key = rec["idempotency_key"]
        fp = hashlib.sha256(f"{method} {url.path}\n{text}".encode()).hexdigest()
        with LOCK:
            if method == "POST" and key:
                prev = S["idem"].get(key)
                if prev is not None:
                    if prev["fp"] != fp:
                        return (*error(400, "idempotency_error",
                                       "Keys for idempotent requests can only be used with the "
                                       "same parameters they were first used with. Try using a "
                                       "key other than '" + key + "' if you meant to execute a "
                                       "different request."), {})
                    rec["replayed"] = True
                    return prev["status"], prev["obj"], {"Idempotent-Replayed": "true"}
            status, obj = v1(method, url.path, parse_form(text),
                             dict(urllib.parse.parse_qsl(url.query)))
            if method == "POST" and key:
                S["idem"][key] = {"fp": fp, "status": status, "obj": obj}
                rec["idem_saved"] = key
        return status, obj, {}


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--webhook-secret", required=True)
    ap.add_argument("--webhook-url", required=True)
    ap.add_argument("--cafile")
    ap.add_argument("--project-price", default="price_standin_project")
    ap.add_argument("--payg-price", default="price_standin_payg")
    ARGS = ap.parse_args()
    ARGS.public_url = f"http://127.0.0.1:{ARGS.port}"
    reset_state(keep_objects=False)
    srv = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    srv.daemon_threads = True
    sys.stderr.write(f"standin: listening on {ARGS.public_url}\n")
    sys.stderr.flush()
    srv.serve_forever()


ARGS = None
if __name__ == "__main__":
    main()
