/* main.c - the `ahorro` command: serve, keys, report, version.
 *
 *   ahorro serve [--config FILE] [--listen HOST:PORT] [--db PATH] [--threads N]
 *   ahorro keys create --owner O [--tags k=v,...] [--role R] | list | revoke ID
 *   ahorro report [--by feature,department]... [--since 30d] [--until T] [--forecast]
 *                 [--format table|csv|json]
 *   ahorro cache stats | purge [--tenant T] [--namespace N] [--model M] [--older-than S]
 *
 * Every command reads the same configuration (for the database path) so
 * that offline commands see what the gateway wrote. */
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/setup.h"
#include "cli/cli.h"
#include "config/config.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/path.h"
#include "guard/guard.h"
#include "guard/watch.h"
#include "observe/otlp.h"
#include "observe/reqlog.h"
#include "route/balance.h"
#include "route/router_rt.h"
#include "server/server.h"
#include "store/ledger.h"
#include "store/prices.h"
#include "tokenize/bpe.h"

#define AHORRO_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(f,
            "ahorro %s - an LLM gateway that cuts cost and latency\n\n"
            "usage:\n"
            "  ahorro serve [--config FILE] [--listen HOST:PORT] [--db PATH] [--threads N]\n"
            "  ahorro keys create --owner OWNER [--tags k=v,...] [--role api|viewer] [--json]\n"
            "  ahorro keys list | ahorro keys revoke KEY_ID\n"
            "  ahorro report [--by model|key|owner|user|provider|status|TAG[,...]]...\n"
            "                [--since 30d] [--until T] [--top N] [--limit N]\n"
            "                [--forecast [--period month|week]] [--format table|csv|json]\n"
            "  ahorro cache stats [--json] | ahorro cache purge [--tenant T] [--namespace N]\n"
            "                [--model M] [--older-than SECONDS]   (asks the running gateway)\n"
            "  ahorro router score|train|eval ...   (offline; `ahorro router help`)\n"
            "  ahorro tokens [--encoding o200k_base|cl100k_base | --model M] [--json] FILE|-\n"
            "  ahorro prices [QUERY] [--provider P] [--model M] [--at YYYY-MM-DD] [--json]\n"
            "  ahorro templates add NAME FILE [--note TEXT] | list | show NAME[@VERSION]\n"
            "  ahorro prompts audit [--since DAYS] [--min-requests N] [--json]\n"
            "  ahorro experiments show [NAME] [--since 7d] [--json]\n"
            "  ahorro version\n\n"
            "Common options (before or after the command): --config FILE, --db PATH.\n"
            "Environment: OPENAI_API_KEY, OPENAI_BASE_URL, ANTHROPIC_API_KEY,\n"
            "ANTHROPIC_BASE_URL, AHORRO_MASTER_KEY, AHORRO_DB, AHORRO_PRICES, AHORRO_LOG.\n",
            AHORRO_VERSION);
}

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

static int serve(ah_config_t *cfg)
{
    ah_gateway_t gw = {.cfg = cfg};
    /* Every thread started from here on (ledger writer, budget watcher,
     * event loops) inherits a mask without the termination signals: only
     * the main thread takes them, with sigwait (server.c). A thread that
     * did not block them would be killed by SIGTERM, undrained. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    gw.prices = load_prices(cfg->prices_path);
    if (ah_ledger_open_sqlite(cfg->db_path, &gw.ledger)) {
        ah_error("cannot open the ledger at %s", cfg->db_path);
        ah_prices_free(gw.prices);
        return 1;
    }
    for (size_t i = 0; i < cfg->ndeps; i++) {
        const ah_deployment_t *d = &cfg->deps[i];
        ah_info("model %s -> %s/%s at %s%s", d->alias, d->provider_name, d->model, d->api_base,
                d->api_key ? "" : " (no api key)");
    }
    if (cfg->ndeps == 0)
        ah_warn("no models: set OPENAI_API_KEY / ANTHROPIC_API_KEY or a config with model_list");
    char why[600];
    if (ah_router_rt_load(cfg, &gw.routers, why, sizeof why)) {
        ah_error("%s", why);
        ah_ledger_close(gw.ledger);
        ah_prices_free(gw.prices);
        return 1;
    }
    gw.balancer = ah_balancer_new(cfg, gw.prices);
    if (ah_guard_new(cfg, gw.prices, cfg->db_path, &gw.guard, why, sizeof why)) {
        ah_error("%s", why);
        ah_balancer_free(gw.balancer);
        ah_router_rt_free(gw.routers);
        ah_ledger_close(gw.ledger);
        ah_prices_free(gw.prices);
        return 1;
    }
    if (gw.guard)
        ah_info("guard: %zu budget(s), %zu rate limit(s)", cfg->guard.nbudgets,
                cfg->guard.nrate_limits);
    ah_guard_watch_t *watch =
        ah_guard_watch_start(cfg, gw.guard, cfg->db_path, cfg->guard.forecast_interval_s);
    if (cfg->shape.enabled) {
        /* shaping counts prompt tokens as providers bill them */
        char err[600];
        if (!(gw.bpe_o200k = ah_bpe_open_default(NULL, "o200k_base", err, sizeof err))) {
            ah_error("shaping: %s", err);
            ah_guard_watch_stop(watch);
            ah_guard_free(gw.guard);
            ah_balancer_free(gw.balancer);
            ah_router_rt_free(gw.routers);
            ah_ledger_close(gw.ledger);
            ah_prices_free(gw.prices);
            return 1;
        }
        gw.bpe_cl100k = ah_bpe_open_default(NULL, "cl100k_base", err, sizeof err);
        ah_info("shaping: on (%zu route and %zu feature policies)", cfg->shape.nroutes,
                cfg->shape.nfeatures);
    }
    ah_cache_setup(cfg, &gw.cache, &gw.embedder, &gw.remote_embed);
    ah_reqlog_t *reqlog = observe_start(cfg, &gw);
    if (cfg->experiments.n)
        gw.experiments = ah_experiment_rt_new(); /* freed after the workers stop */
    int rc = ah_server_run(&gw);
    ah_bpe_free(gw.bpe_o200k);
    ah_bpe_free(gw.bpe_cl100k);
    ah_summary_cache_clear();
    ah_cache_teardown(cfg, gw.cache, gw.embedder, gw.remote_embed);
    ah_guard_watch_stop(watch);
    ah_guard_free(gw.guard);
    ah_balancer_free(gw.balancer);
    ah_router_rt_free(gw.routers);
    ah_ledger_close(gw.ledger); /* drains every queued row, through the observers */
    ah_otlp_stop(gw.otlp);
    ah_reqlog_close(reqlog);
    ah_prices_free(gw.prices);
    ah_experiment_rt_free(gw.experiments);
    return rc;
}

int main(int argc, char **argv)
{
    const char *config = NULL, *listen = NULL, *db = NULL, *threads = NULL;
    char *rest[256];
    int nrest = 0;
    const char *lvl = getenv("AHORRO_LOG");
    if (lvl && strcmp(lvl, "debug") == 0)
        ah_log_set_level(AH_LOG_DEBUG);
    else if (lvl && strcmp(lvl, "warn") == 0)
        ah_log_set_level(AH_LOG_WARN);
    else if (lvl && strcmp(lvl, "error") == 0)
        ah_log_set_level(AH_LOG_ERROR);
    for (int i = 1; i < argc; i++) {
        const char **opt = NULL;
        if (strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0)
            opt = &config;
        else if (strcmp(argv[i], "--listen") == 0)
            opt = &listen;
        else if (strcmp(argv[i], "--db") == 0)
            opt = &db;
        else if (strcmp(argv[i], "--threads") == 0)
            opt = &threads;
        if (opt) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ahorro: %s needs a value\n", argv[i]);
                return 2;
            }
            *opt = argv[++i];
        } else if (nrest < 255) {
            rest[nrest++] = argv[i];
        }
    }
    if (nrest == 0 || strcmp(rest[0], "help") == 0 || strcmp(rest[0], "--help") == 0 ||
        strcmp(rest[0], "-h") == 0) {
        usage(nrest ? stdout : stderr);
        return nrest ? 0 : 2;
    }
    if (strcmp(rest[0], "version") == 0 || strcmp(rest[0], "--version") == 0) {
        printf("ahorro %s\n", AHORRO_VERSION);
        return 0;
    }
    char err[1024];
    ah_config_t *cfg = NULL;
    if (ah_config_load(config, &cfg, err, sizeof err)) {
        fprintf(stderr, "ahorro: %s\n", err);
        return 1;
    }
    if (db) {
        ah_free(cfg->db_path);
        cfg->db_path = ah_strdup(db);
    }
    if (listen) {
        const char *colon = strrchr(listen, ':');
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : -1;
        if (!colon || !end || *end || port < 0 || port > 65535 || colon == listen) {
            fprintf(stderr, "ahorro: --listen must be HOST:PORT\n");
            ah_config_free(cfg);
            return 2;
        }
        ah_free(cfg->listen_host);
        cfg->listen_host = ah_strndup(listen, (size_t)(colon - listen));
        cfg->listen_port = (int)port;
    }
    if (threads) {
        char *end = NULL;
        long t = strtol(threads, &end, 10);
        if (!end || *end || t < 0 || t > 64) {
            fprintf(stderr, "ahorro: --threads must be 0..64\n");
            ah_config_free(cfg);
            return 2;
        }
        cfg->threads = (int)t;
    }
    int rc;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (strcmp(rest[0], "serve") == 0)
        rc = nrest == 1 ? serve(cfg) : (usage(stderr), 2);
    else if (strcmp(rest[0], "keys") == 0)
        rc = ah_cli_keys(nrest - 1, rest + 1, cfg->db_path);
    else if (strcmp(rest[0], "report") == 0)
        rc = ah_cli_report(nrest - 1, rest + 1, cfg->db_path);
    else if (strcmp(rest[0], "cache") == 0)
        rc = ah_cli_cache(nrest - 1, rest + 1, cfg);
    else if (strcmp(rest[0], "router") == 0)
        rc = ah_cli_router(nrest - 1, rest + 1, cfg);
    else if (strcmp(rest[0], "tokens") == 0)
        rc = ah_cli_tokens(nrest, rest, cfg);
    else if (strcmp(rest[0], "prices") == 0)
        rc = ah_cli_prices(nrest, rest, cfg);
    else if (strcmp(rest[0], "templates") == 0)
        rc = ah_cli_templates(nrest - 1, rest + 1, cfg->db_path);
    else if (strcmp(rest[0], "prompts") == 0)
        rc = ah_cli_prompts(nrest - 1, rest + 1, cfg);
    else if (strcmp(rest[0], "experiments") == 0)
        rc = ah_cli_experiments(nrest - 1, rest + 1, cfg);
    else {
        fprintf(stderr, "ahorro: unknown command '%s'\n\n", rest[0]);
        usage(stderr);
        rc = 2;
    }
    curl_global_cleanup();
    ah_config_free(cfg);
    return rc;
}
