/* test_prices.c - the price catalogue against the shipped data/prices.json.
 *
 * Run from the repository root, or point AHORRO_DATA_DIR at the folder that
 * holds prices.json. Expected prices are the catalogue's own numbers (USD per
 * million tokens, pydantic/genai-prices @47df840a); costs are computed by
 * hand in the comments. */
#include <check.h>

#include "check_run.h"
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "store/prices.h"

#define PATH_BYTES 4096
#define TOLERANCE 1e-9

static ah_prices_t *cat;
static char catalogue_path[PATH_BYTES];

/* 2025-06-01T12:00:00Z: before o3's price cut and every 2026 change. */
static const time_t T_2025_06_01_NOON = 1748779200;
/* o3's price cut, 2025-06-10T00:00:00Z. */
static const time_t T_O3_CUT = 1749513600;
/* claude-sonnet-4-6 drops its long-context tier, 2026-03-13T00:00:00Z. */
static const time_t T_SONNET_46_FLAT = 1773360000;

static const char *data_path(void)
{
    const char *dir = getenv("AHORRO_DATA_DIR");
    if (dir && *dir)
        snprintf(catalogue_path, sizeof catalogue_path, "%s/prices.json", dir);
    else
        snprintf(catalogue_path, sizeof catalogue_path, "data/prices.json");
    return catalogue_path;
}

static void setup(void)
{
    ck_assert_int_eq(ah_prices_load(data_path(), &cat), AH_E_OK);
}

static void teardown(void)
{
    ah_prices_free(cat);
    cat = NULL;
}

/* Find or fail the test; returns the price. */
static ah_price_t find(const char *provider, const char *model, time_t when, ah_price_match_t *m)
{
    ah_price_t p;
    ah_err_t rc = ah_prices_find_match(cat, provider, model, when, &p, m);
    ck_assert_msg(rc == AH_E_OK, "%s/%s: %s", provider ? provider : "-", model, ah_strerror(rc));
    return p;
}

static void assert_flat(const ah_rate_t *r, double base)
{
    ck_assert_double_eq_tol(r->base, base, TOLERANCE);
    ck_assert_int_eq(r->ntiers, 0);
}

/* A temporary catalogue file holding text; the caller unlinks it. */
static void write_temp(char *path, size_t cap, const char *text)
{
    snprintf(path, cap, "/tmp/ahorro-test-prices-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    size_t len = strlen(text);
    ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
}

static ah_err_t load_text(const char *text, ah_prices_t **out)
{
    char path[64];
    write_temp(path, sizeof path, text);
    ah_err_t rc = ah_prices_load(path, out);
    unlink(path);
    return rc;
}

START_TEST(test_load_counts)
{
    ah_prices_stats_t s;
    ah_prices_stats(cat, &s);
    ck_assert_int_eq(s.providers, 36);
    ck_assert_int_eq(s.models, 1466);
    ck_assert_int_eq(ah_prices_count(cat), 1466);
    /* 15 regex clauses in the data (13 in models, 2 in providers' model_match),
     * all expressible in POSIX ERE. */
    ck_assert_int_eq(s.regexes, 15);
    ck_assert_int_eq(s.regex_prefix, 0);
    ck_assert_int_eq(s.regex_dropped, 0);
    ck_assert_int_eq(ah_prices_count(NULL), 0);
}
END_TEST

/* ah_prices_entry walks every model, and agrees with a lookup of its id. */
START_TEST(test_entry_iterates)
{
    int n = ah_prices_count(cat), found_haiku = 0;
    for (int i = 0; i < n; i++) {
        ah_price_t p, q;
        ah_price_match_t m, mq;
        ck_assert_int_eq(ah_prices_entry(cat, i, 1750000000, &p, &m), AH_E_OK);
        ck_assert_ptr_nonnull(m.provider);
        ck_assert_ptr_nonnull(m.model);
        if (strcmp(m.provider, "anthropic") == 0 &&
            strcmp(m.model, "claude-3-5-haiku-latest") == 0) {
            found_haiku = 1;
            ck_assert_int_eq(ah_prices_find_match(cat, "anthropic", m.model, 1750000000, &q, &mq),
                             AH_E_OK);
            ck_assert_str_eq(mq.model, m.model);
            ck_assert(p.input.base == q.input.base && p.cache_write.base == q.cache_write.base);
        }
    }
    ck_assert(found_haiku);
    ah_price_t p;
    ck_assert_int_eq(ah_prices_entry(cat, n, 0, &p, NULL), AH_E_NOTFOUND);
    ck_assert_int_eq(ah_prices_entry(cat, -1, 0, &p, NULL), AH_E_NOTFOUND);
    ck_assert_int_eq(ah_prices_entry(NULL, 0, 0, &p, NULL), AH_E_INVAL);
}
END_TEST

START_TEST(test_gpt_4o)
{
    ah_price_match_t m;
    ah_price_t p = find("openai", "gpt-4o", T_2025_06_01_NOON, &m);
    ck_assert_str_eq(m.provider, "openai");
    ck_assert_str_eq(m.model, "gpt-4o");
    assert_flat(&p.input, 2.5);
    assert_flat(&p.output, 10);
    assert_flat(&p.cache_read, 1.25);
    ck_assert_double_lt(p.cache_write.base, 0); /* unknown: falls back to input */
    ck_assert_int_eq(p.context_window, 128000);
    ck_assert_int_eq(p.max_output_tokens, 16384); /* models.dev's, data/README.md */
    /* A dated name and an upper-case spelling find the same entry. */
    find("openai", "gpt-4o-2024-08-06", T_2025_06_01_NOON, &m);
    ck_assert_str_eq(m.model, "gpt-4o");
    find(NULL, "GPT-4o", T_2025_06_01_NOON, &m);
    ck_assert_str_eq(m.provider, "openai");
    ck_assert_str_eq(m.model, "gpt-4o");
}
END_TEST

START_TEST(test_gpt_4o_mini)
{
    ah_price_match_t m;
    ah_price_t p = find("openai", "gpt-4o-mini", T_2025_06_01_NOON, &m);
    ck_assert_str_eq(m.model, "gpt-4o-mini");
    assert_flat(&p.input, 0.15);
    assert_flat(&p.output, 0.6);
    assert_flat(&p.cache_read, 0.075);
}
END_TEST

START_TEST(test_provider_prefix)
{
    ah_price_match_t m;
    /* No provider: the "openai/" prefix names it. */
    ah_price_t p = find(NULL, "openai/gpt-4o-mini", T_2025_06_01_NOON, &m);
    ck_assert_str_eq(m.provider, "openai");
    ck_assert_str_eq(m.model, "gpt-4o-mini");
    assert_flat(&p.input, 0.15);
    /* The provider given and the prefix repeating it. */
    find("openai", "openai/gpt-4o-mini", T_2025_06_01_NOON, &m);
    ck_assert_str_eq(m.model, "gpt-4o-mini");
    p = find(NULL, "anthropic/claude-3-5-haiku-latest", T_2025_06_01_NOON, &m);
    ck_assert_str_eq(m.provider, "anthropic");
    ck_assert_str_eq(m.model, "claude-3-5-haiku-latest");
    assert_flat(&p.input, 0.8);
    /* A provider whose own ids carry the prefix matches them whole. */
    find("openrouter", "anthropic/claude-sonnet-4.5", T_2025_06_01_NOON, &m);
    ck_assert_str_eq(m.provider, "openrouter");
    ck_assert_str_eq(m.model, "anthropic/claude-sonnet-4.5");
}
END_TEST

START_TEST(test_claude_haiku)
{
    ah_price_match_t m;
    const char *names[] = {"claude-3-5-haiku-latest", "claude-3-5-haiku-20241022",
                           "claude-3.5-haiku"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        for (int with_provider = 0; with_provider < 2; with_provider++) {
            ah_price_t p =
                find(with_provider ? "anthropic" : NULL, names[k], T_2025_06_01_NOON, &m);
            ck_assert_str_eq(m.provider, "anthropic");
            ck_assert_str_eq(m.model, "claude-3-5-haiku-latest");
            assert_flat(&p.input, 0.8);
            assert_flat(&p.output, 4);
            assert_flat(&p.cache_read, 0.08);
            assert_flat(&p.cache_write, 1);
            ck_assert_int_eq(p.context_window, 200000);
            ck_assert_int_eq(p.max_output_tokens, 8192);
        }
    }
}
END_TEST

START_TEST(test_provider_aliases)
{
    ah_price_match_t m;
    /* provider_match: "bedrock" is aws; fallback_model_providers: azure has
     * no claude of its own and falls back to anthropic. */
    find("Bedrock", "anthropic.claude-3-5-haiku-20241022-v1:0", T_2025_06_01_NOON, &m);
    ck_assert_str_eq(m.provider, "aws");
    find("azure", "claude-3-5-haiku-20241022", T_2025_06_01_NOON, &m);
    ck_assert_str_eq(m.provider, "anthropic");
    /* A provider the catalogue does not know: every provider is tried. */
    find("my-private-cloud", "claude-3-5-haiku-20241022", T_2025_06_01_NOON, &m);
    ck_assert_str_eq(m.model, "claude-3-5-haiku-latest");
}
END_TEST

START_TEST(test_regex_match)
{
    ah_price_match_t m;
    /* Dated gpt-5.6-sol names match only the regex ^gpt-5\.6-sol-\d{4}-\d{2}-\d{2}$. */
    ah_price_t p = find("openai", "gpt-5.6-sol-2026-05-01", T_2025_06_01_NOON, &m);
    ck_assert_str_eq(m.model, "gpt-5.6-sol");
    ck_assert_double_eq_tol(p.input.base, 5, TOLERANCE);
    /* The $ anchor holds, and \. is a literal dot. */
    ck_assert_int_eq(
        ah_prices_find(cat, "openai", "gpt-5.6-sol-2026-05-01x", T_2025_06_01_NOON, &p),
        AH_E_NOTFOUND);
    ck_assert_int_eq(ah_prices_find(cat, "openai", "gpt-5x6-sol-2026-05-01", T_2025_06_01_NOON, &p),
                     AH_E_NOTFOUND);
    /* ^grok-4\.3-\d{8}$, without a provider (x-ai's model_match: contains grok). */
    p = find(NULL, "grok-4.3-20260115", T_2025_06_01_NOON, &m);
    ck_assert_str_eq(m.provider, "x-ai");
    ck_assert_str_eq(m.model, "grok-4.3");
    /* o1/o3 without a provider: only openai's model_match regex ^o[134] picks
     * openai over azure, which comes first in the catalogue. */
    p = find(NULL, "o1", T_2025_06_01_NOON, &m);
    ck_assert_str_eq(m.provider, "openai");
    ck_assert_str_eq(m.model, "o1");
    assert_flat(&p.input, 15);
    assert_flat(&p.output, 60);
    find(NULL, "o3-2025-04-16", T_2025_06_01_NOON, &m);
    ck_assert_str_eq(m.provider, "openai");
    ck_assert_str_eq(m.model, "o3");
}
END_TEST

START_TEST(test_tiered)
{
    ah_price_match_t m;
    ah_price_t p = find("google", "gemini-2.5-pro", T_2025_06_01_NOON, &m);
    ck_assert_str_eq(m.model, "gemini-2.5-pro");
    ck_assert_double_eq_tol(p.input.base, 1.25, TOLERANCE);
    ck_assert_int_eq(p.input.ntiers, 1);
    ck_assert_int_eq(p.input.tiers[0].start, 200000);
    ck_assert_double_eq_tol(p.input.tiers[0].mtok, 2.5, TOLERANCE);
    ck_assert_double_eq_tol(p.output.base, 10, TOLERANCE);
    ck_assert_double_eq_tol(p.output.tiers[0].mtok, 15, TOLERANCE);

    /* 200,000 input tokens is not above the tier: base rates.
     * 200000 * 1.25 + 1000 * 10 = 260,000 -> $0.26 */
    ah_usage_t u = {.input_tokens = 200000, .output_tokens = 1000};
    ck_assert_double_eq_tol(ah_price_cost(&p, &u), 0.26, TOLERANCE);
    /* 200,001: every token at the tier rate (a cliff, not marginal).
     * 200001 * 2.5 + 1000 * 15 = 515,002.5 -> $0.5150025 */
    u.input_tokens = 200001;
    ck_assert_double_eq_tol(ah_price_cost(&p, &u), 0.5150025, TOLERANCE);
    /* Cache reads take their own tier by the whole prompt's size:
     * (250000 - 50000) * 2.5 + 50000 * 0.25 + 1000 * 15 = 527,500 -> $0.5275 */
    u = (ah_usage_t){.input_tokens = 250000, .cache_read_tokens = 50000, .output_tokens = 1000};
    ck_assert_double_eq_tol(ah_price_cost(&p, &u), 0.5275, TOLERANCE);
}
END_TEST

START_TEST(test_conditional_dates)
{
    ah_price_match_t m;
    /* o3: 10/40 until 2025-06-09, 2/8 from 2025-06-10 00:00 UTC. */
    ah_price_t p = find("openai", "o3", T_O3_CUT - 1, &m);
    ck_assert_str_eq(m.model, "o3");
    assert_flat(&p.input, 10);
    assert_flat(&p.output, 40);
    p = find("openai", "o3", T_O3_CUT, &m);
    assert_flat(&p.input, 2);
    assert_flat(&p.output, 8);
    /* Before the first dated entry the first (undated) one holds. */
    p = find("openai", "o3", 0, &m);
    assert_flat(&p.input, 10);

    /* claude-sonnet-4-6: tiered, then flat from 2026-03-13. */
    p = find("anthropic", "claude-sonnet-4-6", T_SONNET_46_FLAT - 1, &m);
    ck_assert_int_eq(p.input.ntiers, 1);
    ck_assert_double_eq_tol(p.input.tiers[0].mtok, 6, TOLERANCE);
    p = find("anthropic", "claude-sonnet-4-6", T_SONNET_46_FLAT, &m);
    assert_flat(&p.input, 3);
    assert_flat(&p.output, 15);
}
END_TEST

START_TEST(test_time_of_day)
{
    ah_price_match_t m;
    /* deepseek-chat: standard 0.27 from 00:30 to 16:30 UTC, off-peak 0.135 otherwise. */
    time_t day = T_2025_06_01_NOON - 12 * 3600;
    ah_price_t p = find("deepseek", "deepseek-chat", day + 12 * 3600, &m);
    ck_assert_str_eq(m.model, "deepseek-chat");
    ck_assert_double_eq_tol(p.input.base, 0.27, TOLERANCE);
    p = find("deepseek", "deepseek-chat", day + 30 * 60, &m);
    ck_assert_double_eq_tol(p.input.base, 0.27, TOLERANCE);
    p = find("deepseek", "deepseek-chat", day + 30 * 60 - 1, &m);
    ck_assert_double_eq_tol(p.input.base, 0.135, TOLERANCE);
    p = find("deepseek", "deepseek-chat", day + 16 * 3600 + 30 * 60, &m);
    ck_assert_double_eq_tol(p.input.base, 0.135, TOLERANCE);
    ck_assert_double_eq_tol(p.output.base, 0.55, TOLERANCE);
}
END_TEST

START_TEST(test_not_found)
{
    ah_price_t p;
    ck_assert_int_eq(ah_prices_find(cat, NULL, "no-such-model-anywhere", 0, &p), AH_E_NOTFOUND);
    ck_assert_int_eq(ah_prices_find(cat, "openai", "no-such-model-anywhere", 0, &p), AH_E_NOTFOUND);
    ck_assert_int_eq(ah_prices_find(cat, "nobody", "vendor/some/deep/name", 0, &p), AH_E_NOTFOUND);
    ck_assert_int_eq(ah_prices_find(cat, NULL, "", 0, &p), AH_E_NOTFOUND);
    ck_assert_int_eq(ah_prices_find(cat, NULL, "openai/", 0, &p), AH_E_NOTFOUND);
    char longname[1000];
    memset(longname, 'g', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    ck_assert_int_eq(ah_prices_find(cat, NULL, longname, 0, &p), AH_E_NOTFOUND);
    ck_assert_int_eq(ah_prices_find(cat, NULL, NULL, 0, &p), AH_E_INVAL);
    ck_assert_int_eq(ah_prices_find(NULL, NULL, "gpt-4o", 0, &p), AH_E_INVAL);
    ck_assert_int_eq(ah_prices_find(cat, NULL, "gpt-4o", 0, NULL), AH_E_INVAL);
}
END_TEST

START_TEST(test_cost_cache)
{
    ah_price_t p = find("anthropic", "claude-3-5-haiku-20241022", T_2025_06_01_NOON, NULL);
    /* 10,000 prompt tokens of which 2,000 read from and 3,000 written to the cache:
     * 5000 * 0.8 + 2000 * 0.08 + 3000 * 1 + 500 * 4 = 4000 + 160 + 3000 + 2000
     * = 9,160 -> $0.00916 */
    ah_usage_t u = {.input_tokens = 10000,
                    .cache_read_tokens = 2000,
                    .cache_write_tokens = 3000,
                    .output_tokens = 500,
                    .reasoning_tokens = 100};
    ck_assert_double_eq_tol(ah_price_cost(&p, &u), 0.00916, TOLERANCE);
    /* No cache: 1,000,000 * 0.8 + 1,000,000 * 4 = $4.80 */
    u = (ah_usage_t){.input_tokens = 1000000, .output_tokens = 1000000};
    ck_assert_double_eq_tol(ah_price_cost(&p, &u), 4.8, TOLERANCE);
    /* Cache counts above the prompt never make uncached input negative:
     * 0 * 0.8 + 200 * 0.08 + 50 * 1 = 66 -> $0.000066 */
    u = (ah_usage_t){.input_tokens = 100, .cache_read_tokens = 200, .cache_write_tokens = 50};
    ck_assert_double_eq_tol(ah_price_cost(&p, &u), 0.000066, TOLERANCE);
    /* Negative counts count as zero. */
    u = (ah_usage_t){.input_tokens = -5, .output_tokens = -5};
    ck_assert_double_eq_tol(ah_price_cost(&p, &u), 0, TOLERANCE);

    /* gpt-4o has no cache-write rate: writes cost the input rate.
     * 1000 * 2.5 + 1000 * 1.25 + 1000 * 2.5 + 1000 * 10 = 16,250 -> $0.01625 */
    p = find("openai", "gpt-4o", T_2025_06_01_NOON, NULL);
    u = (ah_usage_t){.input_tokens = 3000,
                     .cache_read_tokens = 1000,
                     .cache_write_tokens = 1000,
                     .output_tokens = 1000};
    ck_assert_double_eq_tol(ah_price_cost(&p, &u), 0.01625, TOLERANCE);

    /* An embedding model has no output rate: output costs nothing.
     * 1,000,000 * 0.02 = $0.02 */
    p = find("openai", "text-embedding-3-small", T_2025_06_01_NOON, NULL);
    ck_assert_double_lt(p.output.base, 0);
    u = (ah_usage_t){.input_tokens = 1000000, .output_tokens = 10};
    ck_assert_double_eq_tol(ah_price_cost(&p, &u), 0.02, TOLERANCE);

    /* A free model ({} in genai-prices) has explicit zero rates. */
    p = find("openrouter", "deepseek/deepseek-r1:free", T_2025_06_01_NOON, NULL);
    ck_assert_double_eq_tol(p.input.base, 0, TOLERANCE);
    ck_assert_double_eq_tol(p.output.base, 0, TOLERANCE);

    ck_assert_double_eq_tol(ah_price_cost(NULL, &u), 0, TOLERANCE);
    ck_assert_double_eq_tol(ah_price_cost(&p, NULL), 0, TOLERANCE);
}
END_TEST

START_TEST(test_cost_unsorted_tiers)
{
    /* A config-built price with tiers out of order still picks the highest
     * start below the prompt. */
    ah_price_t p = {
        .input = {.base = 1,
                  .ntiers = 2,
                  .tiers = {{.start = 500000, .mtok = 3}, {.start = 100000, .mtok = 2}}},
        .output = {.base = -1},
        .cache_read = {.base = -1},
        .cache_write = {.base = -1}};
    ah_usage_t u = {.input_tokens = 200000};
    ck_assert_double_eq_tol(ah_price_cost(&p, &u), 0.4, TOLERANCE);
    u.input_tokens = 600000;
    ck_assert_double_eq_tol(ah_price_cost(&p, &u), 1.8, TOLERANCE);
    u.input_tokens = 100000;
    ck_assert_double_eq_tol(ah_price_cost(&p, &u), 0.1, TOLERANCE);
}
END_TEST

START_TEST(test_bad_files)
{
    ah_prices_t *p = (ah_prices_t *)&p; /* must be overwritten with NULL */
    ck_assert_int_eq(ah_prices_load("/nonexistent/prices.json", &p), AH_E_IO);
    ck_assert_ptr_null(p);
    ck_assert_int_eq(ah_prices_load("/tmp", &p), AH_E_IO);
    ck_assert_ptr_null(p);
    ck_assert_int_eq(ah_prices_load(NULL, &p), AH_E_INVAL);

    static const char *const bad[] = {
        "",
        "{\"providers\": [",
        "[]",
        "{\"providers\": {}}",
        "{\"providers\": [{\"models\": []}]}",
        "{\"providers\": [{\"id\": \"x\"}]}",
        "{\"providers\": [{\"id\": \"x\", \"models\": [{\"id\": \"m\", \"prices\": {}}]}]}",
        "{\"providers\": [{\"id\": \"x\", \"models\": [{\"id\": \"m\", \"match\": {\"like\": "
        "\"m\"},"
        " \"prices\": {}}]}]}",
        "{\"providers\": [{\"id\": \"x\", \"models\": [{\"id\": \"m\", \"match\": {\"or\": []},"
        " \"prices\": {}}]}]}",
        "{\"providers\": [{\"id\": \"x\", \"models\": [{\"id\": \"m\", \"match\": {\"equals\": 1},"
        " \"prices\": {}}]}]}",
        "{\"providers\": [{\"id\": \"x\", \"models\": [{\"id\": \"m\", \"match\": {\"equals\": "
        "\"m\","
        " \"contains\": \"m\"}, \"prices\": {}}]}]}",
        "{\"providers\": [{\"id\": \"x\", \"models\": [{\"id\": \"m\", \"match\": {\"equals\": "
        "\"m\"},"
        " \"prices\": {\"input_mtok\": \"cheap\"}}]}]}",
        "{\"providers\": [{\"id\": \"x\", \"models\": [{\"id\": \"m\", \"match\": {\"equals\": "
        "\"m\"},"
        " \"prices\": {\"input_mtok\": -1}}]}]}",
        "{\"providers\": [{\"id\": \"x\", \"models\": [{\"id\": \"m\", \"match\": {\"equals\": "
        "\"m\"},"
        " \"prices\": {\"input_mtok\": {\"base\": 1, \"tiers\": [{\"start\": 1, \"price\": 1},"
        " {\"start\": 2, \"price\": 1}, {\"start\": 3, \"price\": 1}, {\"start\": 4, \"price\": 1},"
        " {\"start\": 5, \"price\": 1}]}}}]}]}",
        "{\"providers\": [{\"id\": \"x\", \"models\": [{\"id\": \"m\", \"match\": {\"equals\": "
        "\"m\"},"
        " \"prices\": [{\"constraint\": {\"start_date\": \"June 2025\"}, \"prices\": {}}]}]}]}",
        "{\"providers\": [{\"id\": \"x\", \"models\": [{\"id\": \"m\", \"match\": {\"equals\": "
        "\"m\"},"
        " \"prices\": []}]}]}",
        "{\"providers\": [{\"id\": \"x\", \"fallback_model_providers\": [\"y\"], \"models\": []}]}",
        "{\"providers\": [{\"id\": \"x\", \"id\": \"y\", \"models\": []}]}",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        p = (ah_prices_t *)&p;
        ck_assert_msg(load_text(bad[k], &p) == AH_E_PARSE, "accepted bad catalogue %zu", k);
        ck_assert_ptr_null(p);
    }

    /* Clauses nested past the depth limit. */
    char deep[4096];
    size_t n = (size_t)snprintf(deep, sizeof deep,
                                "{\"providers\": [{\"id\": \"x\", \"models\": [{\"id\": \"m\", "
                                "\"match\": ");
    for (int d = 0; d < 40; d++)
        n += (size_t)snprintf(deep + n, sizeof deep - n, "{\"or\": [");
    n += (size_t)snprintf(deep + n, sizeof deep - n, "{\"equals\": \"m\"}");
    for (int d = 0; d < 40; d++)
        n += (size_t)snprintf(deep + n, sizeof deep - n, "]}");
    snprintf(deep + n, sizeof deep - n, ", \"prices\": {}}]}]}");
    ck_assert_int_eq(load_text(deep, &p), AH_E_PARSE);

    /* The smallest good catalogue. */
    ck_assert_int_eq(load_text("{\"providers\": []}", &p), AH_E_OK);
    ck_assert_int_eq(ah_prices_count(p), 0);
    ah_price_t price;
    ck_assert_int_eq(ah_prices_find(p, NULL, "gpt-4o", 0, &price), AH_E_NOTFOUND);
    ah_prices_free(p);
    ah_prices_free(NULL);
}
END_TEST

START_TEST(test_regex_translation)
{
    /* Python re patterns the catalogue may carry, in a small catalogue. */
    static const char text[] =
        "{\"providers\": [{\"id\": \"t\", \"models\": ["
        "{\"id\": \"lookahead\", \"match\": {\"regex\": \"^foo-(?=bar)\"}, \"prices\": "
        "{\"input_mtok\": 1}},"
        "{\"id\": \"lookbehind\", \"match\": {\"regex\": \"(?<=x)yz\"}, \"prices\": "
        "{\"input_mtok\": 2}},"
        "{\"id\": \"classes\", \"match\": {\"regex\": "
        "\"^m\\\\d+\\\\.\\\\w+\\\\s?[\\\\d\\\\-]*$\"}, "
        "\"prices\": {\"input_mtok\": 3}},"
        "{\"id\": \"group\", \"match\": {\"regex\": \"(?:mi|code)stral-l[a-z]+?$\"}, "
        "\"prices\": {\"input_mtok\": 4}},"
        "{\"id\": \"optional\", \"match\": {\"regex\": \"^abc?\\\\b\"}, \"prices\": "
        "{\"input_mtok\": 5}},"
        "{\"id\": \"and\", \"match\": {\"and\": [{\"starts_with\": \"p-\"}, "
        "{\"ends_with\": \"-q\"}, {\"contains\": \"mid\"}]}, \"prices\": {\"input_mtok\": 6}}"
        "]}]}";
    ah_prices_t *p = NULL;
    ah_price_t price;
    ah_price_match_t m;
    ah_prices_stats_t s;
    ck_assert_int_eq(load_text(text, &p), AH_E_OK);
    ah_prices_stats(p, &s);
    ck_assert_int_eq(s.regexes, 2);       /* classes, group */
    ck_assert_int_eq(s.regex_prefix, 2);  /* lookahead -> "foo-", optional -> "ab" */
    ck_assert_int_eq(s.regex_dropped, 1); /* lookbehind */

    static const struct {
        const char *name;
        const char *model; /* NULL: not found */
    } cases[] = {
        {"foo-bar", "lookahead"},
        {"foo-baz", "lookahead"}, /* the prefix over-matches */
        {"xyz", NULL},
        {"m12.abc 3-4", "classes"},
        {"m12.abc", "classes"},
        {"m12xabc", NULL},
        {"m.abc", NULL},
        {"codestral-latest", "group"},
        {"ministral-l", NULL},
        {"ab", "optional"},
        {"abd", "optional"},
        {"p-mid-q", "and"},
        {"p-mi-q", NULL},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ah_err_t rc = ah_prices_find_match(p, NULL, cases[k].name, 0, &price, &m);
        if (cases[k].model) {
            ck_assert_msg(rc == AH_E_OK, "%s not found", cases[k].name);
            ck_assert_str_eq(m.model, cases[k].model);
        } else {
            ck_assert_msg(rc == AH_E_NOTFOUND, "%s matched %s", cases[k].name, rc ? "?" : m.model);
        }
    }
    ah_prices_free(p);
}
END_TEST

/* Every model found by its own id, under its own provider. An id misses when
 * its own clause does not take it: 51 of the 1,466 at 47df840a, all of that
 * kind (checked against a Python replica of the rules): Bedrock's
 * "regional.*" ids whose clauses list the region prefixes (us., eu., ...),
 * Fireworks ids whose clauses want "accounts/fireworks/models/<id>", family
 * ids such as mistral's "codestral" whose clause lists "codestral-latest".
 * Such a name then falls through to another provider (17) or to nothing (34).
 * No model is shadowed by an earlier model of its own provider. */
START_TEST(test_every_id)
{
    json_error_t jerr;
    json_t *root = json_load_file(catalogue_path, 0, &jerr);
    ck_assert_ptr_nonnull(root);
    json_t *providers = json_object_get(root, "providers");
    int total = 0, exact = 0, other = 0, missing = 0, shown = 0;
    for (size_t k = 0; k < json_array_size(providers); k++) {
        json_t *pv = json_array_get(providers, k);
        const char *pid = json_string_value(json_object_get(pv, "id"));
        json_t *models = json_object_get(pv, "models");
        for (size_t j = 0; j < json_array_size(models); j++) {
            const char *mid = json_string_value(json_object_get(json_array_get(models, j), "id"));
            ah_price_t price;
            ah_price_match_t m;
            total++;
            ah_err_t rc = ah_prices_find_match(cat, pid, mid, T_2025_06_01_NOON, &price, &m);
            if (rc == AH_E_OK && strcmp(m.provider, pid) == 0 && strcmp(m.model, mid) == 0) {
                exact++;
                continue;
            }
            if (rc == AH_E_OK)
                other++;
            else
                missing++;
            if (shown++ < 12)
                fprintf(stderr, "  %s/%s -> %s%s%s\n", pid, mid, rc ? "not found" : m.provider,
                        rc ? "" : "/", rc ? "" : m.model);
        }
    }
    fprintf(stderr,
            "every id: %d models, %d find themselves; %d ids their own clause does not take: "
            "%d find another entry, %d none\n",
            total, exact, other + missing, other, missing);
    json_decref(root);
    ck_assert_int_eq(total, 1466);
    ck_assert_int_ge(exact, total * 96 / 100);
}
END_TEST

/* Not a benchmark (sanitizers slow it several-fold): a guard against a
 * lookup that became quadratic, and the numbers for the log. */
START_TEST(test_speed)
{
    ah_prices_t *p = NULL;
    int64_t t0 = ah_now_us();
    ck_assert_int_eq(ah_prices_load(catalogue_path, &p), AH_E_OK);
    int64_t load_us = ah_now_us() - t0;
    static const char *const names[] = {"gpt-4o", "claude-3-5-haiku-20241022", "openai/gpt-4o-mini",
                                        "gemini-2.5-pro", "no-such-model-anywhere"};
    enum { ROUNDS = 2000 };
    ah_price_t price;
    t0 = ah_now_us();
    for (int r = 0; r < ROUNDS; r++)
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
            ah_prices_find(p, NULL, names[k], T_2025_06_01_NOON, &price);
    double find_us = (double)(ah_now_us() - t0) / (ROUNDS * (sizeof names / sizeof names[0]));
    fprintf(stderr, "speed: load %lld us, find %.2f us on average\n", (long long)load_us, find_us);
    ck_assert_double_lt(find_us, 1000);
    ah_prices_free(p);
}
END_TEST

static Suite *prices_suite(void)
{
    Suite *s = suite_create("prices");
    TCase *tc = tcase_create("catalogue");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_load_counts);
    tcase_add_test(tc, test_entry_iterates);
    tcase_add_test(tc, test_gpt_4o);
    tcase_add_test(tc, test_gpt_4o_mini);
    tcase_add_test(tc, test_provider_prefix);
    tcase_add_test(tc, test_claude_haiku);
    tcase_add_test(tc, test_provider_aliases);
    tcase_add_test(tc, test_regex_match);
    tcase_add_test(tc, test_tiered);
    tcase_add_test(tc, test_conditional_dates);
    tcase_add_test(tc, test_time_of_day);
    tcase_add_test(tc, test_not_found);
    tcase_add_test(tc, test_cost_cache);
    tcase_add_test(tc, test_every_id);
    tcase_add_test(tc, test_speed);
    suite_add_tcase(s, tc);

    TCase *files = tcase_create("files");
    tcase_add_test(files, test_bad_files);
    tcase_add_test(files, test_regex_translation);
    tcase_add_test(files, test_cost_unsorted_tiers);
    suite_add_tcase(s, files);
    return s;
}

int main(void)
{
    data_path();
    return ah_check_run(prices_suite());
}
