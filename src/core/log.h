/* log.h - one-line structured logging to stderr.
 *
 * Lines are written with a single write() so that lines from different
 * threads never interleave. Never log provider keys: callers pass only
 * redacted values (see ah_log_redact). */
#ifndef AH_LOG_H
#define AH_LOG_H

typedef enum { AH_LOG_DEBUG, AH_LOG_INFO, AH_LOG_WARN, AH_LOG_ERROR } ah_log_level_t;

/* Minimum level printed; default INFO (AHORRO_LOG=debug|info|warn|error). */
void ah_log_set_level(ah_log_level_t level);
void ah_log(ah_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define ah_debug(...) ah_log(AH_LOG_DEBUG, __VA_ARGS__)
#define ah_info(...) ah_log(AH_LOG_INFO, __VA_ARGS__)
#define ah_warn(...) ah_log(AH_LOG_WARN, __VA_ARGS__)
#define ah_error(...) ah_log(AH_LOG_ERROR, __VA_ARGS__)

#endif
