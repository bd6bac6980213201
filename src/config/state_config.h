/* state_config.h - where the shared counters of budgets and rate limits live
 * (docs/state.md).
 *
 *   ahorro:
 *     state:
 *       url: redis://127.0.0.1:6379/0   # absent: in-process (the default)
 *       prefix: "ahorro:"               # every key in Redis starts with it
 *       on_failure: closed              # closed (refuse) | open (admit)
 *       timeout_ms: 100                 # connect and command timeout
 *   # or the short form:  state: redis://127.0.0.1:6379/0
 *
 * Part of ah_config_t (config.h); loaded and checked by config.c. */
#ifndef AH_STATE_CONFIG_H
#define AH_STATE_CONFIG_H

#define AH_STATE_DEFAULT_PREFIX "ahorro:"
#define AH_STATE_DEFAULT_TIMEOUT_MS 100
#define AH_STATE_MAX_TIMEOUT_MS 10000
#define AH_STATE_MAX_PREFIX 64

typedef struct ah_state_config {
    char *url;      /* redis://[:password@]host[:port][/db], or NULL: in-process */
    char *prefix;   /* NULL: AH_STATE_DEFAULT_PREFIX */
    int fail_open;  /* 1: admit when Redis cannot be reached; 0: refuse */
    int timeout_ms; /* 0: AH_STATE_DEFAULT_TIMEOUT_MS */
    int line;       /* of the setting, for messages */
} ah_state_config_t;

#endif
