/* server.h - the HTTP front: one libevent loop per thread, each with its
 * own SO_REUSEPORT listener, evhttp server, upstream client and database
 * connection. The kernel spreads connections across the loops; a request
 * lives on one loop from start to end, so no request state is shared
 * between threads.
 *
 * SIGTERM/SIGINT: stop accepting, let in-flight requests finish (at most
 * AH_DRAIN_GRACE_S), then the caller closes the ledger, which drains it. */
#ifndef AH_SERVER_H
#define AH_SERVER_H

#include "pipeline/pipeline.h"

/* Serve until a termination signal. Returns 0 after a clean drain. */
int ah_server_run(ah_gateway_t *gw);

/* The same, without waiting for a signal: bind gw->cfg's listen address
 * (port 0: an ephemeral one, in *port) and start the workers; 0 on
 * success, 1 after logging why. ah_server_stop drains the requests in
 * flight (at most AH_DRAIN_GRACE_S) and joins the workers. */
typedef struct ah_server ah_server_t;
int ah_server_start(ah_gateway_t *gw, ah_server_t **srv, int *port);
void ah_server_stop(ah_server_t *srv);

#endif
