/* dashboard_page.c - web/dashboard.html, embedded in the binary.
 *
 * The assembler's .incbin directive copies the file's bytes into .rodata at
 * build time: no generator, no xxd, no build step for the page itself, and
 * both gcc (through GNU as) and clang (its integrated assembler) read it.
 * The path is relative to the directory the compiler runs in, the
 * repository's root (the Makefile runs there, and lists the page as a
 * prerequisite of this object: -MMD does not see .incbin). ELF only, which
 * is what ahorro builds for.
 *
 * A NUL follows the bytes (so the page is also a C string), outside the
 * length. The length is a label difference within one section, a constant
 * the assembler computes: no relocation, no pointer arithmetic across
 * objects in C. */
#include "server/dashboard.h"

__asm__(".pushsection .rodata.ah_dashboard,\"a\",@progbits\n"
        ".balign 16\n"
        ".globl ah_dashboard_html\n"
        ".type ah_dashboard_html, @object\n"
        "ah_dashboard_html:\n"
        ".incbin \"web/dashboard.html\"\n"
        "ah_dashboard_html_end:\n"
        ".byte 0\n"
        ".size ah_dashboard_html, . - ah_dashboard_html\n"
        ".balign 8\n"
        ".globl ah_dashboard_html_len\n"
        ".type ah_dashboard_html_len, @object\n"
        "ah_dashboard_html_len:\n"
        ".quad ah_dashboard_html_end - ah_dashboard_html\n"
        ".size ah_dashboard_html_len, 8\n"
        ".popsection\n");
