/* path.c - where the running binary is (path.h). */
#include "core/path.h"

#include <string.h>
#include <unistd.h>

int ah_exe_dir(char *buf, size_t n)
{
    if (n == 0)
        return -1;
    buf[0] = '\0';
    ssize_t len = readlink("/proc/self/exe", buf, n - 1);
    if (len <= 0)
        return buf[0] = '\0', -1;
    buf[len] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash)
        return buf[0] = '\0', -1;
    *slash = '\0';
    return 0;
}
