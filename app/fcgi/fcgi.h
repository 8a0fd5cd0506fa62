/* fcgi.h - the FastCGI adapter: the only bridge between libfcgi and kb_req/kb_ctx. */
#ifndef KB_FCGI_H
#define KB_FCGI_H

#include "kb_http.h"

typedef struct kb_fcgi kb_fcgi;

/* Library init and one request object on listen_fd. Caller frees with kb_fcgi_free. */
kb_fcgi *kb_fcgi_new(int listen_fd);
void kb_fcgi_free(kb_fcgi *f);

/*
 * Accept the next request. Returns 1 with a request, 0 when there was none
 * after all (another worker took it, or a signal), -1 on a real error.
 */
int kb_fcgi_accept(kb_fcgi *f);

/* Build req from the FastCGI params and body (at most max_body bytes). */
void kb_fcgi_read(kb_fcgi *f, kb_req *req, kb_arena *arena, long max_body);

/*
 * Write ctx->resp with Status, Content-Type, X-Request-ID and extra headers,
 * then its body (kb_resp_send_body: a stream piece by piece). A stream that
 * fails after the first byte is recorded in ctx and its connection closed
 * without ending the request (kb_fcgi_finish then has nothing left to do).
 * Returns true when the answer is written and waits for kb_fcgi_complete(),
 * false when it was cut off that way (it must not be completed or counted as
 * answered).
 */
bool kb_fcgi_write(kb_fcgi *f, const kb_req *req, kb_ctx *ctx);

/*
 * End the answer written so far. kb_fcgi_write() holds its last byte back, so
 * nginx cannot have the whole answer yet: wait (up to 10 s) until the socket has
 * room, call answered(arg), and then write what is still buffered (at most 8 KiB:
 * all of a small answer; first, before answered(), on a connection whose send
 * buffer could not take that in one piece) with the last byte and the FastCGI end of
 * request, the one
 * write after which nginx has the answer (Content-Length complete, or the end of a
 * streamed body). When a write failed, nginx hung up, the socket stays full or
 * answered() returns false, the answer is cut off instead (the client sees it
 * fail) and false is returned: it must not be counted as answered. Also false
 * after kb_fcgi_write() returned false.
 */
bool kb_fcgi_complete(kb_fcgi *f, bool (*answered)(void *), void *arg);

/* Finish the request: flush, end it and close the connection (at once when
 * its input was read to the end and the answer went out whole). */
void kb_fcgi_finish(kb_fcgi *f);

#endif
