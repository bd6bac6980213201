/* local.c - see local.h. */
#include "server/local.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"

int ah_local_gateway_start(ah_config_t *cfg, ah_local_gateway_t *lg)
{
    memset(lg, 0, sizeof *lg);
    ah_free(cfg->listen_host);
    cfg->listen_host = ah_strdup("127.0.0.1");
    cfg->listen_port = 0;
    if (!cfg->observe.log_file)
        cfg->observe.log_requests = 0;
    int port = 0;
    if (ah_gateway_open(cfg, &lg->gw, &lg->rt)) {
        ah_error("the gateway cannot start");
        return 1;
    }
    if (ah_server_start(&lg->gw, &lg->srv, &port)) {
        ah_gateway_close(&lg->gw, lg->rt);
        lg->rt = NULL;
        ah_error("the gateway cannot listen on 127.0.0.1");
        return 1;
    }
    snprintf(lg->base, sizeof lg->base, "http://127.0.0.1:%d", port);
    return 0;
}

void ah_local_gateway_stop(ah_local_gateway_t *lg)
{
    if (!lg->srv)
        return;
    ah_server_stop(lg->srv);
    ah_gateway_close(&lg->gw, lg->rt);
    memset(lg, 0, sizeof *lg);
}

void ah_gateway_base_url(const char *url, char *out, size_t n)
{
    snprintf(out, n, "%s", url);
    size_t bl = strlen(out);
    while (bl && out[bl - 1] == '/')
        out[--bl] = '\0';
    if (bl >= 3 && strcmp(out + bl - 3, "/v1") == 0)
        out[bl - 3] = '\0';
}
