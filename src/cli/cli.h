/* cli.h - the offline commands: `ahorro keys` and `ahorro report`.
 *
 * They open the same database the gateway writes (SQLite in WAL mode, so
 * they can run while it serves). Each returns a process exit status. */
#ifndef AH_CLI_H
#define AH_CLI_H

/* ahorro keys create|list|revoke ... */
int ah_cli_keys(int argc, char **argv, const char *db_path);
/* ahorro report [--by model|key|owner|user] [--since 30d] [--format table|csv|json] */
int ah_cli_report(int argc, char **argv, const char *db_path);

#endif
