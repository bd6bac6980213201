/* observe_config.h - the request log and trace export (`ahorro.logging`,
 * `ahorro.tracing`; observe/reqlog.h, observe/otlp.h):
 *
 *   ahorro:
 *     logging:
 *       requests: true            # one JSON line per request (default true)
 *       file: /var/log/ahorro/requests.jsonl   # default: stderr
 *       prompts: false            # the messages in each line (default false)
 *     tracing:
 *       endpoint: http://127.0.0.1:4318       # OTLP/HTTP; POST .../v1/traces
 *       service_name: ahorro
 *       sample_ratio: 1.0
 *       headers: { authorization: "Bearer ..." }
 *
 * Without a tracing section, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
 * OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_SERVICE_NAME are read, as
 * OpenTelemetry's SDKs read them. */
#ifndef AH_OBSERVE_CONFIG_H
#define AH_OBSERVE_CONFIG_H

#include <stddef.h>

#define AH_TRACING_MAX_HEADERS 16

typedef struct ah_observe_config {
    int log_requests;                            /* default 1 */
    int log_prompts;                             /* default 0 */
    char *log_file;                              /* NULL: stderr */
    char *trace_endpoint;                        /* NULL: tracing off */
    char *trace_service;                         /* NULL: "ahorro" */
    double trace_ratio;                          /* default 1 */
    char *trace_headers[AH_TRACING_MAX_HEADERS]; /* "Name: value" */
    size_t ntrace_headers;
} ah_observe_config_t;

#endif
