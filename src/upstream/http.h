/* http.h - the upstream HTTP client: libcurl's multi interface driven by a
 * libevent loop.
 *
 * One ah_http_t per event loop; it owns a CURLM whose connection pool is
 * shared by every transfer of that loop (keep-alive, TLS sessions, HTTP/2
 * multiplexing where the provider offers it). Transfers report headers,
 * body bytes as they arrive, and completion through callbacks on the loop's
 * thread. */
#ifndef AH_HTTP_H
#define AH_HTTP_H

#include <curl/curl.h>
#include <event2/event.h>

#include "core/error.h"

typedef struct ah_http ah_http_t;

/* on_data's answer that pauses the transfer (backpressure). */
#define AH_HTTP_PAUSE 2
typedef struct ah_http_xfer ah_http_xfer_t;

typedef struct ah_http_request {
    const char *url;
    struct curl_slist *headers; /* borrowed until the transfer ends */
    const char *body;           /* borrowed until the transfer ends */
    size_t body_len;
    double timeout_s;      /* whole transfer; 0 = none */
    double idle_timeout_s; /* abort when no byte arrives for this long */
} ah_http_request_t;

typedef struct ah_http_callbacks {
    /* Status line and headers are complete. retry_after_s is the upstream's
     * Retry-After (seconds) or 0. */
    void (*on_headers)(void *ud, long status, int retry_after_s);
    /* Body bytes. Return 0 when consumed, AH_HTTP_PAUSE to refuse them for
     * now (they come again after ah_http_resume), anything else to abort the
     * transfer (on_done follows with AH_E_CLOSED). */
    int (*on_data)(void *ud, const char *p, size_t n);
    /* The transfer ended: err is AH_E_OK, AH_E_TIMEOUT, AH_E_UPSTREAM
     * (connection failed or reset; msg says how) or AH_E_CLOSED. Called
     * exactly once, never from inside ah_http_start. The transfer is freed
     * after it returns. */
    void (*on_done)(void *ud, ah_err_t err, long status, const char *msg);
} ah_http_callbacks_t;

/* A client on `base`. Free with ah_http_free after every transfer ended. */
ah_http_t *ah_http_new(struct event_base *base);
void ah_http_free(ah_http_t *h);

/* Start a transfer. The request's strings must stay valid until on_done.
 * Returns NULL (and calls nothing) when curl refuses it. */
ah_http_xfer_t *ah_http_start(ah_http_t *h, const ah_http_request_t *req,
                              const ah_http_callbacks_t *cb, void *ud);
/* Resume a transfer paused by on_data; the refused bytes may be delivered
 * again before this returns. */
void ah_http_resume(ah_http_xfer_t *x);
/* Abort a transfer; no callback fires afterwards. */
void ah_http_cancel(ah_http_xfer_t *x);

/* Transfers in flight, for draining at shutdown. */
int ah_http_active(const ah_http_t *h);

#endif
