/* open.c - find and load a rank file where ahorro's commands look for it. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/path.h"
#include "tokenize/bpe.h"

#define OPEN_PATH_BYTES 4200

ah_bpe_t *ah_bpe_open_default(const char *dir, const char *name, char *err, size_t errlen)
{
    char exe[4096], paths[3][OPEN_PATH_BYTES];
    const char *cands[8];
    int n = 0;
    const char *env = getenv("AHORRO_TOKENIZERS_DIR");
    if (dir)
        cands[n++] = dir;
    else {
        if (env && *env)
            cands[n++] = env;
        if (ah_exe_dir(exe, sizeof exe) == 0) {
            snprintf(paths[0], OPEN_PATH_BYTES, "%s/data", exe);
            snprintf(paths[1], OPEN_PATH_BYTES, "%s/../data", exe);
            snprintf(paths[2], OPEN_PATH_BYTES, "%s/../share/ahorro", exe);
            for (int i = 0; i < 3; i++)
                cands[n++] = paths[i];
        }
        cands[n++] = "build/data";
    }
    for (int i = 0; i < n; i++) {
        char file[OPEN_PATH_BYTES + 64];
        snprintf(file, sizeof file, "%s/%s.tiktoken", cands[i], name);
        if (access(file, R_OK) != 0)
            continue;
        ah_bpe_t *e = NULL;
        if (ah_bpe_load(cands[i], name, &e, err, errlen) == AH_E_OK)
            return e;
        return NULL;
    }
    snprintf(err, errlen,
             "no %s.tiktoken found (run scripts/build-tokenizers.sh, or set "
             "AHORRO_TOKENIZERS_DIR)",
             name);
    return NULL;
}
