/* Weight store construction (see store.h). The copy into the memfd streams
 * through the memfd's own mapping in 64 MiB steps, so loading needs no
 * staging buffer; the source file's page cache is dropped behind it, so
 * that after loading the machine holds one copy of the weights, not two. */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <numa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "gguf/gguf.h"
#include "quant/blocks.h"
#include "quant/repack.h"

#define COPY_STEP (64u << 20)

const char *lmp_store_mode_name(enum lmp_store_mode m) {
        return m == LMP_STORE_MODE_MMAP ? "mmap" : "memfd";
}

static void apply_numa(void *addr, size_t size, enum lmp_store_numa numa) {
        if (numa == LMP_STORE_NUMA_OFF || numa_available() < 0)
                return;
        if (numa == LMP_STORE_NUMA_INTERLEAVE)
                numa_interleave_memory(addr, size, numa_all_nodes_ptr);
        else
                numa_setlocal_memory(addr, size);
}

/* The matrices worth repacking: those the forward pass multiplies by (a
 * layer's projections, the output projection, and the token embeddings
 * when they are that projection too, tied), not those it only reads a row
 * of per token. */
static bool repackable(const struct lmp_gguf *g, const struct lmp_gguf_tensor *t) {
        static const char *const names[] = { "attn_q", "attn_k", "attn_v", "attn_qkv", "attn_output",
                                             "ffn_gate", "ffn_up", "ffn_down" };
        char name[64];
        unsigned layer;
        int end = 0;
        if (t->name.len >= sizeof(name))
                return false;
        memcpy(name, t->name.ptr, t->name.len);
        name[t->name.len] = '\0';
        if (strcmp(name, "output.weight") == 0)
                return true;
        if (strcmp(name, "token_embd.weight") == 0)
                return lmp_gguf_find_tensor(g, "output.weight") == NULL;
        if (sscanf(name, "blk.%u.%n", &layer, &end) != 1 || end == 0)
                return false;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                const size_t len = strlen(names[i]);
                if (strncmp(name + end, names[i], len) == 0 && strcmp(name + end + len, ".weight") == 0)
                        return true;
        }
        return false;
}

/* Rewrites every q4_K, q6_K, q4_0 and q5_0 matrix the forward pass only multiplies by,
 * whose rows come in groups of 16, in its 16-row layout, tensor type id
 * included (see quant/repack.h): in place, so the store keeps the file's
 * size. A file that does not parse is left as it is, for the worker to
 * report. */
static int repack(uint8_t *base, uint64_t size, struct lmp_store *s, struct lmp_error *err) {
        struct lmp_gguf *g;
        struct lmp_error perr = { 0 };
        uint8_t *tmp = NULL;
        size_t tmp_size = 0;

        if (lmp_gguf_open_mem(base, size, &g, &perr) < 0)
                return 0;
        for (uint64_t i = 0; i < g->n_tensors; i++) {
                const struct lmp_gguf_tensor *t = &g->tensors[i];
                const uint32_t type = lmp_type_r16_of(t->type);
                if (!type || t->n_dims != 2 ||
                    t->ne[1] % LMP_R16_ROWS || !repackable(g, t))
                        continue;
                const size_t need = lmp_r16_group_size(t->type, (int64_t)t->ne[0]);
                if (need > tmp_size) {
                        free(tmp);
                        tmp_size = need;
                        tmp = malloc(tmp_size);
                        if (!tmp) {
                                lmp_gguf_free(g);
                                return lmp_error_set(err, -ENOMEM, "out of memory repacking the store");
                        }
                }
                lmp_repack_r16_inplace(t->type, base + (g->data_offset + t->offset), (int64_t)t->ne[0],
                                       (int64_t)t->ne[1], tmp);
                memcpy(base + lmp_gguf_tensor_type_offset(t), &type, sizeof(type));
                s->n_repacked++;
                s->repacked_bytes += t->size;
        }
        free(tmp);
        lmp_gguf_free(g);
        return 0;
}

static int copy_into_memfd(int src, int memfd, uint64_t size, enum lmp_store_numa numa, bool want_repack,
                           struct lmp_store *s, const char *path, struct lmp_error *err) {
        uint8_t *dst;
        uint64_t done = 0;

        if (ftruncate(memfd, (off_t)size) < 0)
                return lmp_error_set(err, -errno, "%s: sizing the store to %llu bytes: %s", path,
                                     (unsigned long long)size, strerror(errno));
        dst = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
        if (dst == MAP_FAILED)
                return lmp_error_set(err, -errno, "%s: mapping the store: %s", path, strerror(errno));
        apply_numa(dst, size, numa);
        posix_fadvise(src, 0, (off_t)size, POSIX_FADV_SEQUENTIAL);
        while (done < size) {
                size_t want = size - done < COPY_STEP ? (size_t)(size - done) : COPY_STEP;
                ssize_t n = pread(src, dst + done, want, (off_t)done);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        int e = n < 0 ? errno : EIO;
                        munmap(dst, size);
                        return lmp_error_set(err, -e, "%s: reading at byte %llu: %s", path,
                                             (unsigned long long)done, n < 0 ? strerror(e) : "file shrank");
                }
                /* Drop what we have copied from the page cache as we go. */
                posix_fadvise(src, (off_t)done, n, POSIX_FADV_DONTNEED);
                done += (uint64_t)n;
        }
        if (want_repack) {
                double t0 = lmp_clock_ms();
                int r = repack(dst, size, s, err);
                s->repack_ms = lmp_clock_ms() - t0;
                if (r < 0) {
                        munmap(dst, size);
                        return r;
                }
        }
        munmap(dst, size);
        return 0;
}

int lmp_store_create(const char *model_name, const char *path, enum lmp_store_mode mode,
                     enum lmp_store_numa numa, bool want_repack, struct lmp_store **ret, struct lmp_error *err) {
        struct lmp_store *s;
        struct stat st;
        double t0 = lmp_clock_ms();
        int src, r;

        src = open(path, O_RDONLY | O_CLOEXEC);
        if (src < 0)
                return lmp_error_set(err, -errno, "%s: %s", path, strerror(errno));
        if (fstat(src, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
                close(src);
                return lmp_error_set(err, -EINVAL, "%s: not a regular, non-empty file", path);
        }
        s = calloc(1, sizeof(*s));
        if (!s) {
                close(src);
                return lmp_error_set(err, -ENOMEM, "out of memory");
        }
        s->mode = mode;
        s->size = (uint64_t)st.st_size;
        s->fd = -1;
        s->dev = (uint64_t)st.st_dev;
        s->ino = (uint64_t)st.st_ino;
        s->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;

        if (mode == LMP_STORE_MODE_MMAP) {
                s->fd = src;
                snprintf(s->name, sizeof(s->name), "%s", path);
        } else {
                snprintf(s->name, sizeof(s->name), "lmpool-store:%s", model_name);
                s->fd = memfd_create(s->name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
                if (s->fd < 0) {
                        r = lmp_error_set(err, -errno, "memfd_create: %s", strerror(errno));
                        close(src);
                        goto fail;
                }
                r = copy_into_memfd(src, s->fd, s->size, numa, want_repack, s, path, err);
                close(src);
                if (r < 0)
                        goto fail;
                if (fcntl(s->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
                        r = lmp_error_set(err, -errno, "sealing the store: %s", strerror(errno));
                        goto fail;
                }
        }
        s->base = mmap(NULL, s->size, PROT_READ, MAP_SHARED, s->fd, 0);
        if (s->base == MAP_FAILED) {
                s->base = NULL;
                r = lmp_error_set(err, -errno, "mapping the store: %s", strerror(errno));
                goto fail;
        }
        if (mode == LMP_STORE_MODE_MMAP)
                apply_numa((void *)s->base, s->size, numa);
        s->load_ms = lmp_clock_ms() - t0;
        *ret = s;
        return 0;
fail:
        lmp_store_free(s);
        return r;
}

int lmp_store_attach(int fd, struct lmp_store **ret, struct lmp_error *err) {
        struct lmp_store *s;
        struct stat st;
        char link[64], target[256];
        ssize_t n;

        if (fstat(fd, &st) < 0)
                return lmp_error_set(err, -errno, "store descriptor %d: %s", fd, strerror(errno));
        if (st.st_size <= 0)
                return lmp_error_set(err, -EINVAL, "store descriptor %d is empty", fd);
        s = calloc(1, sizeof(*s));
        if (!s)
                return lmp_error_set(err, -ENOMEM, "out of memory");
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        n = readlink(link, target, sizeof(target) - 1);
        target[n > 0 ? n : 0] = '\0';
        s->mode = strncmp(target, "/memfd:", 7) == 0 ? LMP_STORE_MODE_MEMFD : LMP_STORE_MODE_MMAP;
        snprintf(s->name, sizeof(s->name), "%s", s->mode == LMP_STORE_MODE_MEMFD ? target + 7 : target);
        {       /* "/memfd:NAME (deleted)" -> "NAME" */
                char *sp = strstr(s->name, " (deleted)");
                if (sp)
                        *sp = '\0';
        }
        s->fd = fd;
        s->size = (uint64_t)st.st_size;
        s->dev = (uint64_t)st.st_dev;
        s->ino = (uint64_t)st.st_ino;
        s->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        s->base = mmap(NULL, s->size, PROT_READ, MAP_SHARED, fd, 0);
        if (s->base == MAP_FAILED) {
                int e = errno;
                free(s);
                return lmp_error_set(err, -e, "mapping the store: %s", strerror(e));
        }
        *ret = s;
        return 0;
}

void lmp_store_free(struct lmp_store *s) {
        if (!s)
                return;
        if (s->base)
                munmap((void *)s->base, s->size);
        if (s->fd >= 0)
                close(s->fd);
        free(s);
}

int lmp_store_check(const struct lmp_store *s, char *why, size_t why_size) {
        struct stat st;

        if (s->mode == LMP_STORE_MODE_MEMFD)
                return 0;
        if (fstat(s->fd, &st) < 0)
                return -errno;
        if ((uint64_t)st.st_size < s->size) {
                snprintf(why, why_size, "truncated from %llu to %llu bytes", (unsigned long long)s->size,
                         (unsigned long long)st.st_size);
                return -ESTALE;
        }
        if ((uint64_t)st.st_size != s->size) {
                snprintf(why, why_size, "rewritten in place: %llu bytes, was %llu", (unsigned long long)st.st_size,
                         (unsigned long long)s->size);
                return -ESTALE;
        }
        if ((int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec != s->mtime_ns) {
                snprintf(why, why_size, "rewritten in place: its modification time changed");
                return -ESTALE;
        }
        return 0;
}
