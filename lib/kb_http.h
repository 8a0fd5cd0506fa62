/* kb_http.h - request, response and per-request context shared by handlers.
 *
 * A kb_req is built by the FastCGI adapter (app/fcgi.c) or by a unit test;
 * everything in it is arena-owned or borrowed, valid until the arena reset.
 * A handler is `kb_err h(const kb_req *, kb_ctx *)`: it fills ctx->resp and
 * returns KB_OK, or records an error with kb_fail() and returns its code; the
 * dispatcher then writes the API.md §3.1 envelope. No FastCGI in here.
 */
#ifndef KB_HTTP_H
#define KB_HTTP_H

#include <stdbool.h>
#include <stdint.h>

#include "kb_arena.h"
#include "kb_buf.h"
#include "kb_db.h"
#include "kb_err.h"
#include "kb_json.h"
#include "kb_str.h"

#define KB_MAX_PATH_PARAMS 4
#define KB_REQUEST_ID_MAX 40

typedef struct kb_header {
    kb_str name; /* lower case, '-' separated: "stripe-signature" */
    kb_str value;
} kb_header;

typedef struct kb_req {
    kb_arena *arena;
    kb_str method;
    kb_str path;         /* raw (still percent-encoded) path of REQUEST_URI */
    kb_str query;        /* raw query string, no '?' */
    kb_str content_type; /* NULL string when absent */
    kb_str body;         /* the whole body (bounded by KB_MAX_BODY) */
    bool body_too_large; /* the adapter refused to read it all */
    const kb_header *headers;
    size_t nheaders;
    kb_str params[KB_MAX_PATH_PARAMS]; /* percent-decoded path parameters */
    size_t nparams;
    char request_id[KB_REQUEST_ID_MAX];
    kb_str remote_addr;
    kb_str api_key; /* metered routes: the key of Authorization, parsed once by the
                           * dispatcher (kb_meter_parse_key); NULL string otherwise */
} kb_req;

/* Long-lived per-process handles (lib/kb_worker.h). */
typedef struct kb_worker kb_worker;

typedef struct kb_ctx kb_ctx;

/*
 * A body too big to build in memory (a whole catalogue list): produced piece
 * by piece while it is sent. Status and headers are final before the first
 * byte; resp.body holds the body's first bytes, and next() the rest.
 */
typedef struct kb_resp_stream {
    /* Append the next piece of the body to out (empty when called): KB_OK with
     * *done after the last one; an error, recorded with kb_fail(), when the body
     * cannot be completed. */
    kb_err (*next)(void *ud, kb_ctx *ctx, kb_buf *out, bool *done);
    /* Called exactly once, when the body is complete, failed, or abandoned:
     * releases what the producer holds (a database cursor). */
    void (*close)(void *ud, kb_ctx *ctx);
    void *ud;
} kb_resp_stream;

typedef struct kb_resp {
    int status;
    kb_buf body;              /* response body (JSON unless content_type says otherwise); with a
                     * stream, its first bytes */
    kb_buf headers;           /* extra header lines, each "Name: value\r\n" */
    const char *content_type; /* static string; NULL = application/json */
    kb_resp_stream *stream;   /* arena-owned; NULL = the body is all in body */
} kb_resp;

struct kb_charge; /* lib/kb_meter.h */

struct kb_ctx {
    kb_arena *arena;
    kb_worker *w;
    kb_resp resp;
    kb_err err;               /* recorded by kb_fail */
    kb_buf err_msg;           /* client-facing message for err */
    int retry_after;          /* > 0: send Retry-After with an error */
    const char *route;        /* pattern that matched, for logs and metrics */
    int route_index;          /* its index in the route table, -1 when none matched */
    const char *user_id;      /* for the log line when known (arena-owned) */
    const char *key_prefix;   /* for the log line when known (arena-owned) */
    int cost;                 /* credits the route costs (route table), 0 = not metered */
    int64_t credits;          /* charged by this request, -1 when not metered */
    struct kb_charge *charge; /* set by kb_meter_charge (arena-owned), NULL when none */
    int64_t start_us;         /* monotonic start of the request */
};

/* Set up a context with its own buffers (kept across requests). */
void kb_ctx_init(kb_ctx *ctx, kb_worker *w, kb_arena *arena);

/* Prepare ctx for the next request (keeps buffer memory). */
void kb_ctx_reset(kb_ctx *ctx);

/* Free the buffers. */
void kb_ctx_release(kb_ctx *ctx);

/*
 * Record err with a client-facing message and return err, so a handler can
 * `return kb_fail(ctx, KB_E_VALIDATION, "body.limit: ...");`. For 5xx the
 * message shown to the client is generic; the detail goes only to the log.
 */
kb_err kb_fail(kb_ctx *ctx, kb_err err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Case-insensitive header lookup by lower-case name; NULL string if absent. */
kb_str kb_req_header(const kb_req *req, const char *lower_name);

/* Add a response header line; name and value must be trusted text (no CR/LF). */
void kb_resp_header(kb_ctx *ctx, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Begin a 200 JSON object body: returns a writer positioned inside the
 * top-level object, so the handler writes its fields and calls
 * kb_resp_json_end(), which appends request_id (and response_time when
 * with_time) and closes the object.
 */
void kb_resp_json_begin(kb_ctx *ctx, kb_jw *w);
void kb_resp_json_end(kb_ctx *ctx, const kb_req *req, kb_jw *w, bool with_time);

/*
 * Turn the recorded error (ctx->err, or err when nothing was recorded) into
 * the API.md envelope, replacing any body (a stream is closed unsent). Adds
 * Retry-After when set.
 */
void kb_resp_error(kb_ctx *ctx, const kb_req *req, kb_err err);

/* Make the body a stream (kb_resp_stream): s is arena-owned, resp.body holds
 * its first bytes. */
void kb_resp_stream_set(kb_ctx *ctx, kb_resp_stream *s);

/* Close a stream that will not be sent (an error replaced it, or no body is
 * sent); nothing when there is none. */
void kb_resp_stream_drop(kb_ctx *ctx);

/* Writes n bytes of the answer's body; false when they could not be (the peer is gone). */
typedef bool kb_resp_write_fn(void *ud, const char *p, size_t n);

/*
 * Send the body through write: resp.body, then for a stream every further
 * piece (each built in resp.body, so memory is one piece), then close it.
 * True when all of it went out, or the peer went away (nothing more can be
 * done for it; the answer stands as sent). False when a stream's producer
 * failed after the first byte: that can no longer become an error envelope,
 * so ctx records it for the log, the metrics and kb_meter_end() (resp.status
 * of the error, 500 or 503, and ctx->err; kb_meter_end() then leaves the
 * charge to be refunded from the journal), and the caller must cut the
 * connection without ending the answer, so that the client sees an
 * incomplete transfer instead of a short body that might parse.
 */
bool kb_resp_send_body(kb_ctx *ctx, kb_resp_write_fn *write, void *ud);

/* Append the one-per-request JSON log line for this response to stderr. */
void kb_log_request(const kb_ctx *ctx, const kb_req *req);

/* Reads up to len body bytes into buf: count, 0 at the end, < 0 on error. */
typedef int kb_body_reader(void *ud, char *buf, int len);

/*
 * Build req from CGI-style params (NULL-terminated "NAME=value" strings:
 * REQUEST_METHOD, REQUEST_URI, QUERY_STRING, CONTENT_TYPE, CONTENT_LENGTH,
 * REMOTE_ADDR, KB_REQUEST_ID, HTTP_*) and a body reader. Everything is
 * copied into arena. A body over max_body sets req->body_too_large.
 */
void kb_req_build(kb_req *req, kb_arena *arena, char *const *envp, kb_body_reader *rd, void *ud,
                  long max_body);

/* Fill req->request_id from a trusted id (nginx) or generate req_ + 12 hex. */
void kb_req_set_id(kb_req *req, kb_str given);

#endif
