/* lmp_read_file (see readfile.h). */
#include "common/readfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#define READ_FILE_MAX (1u << 30)

int lmp_read_file(const char *path, char **ret, size_t *ret_len) {
        struct stat st;
        char *buf;
        int r = 0;
        FILE *f = fopen(path, "rbe");

        if (!f)
                return -errno;
        if (fstat(fileno(f), &st) < 0) {
                r = -errno;
                goto out;
        }
        if (st.st_size > READ_FILE_MAX) {
                r = -EFBIG;
                goto out;
        }
        buf = malloc((size_t)st.st_size + 1);
        if (!buf) {
                r = -ENOMEM;
                goto out;
        }
        if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
                free(buf);
                r = -EIO;
                goto out;
        }
        buf[st.st_size] = '\0';
        *ret = buf;
        if (ret_len)
                *ret_len = (size_t)st.st_size;
out:
        fclose(f);
        return r;
}
