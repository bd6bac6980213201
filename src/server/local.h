/* local.h - the gateway served in-process for an offline command.
 *
 * `ahorro eval run` and `ahorro batch run` send their requests through the
 * gateway's own pipeline without a server running: they open the
 * configured gateway and serve it on 127.0.0.1 at an ephemeral port for
 * their own duration. Its request log is off unless it goes to a file (the
 * command owns the terminal; the ledger has every row). */
#ifndef AH_LOCAL_H
#define AH_LOCAL_H

#include "server/gateway.h"
#include "server/server.h"

typedef struct ah_local_gateway {
    ah_gateway_t gw;
    ah_gateway_rt_t *rt;
    ah_server_t *srv;
    char base[64]; /* "http://127.0.0.1:PORT" */
} ah_local_gateway_t;

/* Open and serve cfg (whose listen address it changes); 0, or 1 after
 * logging why. */
int ah_local_gateway_start(ah_config_t *cfg, ah_local_gateway_t *lg);
/* A gateway URL as a user gives it ("http://h:8080/v1/") as the base the
 * clients append "/v1/..." to ("http://h:8080"). */
void ah_gateway_base_url(const char *url, char *out, size_t n);

/* Drain the requests in flight, stop, and close (the ledger drains too).
 * Safe on a gateway that did not start. */
void ah_local_gateway_stop(ah_local_gateway_t *lg);

#endif
