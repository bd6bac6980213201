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
#include <malloc.h>
#ifdef AH_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/path.h"
#include "server/gateway.h"
#include "server/server.h"
#include "store/db.h"
#include "store/pg.h"

#define AHORRO_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(
        f,
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
        "  ahorro quality drift [--route R] [--since 30d] [--by day|week] [--json]\n"
        "  ahorro eval run --dataset FILE --variant V... [--judge MODEL] | report RUN | list\n"
        "  ahorro batch run INPUT.jsonl -o OUTPUT.jsonl [--concurrency N] [--model M] [--tags ..]\n"
        "  ahorro batch estimate INPUT.jsonl [--model M] [--json]\n"
        "  ahorro migrate   (brings the SQLite file and, when configured, PostgreSQL up to date)\n"
        "  ahorro version\n\n"
        "Common options (before or after the command): --config FILE, --db PATH.\n"
        "Environment: OPENAI_API_KEY, OPENAI_BASE_URL, ANTHROPIC_API_KEY,\n"
        "ANTHROPIC_BASE_URL, AHORRO_MASTER_KEY, AHORRO_DB, AHORRO_PRICES, AHORRO_LOG.\n",
        AHORRO_VERSION);
}

/* `ahorro migrate`: the schema of the SQLite file and, with a PostgreSQL
 * ledger, of PostgreSQL (`serve` does the same at start). */
static int migrate(const ah_config_t *cfg)
{
    sqlite3 *db;
    if (ah_db_open(cfg->db_path, &db)) {
        fprintf(stderr, "ahorro migrate: cannot open or migrate %s\n", cfg->db_path);
        return 1;
    }
    sqlite3_close(db);
    printf("sqlite %s: schema up to date\n", cfg->db_path);
    if (!cfg->ledger.url)
        return 0;
    char err[512], shown[512];
    ah_pg_redact(cfg->ledger.url, shown, sizeof shown);
    PGconn *c = ah_pg_connect(cfg->ledger.url, cfg->ledger.timeout_ms, err, sizeof err);
    if (!c || ah_pg_migrate(c, err, sizeof err)) {
        fprintf(stderr, "ahorro migrate: PostgreSQL at %s: %s\n", shown, err);
        PQfinish(c);
        return 1;
    }
    PQfinish(c);
    printf("postgres %s: schema up to date (version %d)\n", shown, ah_pg_schema_version());
    return 0;
}

/* Loading the price catalogue and the configuration frees most of what it
 * allocated (parse trees), but the allocator keeps those pages: give them
 * back once, before serving (docs/performance.md, "Allocator"). */
static void release_start_pages(void)
{
#if defined(AH_JEMALLOC)
    char purge[48];
    snprintf(purge, sizeof purge, "arena.%d.purge", MALLCTL_ARENAS_ALL);
    mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
    mallctl(purge, NULL, NULL, NULL, 0);
#elif defined(__GLIBC__)
    malloc_trim(0);
#endif
}

static int serve(ah_config_t *cfg)
{
    /* Every thread started from here on (ledger writer, budget watcher,
     * event loops) inherits a mask without the termination signals: only
     * the main thread takes them, with sigwait (server.c). A thread that
     * did not block them would be killed by SIGTERM, undrained. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    ah_gateway_t gw;
    ah_gateway_rt_t *rt;
    if (ah_gateway_open(cfg, &gw, &rt))
        return 1;
    release_start_pages();
    int rc = ah_server_run(&gw);
    ah_gateway_close(&gw, rt);
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
    else if (strcmp(rest[0], "migrate") == 0)
        rc = nrest == 1 ? migrate(cfg) : (usage(stderr), 2);
    else if (strcmp(rest[0], "keys") == 0)
        rc = ah_cli_keys(nrest - 1, rest + 1, cfg);
    else if (strcmp(rest[0], "report") == 0)
        rc = ah_cli_report(nrest - 1, rest + 1, cfg);
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
    else if (strcmp(rest[0], "quality") == 0)
        rc = ah_cli_quality(nrest - 1, rest + 1, cfg);
    else if (strcmp(rest[0], "eval") == 0)
        rc = ah_cli_eval(nrest - 1, rest + 1, cfg);
    else if (strcmp(rest[0], "batch") == 0)
        rc = ah_cli_batch(nrest - 1, rest + 1, cfg);
    else {
        fprintf(stderr, "ahorro: unknown command '%s'\n\n", rest[0]);
        usage(stderr);
        rc = 2;
    }
    curl_global_cleanup();
    ah_config_free(cfg);
    return rc;
}
