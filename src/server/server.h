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

#endif
