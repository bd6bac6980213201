/* test_multipart.c - the Files API's multipart/form-data parser
 * (batch/multipart.h): boundaries from Content-Type, parts with their
 * names, file names and bytes (binary, CRLFs and boundary look-alikes
 * inside), preamble and epilogue, and refusals of malformed or oversized
 * bodies. */
#include <check.h>

#include "check_run.h"
#include <stdio.h>
#include <string.h>

#include "batch/multipart.h"

START_TEST(boundary_from_content_type)
{
    char b[AH_MULTIPART_MAX_BOUNDARY + 1];
    ck_assert_int_eq(ah_multipart_boundary("multipart/form-data; boundary=abc123", b), AH_E_OK);
    ck_assert_str_eq(b, "abc123");
    ck_assert_int_eq(
        ah_multipart_boundary("Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a b:c\"", b), AH_E_OK);
    ck_assert_str_eq(b, "a b:c");
    ck_assert_int_eq(ah_multipart_boundary("multipart/form-data; boundary=----formdata-undici-0"
                                           "12345678901",
                                           b),
                     AH_E_OK);
    ck_assert_str_eq(b, "----formdata-undici-012345678901");
    const char *bad[] = {NULL,
                         "",
                         "application/json",
                         "multipart/form-datax; boundary=a",
                         "multipart/mixed; boundary=a",
                         "multipart/form-data",
                         "multipart/form-data; boundary=",
                         "multipart/form-data; boundary=\"unterminated",
                         "multipart/form-data; boundary=\"ends in space \"",
                         "multipart/form-data; boundary=a<b",
                         "multipart/form-data; boundary="
                         "12345678901234567890123456789012345678901234567890123456789012345678901"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(ah_multipart_boundary(bad[i], b) == AH_E_INVAL, "case %zu accepted", i);
}
END_TEST

START_TEST(parts)
{
    static const char body[] = "preamble to ignore\r\n"
                               "--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"purpose\"\r\n"
                               "\r\n"
                               "batch\r\n"
                               "--XyZ\r\n"
                               "content-disposition: form-data; name=\"file\"; "
                               "filename=\"in \\\"put\\\".jsonl\"\r\n"
                               "Content-Type: application/jsonl\r\n"
                               "\r\n"
                               "{\"a\":1}\r\n-XyZ and --XYZ: not delimiters\r\n\0bin\r\n"
                               "--XyZ--\r\n"
                               "epilogue --XyZ";
    ah_multipart_part_t p[4];
    int n = 0;
    char err[200];
    ck_assert_int_eq(ah_multipart_parse(body, sizeof body - 1, "XyZ", p, 4, &n, err, sizeof err),
                     AH_E_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(p[0].name, "purpose");
    ck_assert_int_eq(p[0].has_filename, 0);
    ck_assert_int_eq(p[0].len, 5);
    ck_assert(memcmp(p[0].data, "batch", 5) == 0);
    ck_assert_str_eq(p[1].name, "file");
    ck_assert_str_eq(p[1].filename, "in \"put\".jsonl");
    ck_assert_int_eq(p[1].has_filename, 1);
    ck_assert_str_eq(p[1].content_type, "application/jsonl");
    static const char data[] = "{\"a\":1}\r\n-XyZ and --XYZ: not delimiters\r\n\0bin";
    ck_assert_int_eq(p[1].len, sizeof data - 1);
    ck_assert(memcmp(p[1].data, data, sizeof data - 1) == 0);
    ck_assert_ptr_eq(ah_multipart_find(p, n, "file"), &p[1]);
    ck_assert_ptr_null(ah_multipart_find(p, n, "nope"));

    /* an empty part, a body opening with its delimiter, padding after it */
    static const char b2[] = "--b  \r\nContent-Disposition: form-data; name=e\r\n\r\n\r\n--b--";
    ck_assert_int_eq(ah_multipart_parse(b2, sizeof b2 - 1, "b", p, 4, &n, err, sizeof err),
                     AH_E_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(p[0].name, "e");
    ck_assert_int_eq(p[0].len, 0);
}
END_TEST

START_TEST(refusals)
{
    struct {
        const char *body;
        ah_err_t want;
    } cases[] = {
        {"", AH_E_PARSE},
        {"no delimiter at all", AH_E_PARSE},
        {"--b\r\nContent-Disposition: form-data; name=x\r\n\r\nno closing", AH_E_PARSE},
        {"--b\r\nContent-Disposition: form-data; name=x\r\nno blank line", AH_E_PARSE},
        {"--b\r\n\r\nno disposition\r\n--b--", AH_E_PARSE},
        {"--b\r\nContent-Disposition: attachment; name=x\r\n\r\nx\r\n--b--", AH_E_PARSE},
        {"--b\r\nContent-Disposition: form-data; name=\"open\r\n\r\nx\r\n--b--", AH_E_PARSE},
        {"--b\r\nno colon here\r\n\r\nx\r\n--b--", AH_E_PARSE},
        {"--bjunk\r\n", AH_E_PARSE},
        {"--b\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--b\r\n"
         "Content-Disposition: form-data; name=b\r\n\r\n2\r\n--b\r\n"
         "Content-Disposition: form-data; name=c\r\n\r\n3\r\n--b--",
         AH_E_TOOBIG},
    };
    ah_multipart_part_t p[2];
    char err[200];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int n = -1;
        err[0] = '\0';
        ah_err_t rc = ah_multipart_parse(cases[i].body, strlen(cases[i].body), "b", p, 2, &n, err,
                                         sizeof err);
        ck_assert_msg(rc == cases[i].want, "case %zu: %d (%s)", i, rc, err);
        ck_assert_msg(err[0], "case %zu: no reason", i);
    }
    /* a header block over its limit, a name over its limit */
    char big[AH_MULTIPART_MAX_HEADER_BLOCK + 200];
    int k = snprintf(big, sizeof big, "--b\r\nContent-Disposition: form-data; name=x\r\nX-Pad: ");
    memset(big + k, 'a', AH_MULTIPART_MAX_HEADER_BLOCK);
    snprintf(big + k + AH_MULTIPART_MAX_HEADER_BLOCK, 40, "\r\n\r\nx\r\n--b--");
    int n;
    ck_assert_int_eq(ah_multipart_parse(big, strlen(big), "b", p, 2, &n, err, sizeof err),
                     AH_E_TOOBIG);
    k = snprintf(big, sizeof big, "--b\r\nContent-Disposition: form-data; name=\"");
    memset(big + k, 'n', AH_MULTIPART_MAX_NAME + 1);
    snprintf(big + k + AH_MULTIPART_MAX_NAME + 1, 40, "\"\r\n\r\nx\r\n--b--");
    ck_assert_int_eq(ah_multipart_parse(big, strlen(big), "b", p, 2, &n, err, sizeof err),
                     AH_E_PARSE);
    ck_assert_int_eq(ah_multipart_parse("--b--", 5, "", p, 2, &n, err, sizeof err), AH_E_PARSE);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("multipart");
    TCase *t = tcase_create("multipart");
    tcase_add_test(t, boundary_from_content_type);
    tcase_add_test(t, parts);
    tcase_add_test(t, refusals);
    suite_add_tcase(s, t);
    return ah_check_run(s);
}
