/* path.h - where the running binary is, to find the data shipped beside it. */
#ifndef AH_PATH_H
#define AH_PATH_H

#include <stddef.h>

/* The directory of the running executable into buf[n]; 0 on success, -1 when
 * it cannot be known (buf is then ""). */
int ah_exe_dir(char *buf, size_t n);

#endif
