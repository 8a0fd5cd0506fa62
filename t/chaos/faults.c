/* faults.c - the fault thread: worker and reporter kills, Postgres restarts, Stripe
 * stand-in failures, held and reordered webhooks; how long each took to recover. */
#include "chaos.h"
#include "kb_banned.h"

/* ---- faults ---------------------------------------------------------------------------- */

/* t/stack.sh CMD $KB_STACK_DIR [ARG], output discarded. */
static int
sh(const char *what, const char *arg)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s/t/stack.sh %s %s %s >/dev/null 2>&1", repo, what, stack_dir,
             arg ? arg : "");
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 1;
}

void
stand_in(const char *path, const char *json)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "curl -s -o /dev/null --max-time 5 -X POST -H 'Content-Type: application/json' "
             "-d '%s' '%s/_control/%s'",
             json, stripe_url, path);
    if (system(cmd) != 0)
        fprintf(stderr, "chaos: stand-in control %s failed\n", path);
}

static pid_t
master_pid(void)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/fcgi.pid", stack_dir);
    FILE *f = fopen(p, "r");
    long pid = 0;
    if (f) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return (pid_t)pid;
}

/* Children of the master: want_reporter selects kb-reporter, else the workers. */
static int
children(bool want_reporter, pid_t *out, int max)
{
    pid_t m = master_pid();
    int n = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL && n < max) {
        char p[300], buf[512];
        snprintf(p, sizeof(p), "/proc/%s/stat", e->d_name);
        FILE *f = fopen(p, "r");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[len] = '\0';
        char *rp = strrchr(buf, ')');
        char *lp = strchr(buf, '(');
        if (!rp || !lp)
            continue;
        long ppid = 0;
        char state;
        if (sscanf(rp + 2, "%c %ld", &state, &ppid) != 2 || ppid != m || state == 'Z')
            continue;
        bool rep = strncmp(lp + 1, "kb-reporter", 11) == 0;
        if (strncmp(lp + 1, "kb-host", 7) == 0)
            continue; /* the host lease keeper: killed only with its whole host */
        if (rep == want_reporter)
            out[n++] = (pid_t)strtol(e->d_name, NULL, 10);
    }
    if (d)
        closedir(d);
    return n;
}

/* Spawn `kbctl report-usage` in the background; returns its pid. */
pid_t
reporter_spawn(void)
{
    fflush(NULL); /* the child must not flush our buffered output again */
    pid_t p = fork();
    if (p == 0) {
        char path[512], logp[512];
        snprintf(path, sizeof(path), "%s/kbctl", bin_dir);
        snprintf(logp, sizeof(logp), "%s/chaos-kbctl.log", stack_dir);
        if (freopen("/dev/null", "w", stdout) == NULL || freopen(logp, "a", stderr) == NULL)
            _exit(126);
        execl(path, "kbctl", "report-usage", (char *)NULL);
        _exit(127);
    }
    return p;
}

/* ---- the hosts' collectors (CHAOS_COLLECTOR: one per host, t/chaos/run.sh) ------------- */

static size_t
on_text(char *p, size_t size, size_t n, void *arg)
{
    char *buf = arg;
    size_t have = strlen(buf), add = size * n;
    if (have + add < 8192) {
        memcpy(buf + have, p, add);
        buf[have + add] = '\0';
    }
    return size * n;
}

/* Host h (1-based) runs a collector that says it leads (its metrics port in ports.env). */
static bool
collector_leads(int h)
{
    char path[512], line[256], url[128], body[8192] = "";
    long port = 0;
    if (h == 1)
        snprintf(path, sizeof(path), "%s/ports.env", stack_dir);
    else
        snprintf(path, sizeof(path), "%s/h%d/ports.env", stack_dir, h);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof(line), f)) {
        if (strncmp(line, "KB_COLLECTOR_METRICS_PORT=", 26) == 0)
            port = strtol(line + 26, NULL, 10);
    }
    if (f)
        fclose(f);
    if (port <= 0)
        return false;
    snprintf(url, sizeof(url), "http://127.0.0.1:%ld/metrics", port);
    CURL *cu = curl_easy_init();
    curl_easy_setopt(cu, CURLOPT_URL, url);
    curl_easy_setopt(cu, CURLOPT_TIMEOUT, 2L);
    curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, on_text);
    curl_easy_setopt(cu, CURLOPT_WRITEDATA, (void *)body);
    CURLcode rc = curl_easy_perform(cu);
    curl_easy_cleanup(cu);
    return rc == CURLE_OK && strstr(body, "\nkalshibook_collector_leader 1\n") != NULL;
}

/* The host whose collector leads, when exactly one does within 10 s; else 0. */
static int
collector_leader_host(void)
{
    long t0 = now_ms();
    do {
        int lead = 0, n = 0;
        for (int h = 1; h <= nhosts; h++) {
            if (collector_leads(h)) {
                lead = h;
                n++;
            }
        }
        if (n == 1)
            return lead;
        sleep_ms(100);
    } while (now_ms() - t0 < 10000);
    return 0;
}

/* After a fault: ms until /health is 200 and a metered request by the probe is 2xx, on every
 * host. */
static long
recover(CURL *cu)
{
    long t0 = now_ms(), cost;
    int h = 0;
    bool health = false;
    while (now_ms() - t0 < 30000) {
        if (!health)
            health = req_on(cu, h, NULL, 3, &cost) == 200;
        if (health) {
            long st = req_on(cu, h, &acc[NACC], 1, &cost);
            account_note(&acc[NACC], st, cost, -1);
            if (st >= 200 && st < 300 && ++h < nhosts) {
                health = false;
                continue;
            }
            if (st >= 200 && st < 300)
                return now_ms() - t0;
        }
        sleep_ms(20);
    }
    return -1;
}

static void
fault_run(CURL *cu, int kind)
{
    if (nfault >= MAXFAULT)
        return;
    fault_rec *f = &faults[nfault];
    pid_t pids[16];
    int n;
    f->start_ms = now_ms();
    atomic_store(&active_fault, nfault);
    switch (kind) {
    case 0:
        n = children(false, pids, 16);
        snprintf(f->name, sizeof(f->name), "SIGKILL worker");
        if (n > 0)
            kill(pids[rand() % n], SIGKILL);
        sleep_ms(300);
        break;
    case 1:
    case 2:
        snprintf(f->name, sizeof(f->name), "postgres stop %s", kind == 1 ? "fast" : "immediate");
        sh("pg-stop", kind == 1 ? "fast" : "immediate");
        sleep_ms(700);
        sh("pg-start", NULL);
        break;
    case 3:
        snprintf(f->name, sizeof(f->name), "SIGKILL reporter mid-batch");
        stand_in("delay", "{\"prefix\":\"/v1/billing/meter_events\",\"ms\":400}");
        sleep_ms(1500);
        n = children(true, pids, 16);
        if (n > 0)
            kill(pids[0], SIGKILL);
        stand_in("reset", "{}");
        break;
    case 4:
    case 5:
        snprintf(f->name, sizeof(f->name), "stand-in %s rate 0.5", kind == 4 ? "500" : "429");
        stand_in("fail", kind == 4 ? "{\"status\":500,\"rate\":0.5,\"when\":\"random\"}"
                                   : "{\"status\":429,\"rate\":0.5}");
        sleep_ms(short_run ? 1000 : 2500);
        stand_in("reset", "{}");
        break;
    case 6:
        snprintf(f->name, sizeof(f->name), "stand-in timeouts");
        stand_in("fail", "{\"status\":500,\"rate\":1,\"count\":2,\"timeout\":true}");
        sleep_ms(short_run ? 1000 : 2500);
        stand_in("reset", "{}");
        break;
    case 7:
        snprintf(f->name, sizeof(f->name), "stand-in outage %d s", short_run ? 2 : 6);
        stand_in("outage", "{\"on\":true}");
        sleep_ms(short_run ? 2000 : 6000);
        stand_in("outage", "{\"on\":false}");
        break;
    case 9: {
        snprintf(f->name, sizeof(f->name), "webhooks held, reversed, redelivered");
        stand_in("hold", "{\"on\":true}");
        char url[512];
        for (int i = 0; i < NSUB; i++) {
            if (subs[i].token[0] == '\0' || subs[i].checkout_ok)
                continue;
            long st;
            snprintf(url, sizeof(url), "%s/billing/checkout", base);
            cJSON *j = http_json("POST", url, subs[i].token, "{}", &st);
            const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "checkout_url");
            const char *cs = cJSON_IsString(u) ? strstr(u->valuestring, "/checkout/") : NULL;
            if (cs) {
                char path[256];
                snprintf(path, sizeof(path), "checkout/%s/complete", cs + 10);
                stand_in(path, "{}");
                subs[i].checkout_ok = true;
            } else {
                fprintf(stderr, "chaos: checkout for %s answered %ld\n", subs[i].email, st);
            }
            cJSON_Delete(j);
        }
        stand_in("hold", "{\"on\":false}");
        stand_in("release", "{\"order\":\"reverse\"}");
        snprintf(url, sizeof(url), "%s/_control/events", stripe_url);
        long st;
        cJSON *ev = http_json("GET", url, NULL, NULL, &st);
        const cJSON *e;
        cJSON_ArrayForEach(e, ev) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
            char path[256], json[600];
            if (cJSON_IsString(id)) {
                snprintf(path, sizeof(path), "events/%s/redeliver", id->valuestring);
                stand_in(path, "{}");
                /* Stripe's retries may land on any host behind the balancer. */
                for (int h = 1; h < nhosts; h++) {
                    snprintf(json, sizeof(json), "{\"url\":\"%s/billing/webhook\"}", bases[h]);
                    stand_in(path, json);
                }
            }
        }
        cJSON_Delete(ev);
        break;
    }
    case 10:
    case 11: {
        /* A whole host dies (master, workers, reporter, lease keeper at once; its nginx
         * answers 503) and comes back: its restart takes its lease over and settles what it
         * had in flight. */
        char hs[16];
        int h = kind == 10 ? 2 : 1;
        /* The short run kills one host whole: the one whose collector leads (a Postgres
         * restart may have moved the lead), so the takeover is always exercised. */
        if (kind == 10 && short_run && getenv("CHAOS_COLLECTOR")) {
            int lead = collector_leader_host();
            if (lead > 0)
                h = lead;
        }
        snprintf(hs, sizeof(hs), "%d", h);
        snprintf(f->name, sizeof(f->name), "SIGKILL host %s whole, restart", hs);
        sh("host-kill", hs);
        sleep_ms(500);
        sh("host-app-start", hs);
        break;
    }
    case 12:
        /* Host 2 stays dead past its lease: host 1's keeper ends it and settles its charges
         * in flight; then host 2 starts again (a new life). */
        snprintf(f->name, sizeof(f->name), "SIGKILL host 2, down past its lease");
        sh("host-kill", "2");
        sleep_ms(lease_ms + 1500);
        sh("host-app-start", "2");
        break;
    case 13:
        /* The replica of the data routes stopped, rebuilt from the primary and started:
         * meanwhile data routes fall back or answer 503, never charged. */
        snprintf(f->name, sizeof(f->name), "replica stopped and resynced");
        sh("replica-resync", NULL);
        break;
    default: {
        snprintf(f->name, sizeof(f->name), "two reporters, one SIGKILLed");
        stand_in("delay", "{\"prefix\":\"/v1/billing/meter_events\",\"ms\":200}");
        pid_t a = reporter_spawn(), b = reporter_spawn();
        sleep_ms(300 + rand() % 500);
        kill(a, SIGKILL);
        waitpid(a, NULL, 0);
        /* The other one may finish; after 3 s it is killed mid-batch too. */
        long until = now_ms() + 3000;
        while (waitpid(b, NULL, WNOHANG) == 0) {
            if (now_ms() > until) {
                kill(b, SIGKILL);
                waitpid(b, NULL, 0);
                break;
            }
            sleep_ms(50);
        }
        stand_in("reset", "{}");
        break;
    }
    }
    f->end_ms = now_ms();
    f->recover_ms = recover(cu);
    atomic_store(&active_fault, -1);
    nfault++;
}

void *
fault_thread(void *arg)
{
    int rounds = *(int *)arg;
    CURL *cu = curl_easy_init();
    int kinds = nhosts > 1 ? 14 : 10;
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < kinds; k++) {
            if (short_run && k == 11)
                continue; /* host 1's kill: the same as host 2's */
            fault_run(cu, k);
            sleep_ms(300);
        }
    }
    curl_easy_cleanup(cu);
    return NULL;
}
