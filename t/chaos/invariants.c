/* invariants.c - after the load: drain the usage outbox, then check and print every money
 * invariant against the clients' view, the database and the Stripe stand-in. */
#include "chaos.h"
#include "kb_banned.h"

/* ---- invariants ------------------------------------------------------------------------ */

/* Σ credits the app logged as not refunded ("unable to refund N credits"): charges that
 * stand although the answer was an error (the refund itself hit the dead database). */
static long
log_refund_failures(long *lines)
{
    char p[512], line[4096];
    snprintf(p, sizeof(p), "%s/app.log", stack_dir);
    FILE *f = fopen(p, "r");
    long sum = 0;
    *lines = 0;
    while (f && fgets(line, sizeof(line), f)) {
        const char *m = strstr(line, "unable to refund ");
        if (m) {
            (*lines)++;
            sum += strtol(m + 17, NULL, 10);
        }
    }
    if (f)
        fclose(f);
    return sum;
}

int violations;

static void
verdict(bool ok, const char *name, const char *detail)
{
    printf("%-4s %s: %s\n", ok ? "ok" : "FAIL", name, detail);
    if (!ok)
        violations++;
}

long
used_of(PGconn *c, const account *a)
{
    const char *p[] = {a->user_id};
    return sqll(c, "SELECT credits_used FROM billing_accounts WHERE user_id = $1::uuid", 1, p);
}

/* Faults off; the 500s the stand-in saved under their Idempotency-Keys (Stripe's rule) are
 * still replayed, so this also proves the reporter gets past them (a fresh key on a replayed
 * 5xx; the identifier keeps the event counted once). */
static void
drain(PGconn *c)
{
    stand_in("reset", "{}");
    long t0 = now_ms();
    long left = -1;
    while (now_ms() - t0 < 90000) {
        left = sqll(c,
                    "SELECT count(*) FROM usage_outbox WHERE reported_at IS NULL"
                    " AND flagged_at IS NULL",
                    0, NULL);
        if (left == 0)
            break;
        pid_t p = reporter_spawn();
        waitpid(p, NULL, 0);
        sleep_ms(500);
    }
    printf("drain: outbox empty after %ld ms (unreported rows left: %ld)\n", now_ms() - t0, left);
}

static long
json_total(const char *json, const char *cus)
{
    /* {"cus_x": 12, ...} from meter_totals */
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", cus);
    const char *p = strstr(json, pat);
    return p ? strtol(p + strlen(pat), NULL, 10) : 0;
}

static char *
meter_totals(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "curl -s --max-time 20 '%s/_control/meter_totals'", stripe_url);
    FILE *f = popen(cmd, "r");
    static char buf[1 << 16];
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        pclose(f);
    return buf;
}

void
check(PGconn *c, long elapsed)
{
    char d[512];
    printf("\n== chaos: %ld requests from %s clients in %.1f s: 2xx %ld, 4xx %ld, 5xx %ld, "
           "transport errors %ld\n",
           total_req, getenv("CHAOS_CLIENTS") ? getenv("CHAOS_CLIENTS") : "?", elapsed / 1000.0,
           status_hist[2], status_hist[4], status_hist[5], transport_err);
    printf("== faults (%d):\n", nfault);
    long worst = 0;
    int slow = 0;
    for (int i = 0; i < nfault; i++) {
        printf("   %-38s lasted %5ld ms, answering again after %5ld ms, metered 5xx %ld\n",
               faults[i].name, faults[i].end_ms - faults[i].start_ms, faults[i].recover_ms,
               faults[i].e503);
        if (faults[i].recover_ms < 0 || faults[i].recover_ms > 5000)
            slow++;
        if (faults[i].recover_ms > worst)
            worst = faults[i].recover_ms;
    }
    drain(c);
    printf("== invariants\n");

    /* 1 + 3: Σ 2xx costs = credits_used growth, per account. */
    long sum_ok = 0, sum_growth = 0, bad = 0, err_charged = 0;
    for (int i = 0; i <= NACC; i++) {
        account *a = &acc[i];
        a->used_after = used_of(c, a);
        long g = a->used_after - a->used_before;
        sum_ok += a->ok_cost;
        sum_growth += g;
        err_charged += a->err_charged;
        if (g != a->ok_cost) {
            bad++;
            printf("     account %s (%s): credits_used grew %ld, 2xx answers cost %ld "
                   "(diff %+ld; %ld errors)\n",
                   a->user_id, a->kind, g, (long)a->ok_cost, g - a->ok_cost, (long)a->err_n);
        }
    }
    snprintf(d, sizeof(d), "Σ 2xx X-Credits-Cost %ld, Σ credits_used growth %ld, accounts off %ld",
             sum_ok, sum_growth, bad);
    verdict(bad == 0, "charged = answered (per account)", d);
    /* A host alone sends most charges with their commit in one round trip (migration
     * 0028), which leaves charge_xid in the account row: the faults hit that path too. */
    long one_trip = sqll(c, "SELECT count(*) FROM billing_accounts WHERE charge_xid IS NOT NULL", 0,
                         NULL);
    if (nhosts == 1) {
        snprintf(d, sizeof(d), "%ld accounts charged that way", one_trip);
        verdict(one_trip > 0, "one-round-trip charges among them", d);
    }
    if (sum_growth != sum_ok) {
        long lines, unrefunded = log_refund_failures(&lines);
        printf("     of the %+ld credits charged to error answers: %ld credits in %ld requests "
               "whose refund failed (app.log 'unable to refund': the data query and then the "
               "refund hit the stopped database), %+ld credits in-doubt (charged without a logged "
               "refund failure: the meter statement committed but its reply was lost with the "
               "connection, or the worker was SIGKILLed after charging; the client got 5xx)\n",
               sum_growth - sum_ok, unrefunded, lines, sum_growth - sum_ok - unrefunded);
        printf("     faults with metered 5xx:");
        for (int i = 0; i < nfault; i++)
            if (faults[i].e503 > 0)
                printf(" [%s: %ld]", faults[i].name, faults[i].e503);
        printf("\n");
    }
    snprintf(d, sizeof(d), "%ld error answers carried X-Credits-Cost > 0", err_charged);
    verdict(err_charged == 0, "errors cost 0", d);

    /* 2: no account without PAYG over its total; capped PAYG within total + cap. */
    long over = 0;
    for (int i = 0; i <= NACC; i++) {
        account *a = &acc[i];
        if ((!a->payg && a->used_after > a->total) ||
            (a->cap >= 0 && a->used_after > a->total + a->cap)) {
            over++;
            printf("     account %s (%s): used %ld of %ld (cap %ld)\n", a->user_id, a->kind,
                   a->used_after, a->total, a->cap);
        }
    }
    snprintf(d, sizeof(d), "%ld accounts over their limit", over);
    verdict(over == 0, "no account over its total (or total + cap)", d);

    /* 4: stand-in meter totals = Σ outbox overage, per customer; all reported. */
    char *tot = meter_totals();
    long s_stand = 0, s_outbox = 0, s_overage = 0, cus_bad = 0;
    for (int i = 0; i < NACC; i++) {
        account *a = &acc[i];
        if (!a->payg)
            continue;
        const char *p[] = {a->user_id};
        long ob = sqll(c,
                       "SELECT coalesce(sum(credits),0) FROM usage_outbox"
                       " WHERE user_id = $1::uuid",
                       1, p);
        long st = json_total(tot, a->cus);
        long ov = a->used_after > a->total ? a->used_after - a->total : 0;
        s_stand += st;
        s_outbox += ob;
        s_overage += ov;
        if (st != ob) {
            cus_bad++;
            printf("     %s: stand-in %ld, outbox %ld, overage %ld\n", a->cus, st, ob, ov);
        }
    }
    long unrep = sqll(c, "SELECT count(*) FROM usage_outbox WHERE reported_at IS NULL", 0, NULL);
    long flagged = sqll(c, "SELECT count(*) FROM usage_outbox WHERE flagged_at IS NOT NULL", 0,
                        NULL);
    snprintf(d, sizeof(d),
             "stand-in Σ %ld, outbox Σ %ld (overage by credits_used %ld), customers off %ld, "
             "unreported rows %ld, flagged %ld",
             s_stand, s_outbox, s_overage, cus_bad, unrep, flagged);
    verdict(cus_bad == 0 && unrep == 0 && s_stand == s_outbox, "meter events = outbox overage", d);

    /* 6: api_key_usage per key = Σ 2xx costs per key. */
    long ku_bad = 0, s_ku = 0;
    for (int i = 0; i <= NACC; i++) {
        account *a = &acc[i];
        const char *p[] = {a->key_id};
        long ku = sqll(c,
                       "SELECT coalesce(sum(credits_used),0) FROM api_key_usage"
                       " WHERE api_key_id = $1::uuid",
                       1, p);
        s_ku += ku;
        if (ku != a->ok_cost) {
            ku_bad++;
            printf("     key %s (%s): api_key_usage %ld, 2xx costs %ld\n", a->key_id, a->kind, ku,
                   (long)a->ok_cost);
        }
    }
    snprintf(d, sizeof(d), "Σ api_key_usage %ld, Σ 2xx costs %ld, keys off %ld", s_ku, sum_ok,
             ku_bad);
    verdict(ku_bad == 0, "no 2xx lost its usage (per key)", d);

    /* 5: one Stripe customer per user (subscribers through Checkout, webhooks reordered). */
    char url[512];
    long st;
    snprintf(url, sizeof(url), "%s/_control/state", stripe_url);
    cJSON *state = http_json("GET", url, NULL, NULL, &st);
    const cJSON *custs = cJSON_GetObjectItemCaseSensitive(state, "customers");
    long cus_viol = 0, tried = 0, project = 0;
    for (int i = 0; i < NSUB; i++) {
        if (!subs[i].checkout_ok)
            continue;
        tried++;
        int n = 0;
        const char *cid = NULL;
        const cJSON *cu;
        cJSON_ArrayForEach(cu, custs) {
            const cJSON *em = cJSON_GetObjectItemCaseSensitive(cu, "email");
            if (cJSON_IsString(em) && strcmp(em->valuestring, subs[i].email) == 0) {
                n++;
                cid = cu->string;
            }
        }
        const char *p[] = {subs[i].email};
        char *dbc = sqlv(c,
                         "SELECT b.stripe_customer_id FROM billing_accounts b JOIN users u"
                         " ON u.id = b.user_id WHERE u.email = $1",
                         1, p);
        char *tier = sqlv(c,
                          "SELECT b.tier FROM billing_accounts b JOIN users u"
                          " ON u.id = b.user_id WHERE u.email = $1",
                          1, p);
        if (tier && strcmp(tier, "project") == 0)
            project++;
        if (n != 1 || dbc == NULL || cid == NULL || strcmp(dbc, cid) != 0) {
            cus_viol++;
            printf("     %s: %d customers at the stand-in, billing_accounts says %s\n",
                   subs[i].email, n, dbc ? dbc : "(none)");
        }
        free(dbc);
        free(tier);
    }
    cJSON_Delete(state);
    snprintf(d, sizeof(d), "%ld users through Checkout, %ld with != 1 customer; %ld on project",
             tried, cus_viol, project);
    verdict(cus_viol == 0 && tried > 0, "one Stripe customer per user", d);

    /* 8: every webhook the stand-in sent was recorded once (stripe_events is keyed by the
     * event id), though its retries went to every host: each delivery answered 2xx, and an
     * event delivered several times is one row. */
    snprintf(url, sizeof(url), "%s/_control/events", stripe_url);
    cJSON *evs = http_json("GET", url, NULL, NULL, &st);
    long nev = 0, multi = 0, ev_bad = 0;
    const cJSON *ev;
    cJSON_ArrayForEach(ev, evs) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(ev, "id");
        const cJSON *dl = cJSON_GetObjectItemCaseSensitive(ev, "deliveries");
        if (!cJSON_IsString(id))
            continue;
        nev++;
        int n = cJSON_GetArraySize(dl), ok2xx = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, dl)
            ok2xx += cJSON_IsNumber(x) && x->valueint / 100 == 2;
        if (n > 1)
            multi++;
        const char *p[] = {id->valuestring};
        long rows = sqll(c, "SELECT count(*) FROM stripe_events WHERE id = $1", 1, p);
        if (rows != 1 || ok2xx != n) {
            ev_bad++;
            printf("     event %s: %d deliveries (%d 2xx), %ld rows\n", id->valuestring, n, ok2xx,
                   rows);
        }
    }
    cJSON_Delete(evs);
    snprintf(d, sizeof(d), "%ld events, %ld delivered more than once (to %d hosts), %ld off", nev,
             multi, nhosts, ev_bad);
    verdict(ev_bad == 0 && nev > 0, "every webhook applied once", d);

    snprintf(d, sizeof(d), "%d faults, worst %ld ms, %d over 5000 ms", nfault, worst, slow);
    verdict(slow == 0, "answering within 5 s of each fault", d);
}

/* ---- rate limits across hosts ------------------------------------------------------------ */

#define RL_LIMIT 20
#define RL_EXTRA 10
#define RL_THREADS 6

typedef struct rl_run {
    account *a;
    int t;
    long ok, limited, other;
} rl_run;

static void *
rl_client(void *arg)
{
    rl_run *r = arg;
    CURL *cu = curl_easy_init();
    for (int i = 0; i < (RL_LIMIT + RL_EXTRA) / RL_THREADS; i++) {
        long cost;
        /* Alternate the hosts: each thread's requests are split over both. */
        long st = req_on(cu, (r->t + i) % nhosts, r->a, 1, &cost);
        if (st >= 200 && st < 300)
            r->ok++;
        else if (st == 429)
            r->limited++;
        else
            r->other++;
    }
    curl_easy_cleanup(cu);
    return NULL;
}

void
check_rate_limit_across_hosts(PGconn *c)
{
    char d[256];
    account *a = calloc(1, sizeof(*a));
    account_new(c, a, "project");
    char lim[16];
    snprintf(lim, sizeof(lim), "%d", RL_LIMIT);
    const char *p[] = {a->user_id, lim};
    sqll(c,
         "UPDATE billing_accounts SET rpm_override = $2::int WHERE user_id = $1::uuid"
         " RETURNING 1",
         2, p);
    long ok = 0, limited = 0, other = 0;
    bool same_minute = false;
    for (int attempt = 0; attempt < 3 && !same_minute; attempt++) {
        /* Start well inside a minute of the database's clock (the window's clock). */
        long t0 = now_ms();
        while (sqll(c, "SELECT extract(second FROM kb_now())::int", 0, NULL) > 40 &&
               now_ms() - t0 < 30000)
            sleep_ms(200);
        char *m0 = sqlv(c, "SELECT date_trunc('minute', kb_now())::text", 0, NULL);
        rl_run runs[RL_THREADS];
        pthread_t th[RL_THREADS];
        for (int i = 0; i < RL_THREADS; i++) {
            runs[i] = (rl_run){a, i, 0, 0, 0};
            pthread_create(&th[i], NULL, rl_client, &runs[i]);
        }
        ok = limited = other = 0;
        for (int i = 0; i < RL_THREADS; i++) {
            pthread_join(th[i], NULL);
            ok += runs[i].ok;
            limited += runs[i].limited;
            other += runs[i].other;
        }
        char *m1 = sqlv(c, "SELECT date_trunc('minute', kb_now())::text", 0, NULL);
        same_minute = m0 && m1 && strcmp(m0, m1) == 0;
        free(m0);
        free(m1);
        if (!same_minute) {
            /* The burst straddled a minute: a fresh account for the next try. */
            account_new(c, a, "project");
            const char *q[] = {a->user_id, lim};
            sqll(c,
                 "UPDATE billing_accounts SET rpm_override = $2::int WHERE user_id = $1::uuid"
                 " RETURNING 1",
                 2, q);
        }
    }
    snprintf(d, sizeof(d),
             "%d requests over %d hosts in one minute, limit %d: %ld passed, %ld "
             "429, %ld other",
             RL_LIMIT + RL_EXTRA, nhosts, RL_LIMIT, ok, limited, other);
    printf("== rate limit across hosts\n");
    verdict(same_minute && ok == RL_LIMIT && limited == RL_EXTRA && other == 0,
            "rate limit exact across hosts", d);
    free(a);
}

/* ---- the collector's part (two hosts: one collector each) ------------------------------- */

void
check_collector(const char *script)
{
    char cmd[1024], line[4096], name[64];
    snprintf(cmd, sizeof(cmd), "%s %s", script, stack_dir);
    printf("== collector (one per host, leading and standby; t/chaos/collector.sh)\n");
    fflush(NULL); /* the child must not flush our buffered output again */
    long t0 = now_ms();
    FILE *p = popen(cmd, "r");
    if (p == NULL) {
        verdict(false, "collector checks", "t/chaos/collector.sh did not start");
        return;
    }
    int fails = 0, lines = 0;
    while (fgets(line, sizeof(line), p)) {
        line[strcspn(line, "\n")] = '\0';
        bool ok = strncmp(line, "ok ", 3) == 0, fail = strncmp(line, "FAIL ", 5) == 0;
        if (!ok && !fail) {
            printf("%s\n", line);
            continue;
        }
        /* "ok|FAIL NAME detail": one invariant each. */
        const char *s = line + strcspn(line, " ");
        s += strspn(s, " ");
        size_t n = strcspn(s, " ");
        snprintf(name, sizeof(name), "collector %.*s", (int)n, s);
        s += n;
        s += strspn(s, " ");
        verdict(ok, name, s);
        lines++;
        fails += fail;
    }
    int rc = pclose(p);
    if (lines == 0 || (rc != 0 && fails == 0))
        verdict(false, "collector checks", "t/chaos/collector.sh ended without its verdict");
    printf("     (the collector's checks took %.1f s)\n", (double)(now_ms() - t0) / 1000.0);
}
