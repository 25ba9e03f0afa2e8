/* lmp_atomic_open / lmp_atomic_close (see atomicfile.h). */
#include "common/atomicfile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int lmp_atomic_open(const char *path, struct lmp_atomic_file *af, struct lmp_error *err) {
        *af = (struct lmp_atomic_file){ .path = path };
        if (asprintf(&af->tmp_path, "%s.tmp", path) < 0) {
                af->tmp_path = NULL;
                return lmp_error_set(err, -ENOMEM, "out of memory");
        }
        af->f = fopen(af->tmp_path, "wbe");
        if (!af->f) {
                int r = lmp_error_set(err, -errno, "%s: %s", af->tmp_path, strerror(errno));
                free(af->tmp_path);
                af->tmp_path = NULL;
                return r;
        }
        return 0;
}

int lmp_atomic_close(struct lmp_atomic_file *af, int r, struct lmp_error *err) {
        if (!af->f)
                return r;
        if (fclose(af->f) != 0 && r >= 0)
                r = lmp_error_set(err, -EIO, "%s: write failed", af->tmp_path);
        af->f = NULL;
        if (r >= 0 && rename(af->tmp_path, af->path) < 0)
                r = lmp_error_set(err, -errno, "%s: %s", af->path, strerror(errno));
        if (r < 0)
                unlink(af->tmp_path);
        free(af->tmp_path);
        af->tmp_path = NULL;
        return r;
}
