/* dashboard.h - the operations dashboard: GET /dashboard, one
 * self-contained page (web/dashboard.html, embedded in the binary), and the
 * read-only admin JSON it reads besides /admin/spend and /admin/cache:
 * /admin/latency, /admin/budgets, /admin/experiments. Also who may read
 * it: the master key, or a virtual key with the viewer role, which may GET
 * the admin API's read endpoints and nothing else. See docs/dashboard.md. */
#ifndef AH_DASHBOARD_H
#define AH_DASHBOARD_H

#include <event2/http.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/pipeline.h"

/* The embedded page (dashboard_page.c): ah_dashboard_html_len bytes,
 * followed by a NUL. Static, never freed. */
extern const char ah_dashboard_html[];
extern const uint64_t ah_dashboard_html_len;

/* GET /dashboard: the page, with a Content-Security-Policy that allows its
 * own inline script and style (by hash) and requests to this origin only.
 * The page holds no data, so it is served without a key; the data it reads
 * needs one (docs/dashboard.md says why). */
void ah_dashboard_page(ah_worker_t *w, struct evhttp_request *req);

/* The page's Content-Security-Policy (static; built once, thread-safe). */
const char *ah_dashboard_csp(void);

/* A presented token that is a live viewer key: 1 when it may make this
 * request (a GET of a read endpoint), -1 when the request was answered
 * (403: a viewer may not; 500: the key store failed), 0 when tok is not a
 * viewer key (the caller applies its own rules). tok may be NULL. */
int ah_dashboard_viewer_admit(ah_worker_t *w, struct evhttp_request *req, const char *path,
                              const char *tok);

/* Whether a viewer key may make this request: GET of /admin/spend,
 * /admin/latency, /admin/budgets, /admin/experiments, /admin/cache or
 * /admin/deployments. */
int ah_dashboard_viewer_may(const char *path, enum evhttp_cmd_type method);

/* GET /admin/latency, /admin/budgets, /admin/experiments; the caller has
 * checked the key. Returns 1 when path was one of them (answered), 0
 * otherwise (nothing was sent). */
int ah_dashboard_admin(ah_worker_t *w, struct evhttp_request *req, const char *path);

#endif
