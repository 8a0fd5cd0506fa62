/* router.c - method + path matching with one-segment parameters. */
#include "app.h"

#include <stdio.h>
#include <string.h>

#include "kb_banned.h"

#define MAX_SEGMENTS 16

/*
 * Split a raw path into percent-decoded segments; false when no route could
 * have this shape (no leading '/', too many segments). A segment that does not
 * decode (kb_str_unescape: a bad escape, NUL, bytes that are not UTF-8) is
 * kept as the null string: it matches no literal, and a {param} it would fill
 * makes the match KB_MATCH_BAD_PARAM, so it never reaches a handler.
 */
static bool
split_path(kb_arena *a, kb_str path, kb_str *segs, size_t *nsegs)
{
    if (path.len == 0 || path.p[0] != '/')
        return false;
    size_t n = 0, i = 1;
    for (;;) {
        size_t end = i;
        while (end < path.len && path.p[end] != '/')
            end++;
        if (n == MAX_SEGMENTS)
            return false;
        kb_str raw = {path.p + i, end - i};
        if (!kb_str_unescape(a, raw, false, &segs[n]))
            segs[n] = KB_STR_NULL;
        n++;
        if (end >= path.len)
            break;
        i = end + 1;
    }
    *nsegs = n;
    return true;
}

/* Does pattern match segs? Fills params when it does (a segment that did not
 * decode fills its {param} with the null string). */
static bool
pattern_match(const char *pattern, const kb_str *segs, size_t nsegs, kb_str *params,
              size_t *nparams)
{
    const char *p = pattern + 1;
    size_t k = 0, np = 0;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (k == nsegs)
            return false;
        if (len >= 2 && p[0] == '{' && p[len - 1] == '}') {
            if ((segs[k].p != NULL && segs[k].len == 0) || np == KB_MAX_PATH_PARAMS)
                return false;
            params[np++] = segs[k];
        } else if (segs[k].p == NULL || segs[k].len != len || memcmp(segs[k].p, p, len) != 0) {
            return false;
        }
        k++;
        if (end == NULL)
            break;
        p = end + 1;
    }
    if (k != nsegs)
        return false;
    *nparams = np;
    return true;
}

kb_match
kb_router_match(const kb_route *routes, size_t n, kb_req *req, const kb_route **route, char *allow,
                size_t allowsz)
{
    kb_str segs[MAX_SEGMENTS];
    size_t nsegs = 0;
    bool path_known = false;
    size_t alen = 0;

    if (allowsz)
        allow[0] = '\0';
    if (!split_path(req->arena, req->path, segs, &nsegs))
        return KB_MATCH_NO_PATH;
    for (size_t i = 0; i < n; i++) {
        kb_str params[KB_MAX_PATH_PARAMS];
        size_t np = 0;
        if (!pattern_match(routes[i].pattern, segs, nsegs, params, &np))
            continue;
        if (kb_str_eq(req->method, routes[i].method)) {
            memcpy(req->params, params, sizeof(params[0]) * np);
            req->nparams = np;
            *route = &routes[i];
            for (size_t k = 0; k < np; k++)
                if (params[k].p == NULL)
                    return KB_MATCH_BAD_PARAM;
            return KB_MATCH_OK;
        }
        path_known = true;
        /* Allow lists each method once, in table order. */
        if (strstr(allow, routes[i].method) == NULL) {
            int w = snprintf(allow + alen, allowsz - alen, "%s%s", alen ? ", " : "",
                             routes[i].method);
            if (w > 0 && (size_t)w < allowsz - alen)
                alen += (size_t)w;
        }
    }
    return path_known ? KB_MATCH_BAD_METHOD : KB_MATCH_NO_PATH;
}

bool
kb_router_param_name(const char *pattern, size_t k, char *out, size_t outsz)
{
    for (const char *p = strchr(pattern, '{'); p != NULL; p = strchr(p + 1, '{')) {
        const char *end = strchr(p, '}');
        if (end == NULL)
            break;
        if (k-- == 0) {
            int w = snprintf(out, outsz, "%.*s", (int)(end - p - 1), p + 1);
            return w >= 0 && (size_t)w < outsz;
        }
    }
    return false;
}
