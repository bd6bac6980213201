/* gateway.c - open and close what a gateway serves with (gateway.h). */
#include "server/gateway.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "cache/setup.h"
#include "core/alloc.h"
#include "core/log.h"
#include "guard/guard.h"
#include "guard/watch.h"
#include "observe/otlp.h"
#include "observe/reqlog.h"
#include "route/balance.h"
#include "route/router_rt.h"
#include "store/ledger.h"
#include "store/pg.h"
#include "store/prices.h"
#include "tokenize/bpe.h"

struct ah_gateway_rt {
    ah_guard_watch_t *watch;
    ah_reqlog_t *reqlog;
};

/* The price catalogue: --prices, config, $AHORRO_PRICES, next to the binary
 * (../data or ../share/ahorro), then ./data. */
static ah_prices_t *load_prices(const char *configured)
{
    const char *used = NULL;
    ah_prices_t *p = ah_prices_open_default(configured, &used);
    if (p)
        ah_info("prices: %d models from %s", ah_prices_count(p), used);
    else
        ah_warn("prices: no catalogue found; costs will be unknown unless set in the config");
    return p;
}

/* The request log and the trace exporter see the ledger's rows (observe/):
 * started last, before traffic; stopped after the ledger has drained. A
 * destination that cannot be opened is logged, and serving goes on. */
static ah_reqlog_t *observe_start(const ah_config_t *cfg, ah_gateway_t *gw)
{
    const ah_observe_config_t *o = &cfg->observe;
    ah_reqlog_t *reqlog = NULL;
    if (o->log_requests && ah_reqlog_open(o->log_file, &reqlog) == AH_E_OK)
        ah_ledger_observe(gw->ledger, ah_reqlog_rows, reqlog);
    gw->log_prompts = o->log_requests && o->log_prompts;
    if (gw->log_prompts)
        ah_warn("request log: prompts are logged (logging.prompts: true)");
    if (o->trace_endpoint) {
        ah_otlp_options_t opt = {.endpoint = o->trace_endpoint,
                                 .service_name = o->trace_service,
                                 .headers = (const char *const *)o->trace_headers,
                                 .nheaders = o->ntrace_headers};
        if (ah_otlp_start(&opt, &gw->otlp) == AH_E_OK) {
            ah_ledger_observe(gw->ledger, ah_otlp_rows, gw->otlp);
            gw->trace_ratio = o->trace_ratio;
            ah_info("tracing: OTLP/HTTP to %s, %.0f%% of requests", o->trace_endpoint,
                    100 * o->trace_ratio);
        } else {
            ah_error("tracing: cannot start the exporter to %s: tracing off", o->trace_endpoint);
        }
    }
    return reqlog;
}

/* The per-process secret of the gateway's own loopback calls (pipeline.h). */
static int internal_secret(char out[AH_INTERNAL_SECRET_HEX])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char rnd[(AH_INTERNAL_SECRET_HEX - 1) / 2];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return -1;
    for (size_t i = 0; i < sizeof rnd; i++) {
        out[2 * i] = digits[rnd[i] >> 4];
        out[2 * i + 1] = digits[rnd[i] & 15];
    }
    out[2 * sizeof rnd] = '\0';
    OPENSSL_cleanse(rnd, sizeof rnd);
    return 0;
}

int ah_gateway_open(ah_config_t *cfg, ah_gateway_t *gw, ah_gateway_rt_t **rtp)
{
    *gw = (ah_gateway_t){.cfg = cfg};
    ah_gateway_rt_t *rt = ah_calloc(1, sizeof *rt);
    *rtp = rt;
    if (internal_secret(gw->internal_secret)) {
        ah_error("cannot draw the gateway's internal secret (RAND_bytes)");
        goto fail;
    }
    gw->prices = load_prices(cfg->prices_path);
    if (cfg->ledger.url) {
        char spool[4096], why_pg[512], shown[512];
        snprintf(spool, sizeof spool, "%s-spool", cfg->db_path);
        ah_pg_redact(cfg->ledger.url, shown, sizeof shown);
        if (ah_ledger_open_postgres(&cfg->ledger, spool, &gw->ledger, why_pg, sizeof why_pg)) {
            ah_error("cannot open the PostgreSQL ledger at %s: %s", shown, why_pg);
            goto fail;
        }
        ah_info("ledger and keys: PostgreSQL at %s (spool %s)", shown,
                cfg->ledger.spool ? cfg->ledger.spool : spool);
    } else if (ah_ledger_open_sqlite(cfg->db_path, &gw->ledger)) {
        ah_error("cannot open the ledger at %s", cfg->db_path);
        goto fail;
    }
    for (size_t i = 0; i < cfg->ndeps; i++) {
        const ah_deployment_t *d = &cfg->deps[i];
        ah_info("model %s -> %s/%s at %s%s", d->alias, d->provider_name, d->model, d->api_base,
                d->api_key ? "" : " (no api key)");
    }
    if (cfg->ndeps == 0)
        ah_warn("no models: set OPENAI_API_KEY / ANTHROPIC_API_KEY or a config with model_list");
    char why[600];
    if (ah_router_rt_load(cfg, &gw->routers, why, sizeof why)) {
        ah_error("%s", why);
        goto fail;
    }
    gw->balancer = ah_balancer_new(cfg, gw->prices);
    if (ah_guard_new(cfg, gw->prices, cfg->db_path, &gw->guard, why, sizeof why)) {
        ah_error("%s", why);
        goto fail;
    }
    if (gw->guard)
        ah_info("guard: %zu budget(s), %zu rate limit(s)", cfg->guard.nbudgets,
                cfg->guard.nrate_limits);
    rt->watch = ah_guard_watch_start(cfg, gw->guard, cfg->db_path, cfg->guard.forecast_interval_s);
    if (cfg->shape.enabled) {
        /* shaping counts prompt tokens as providers bill them */
        if (!(gw->bpe_o200k = ah_bpe_open_default(NULL, "o200k_base", why, sizeof why))) {
            ah_error("shaping: %s", why);
            goto fail;
        }
        gw->bpe_cl100k = ah_bpe_open_default(NULL, "cl100k_base", why, sizeof why);
        ah_info("shaping: on (%zu route and %zu feature policies)", cfg->shape.nroutes,
                cfg->shape.nfeatures);
    }
    if (ah_cache_intents_load(cfg, &gw->intents, why, sizeof why)) {
        ah_error("%s", why);
        goto fail;
    }
    ah_cache_setup(cfg, &gw->cache, &gw->embedder, &gw->remote_embed);
    rt->reqlog = observe_start(cfg, gw);
    if (cfg->experiments.n)
        gw->experiments = ah_experiment_rt_new(cfg); /* freed after the workers stop */
    return 0;
fail:
    ah_gateway_close(gw, rt);
    *rtp = NULL;
    return 1;
}

void ah_gateway_close(ah_gateway_t *gw, ah_gateway_rt_t *rt)
{
    ah_bpe_free(gw->bpe_o200k);
    ah_bpe_free(gw->bpe_cl100k);
    ah_summary_cache_clear();
    ah_cache_teardown(gw->cfg, gw->cache, gw->embedder, gw->remote_embed);
    ah_cache_intents_free(gw->cfg, gw->intents);
    if (rt)
        ah_guard_watch_stop(rt->watch);
    ah_guard_free(gw->guard);
    ah_balancer_free(gw->balancer);
    ah_router_rt_free(gw->routers);
    if (gw->ledger)
        ah_ledger_close(gw->ledger); /* drains every queued row, through the observers */
    ah_otlp_stop(gw->otlp);
    if (rt)
        ah_reqlog_close(rt->reqlog);
    ah_prices_free(gw->prices);
    ah_experiment_rt_free(gw->experiments);
    ah_free(rt);
    OPENSSL_cleanse(gw->internal_secret, sizeof gw->internal_secret);
    *gw = (ah_gateway_t){0};
}
