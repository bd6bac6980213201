/* cli.h - the commands besides serve: `ahorro keys`, `report` and `cache`.
 *
 * They open the same database the gateway writes (SQLite in WAL mode, so
 * they can run while it serves). Each returns a process exit status. */
#ifndef AH_CLI_H
#define AH_CLI_H

#include "config/config.h"

/* ahorro keys create|list|revoke ... */
int ah_cli_keys(int argc, char **argv, const ah_config_t *cfg);
/* ahorro report [--by DIMS]... [--since T] [--until T] [--forecast] [--format
 * table|csv|json]: spend grouped by columns and tags, or projected (report.c) */
int ah_cli_report(int argc, char **argv, const ah_config_t *cfg);

/* ahorro cache stats [--json] | purge [--tenant T] [--namespace N] [--model M]
 * [--older-than SECONDS] [--url URL]: the cache lives in the running gateway,
 * so these ask its admin API (with the master key of the configuration). */
int ah_cli_cache(int argc, char **argv, const ah_config_t *cfg);

/* ahorro router score [--router NAME] | train --data FILE... -o MODEL | eval
 * --data FILE... [--model MODEL]: the routers offline (src/cli/router.c). */
int ah_cli_router(int argc, char **argv, const ah_config_t *cfg);

/* ahorro tokens [--encoding E | --model M] [--json] [--chat] FILE|-: the
 * prompt's tokens (exact for OpenAI's encodings) and its input price. */
int ah_cli_tokens(int argc, char **argv, const ah_config_t *cfg);

/* ahorro prices [QUERY] [--provider P] [--model M] [--at YYYY-MM-DD] [--json]:
 * the price catalogue listed and searched, or the price of one model name as
 * the gateway would charge it (src/cli/prices.c). */
int ah_cli_prices(int argc, char **argv, const ah_config_t *cfg);

/* ahorro templates add NAME FILE [--note T] | list | show NAME[@V]: the prompt
 * templates requests name with prompt_id (src/cli/templates.c). */
int ah_cli_templates(int argc, char **argv, const char *db_path);

/* ahorro prompts audit [--since DAYS] [--min-requests N] [--json]: routes
 * whose prompts a provider's prompt cache could serve cheaper, with the
 * amount (src/cli/prompts.c). */
int ah_cli_prompts(int argc, char **argv, const ah_config_t *cfg);

/* ahorro experiments show [NAME] [--since 7d] [--json]: each live
 * experiment's arms compared, from the ledger (src/cli/experiments.c). */
int ah_cli_experiments(int argc, char **argv, const ah_config_t *cfg);

/* ahorro quality drift [--route R] [--since 30d] [--by day|week] [--json]:
 * the live judges' scores per route and period, each period against the
 * one before (src/cli/quality.c). */
int ah_cli_quality(int argc, char **argv, const ah_config_t *cfg);

/* ahorro eval run --dataset F --variant V... [--judge M] | report RUN | list:
 * offline evaluation through the gateway's own pipeline (src/cli/eval.c). */
int ah_cli_eval(int argc, char **argv, ah_config_t *cfg);

/* ahorro batch run INPUT -o OUTPUT [...] | estimate INPUT: bulk requests
 * through the gateway without a server, resumable (src/cli/batch.c). */
int ah_cli_batch(int argc, char **argv, ah_config_t *cfg);

#endif
