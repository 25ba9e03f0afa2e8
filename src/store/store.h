/* The weight store: one read-only shared region per model, built once by
 * the supervisor and mapped by every worker of that model, so that N
 * workers cost one copy of the weights.
 *
 * memfd (default): the GGUF file is copied into a memfd named
 * "lmpool-store:MODEL" (its pages interleaved or bound per the NUMA policy),
 * the source file's page cache is dropped, and the memfd is sealed against
 * writes, growing and shrinking. A worker maps it PROT_READ/MAP_SHARED and
 * opens it as a GGUF image in memory.
 * mmap: the GGUF file itself is shared through the page cache; nothing is
 * copied.
 *
 * With want_repack, a memfd store also holds the q4_K, q6_K, q4_0 and
 * q5_0 matrices that are only ever multiplied by in lmpool's own 16-row
 * layouts (quant/repack.h),
 * rewritten in place with their tensor type ids: the same bytes, so the
 * store stays the file's size, and one repacked copy serves every worker,
 * where an engine that repacks at load keeps a private copy per process.
 * Such a store must be opened with lmp_gguf_open_store(). An mmap store is
 * the file itself and is never repacked.
 *
 * Either way the worker inherits one file descriptor and never holds a
 * private copy of any weight.
 *
 * A file shared with `mmap` can still be changed by whoever may write it:
 * truncated (pages past the new end raise SIGBUS in every process that
 * touches them) or rewritten in place (the mappings see the new bytes at
 * once). lmp_store_check() compares the file with what it was when the
 * store was built, so that the supervisor and the workers can notice. A
 * sealed memfd cannot change. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"

enum lmp_store_mode { LMP_STORE_MODE_MEMFD, LMP_STORE_MODE_MMAP };
enum lmp_store_numa { LMP_STORE_NUMA_OFF, LMP_STORE_NUMA_INTERLEAVE, LMP_STORE_NUMA_LOCAL };

struct lmp_store {
        char name[288];                 /* memfd name / mapping name to look for in smaps */
        enum lmp_store_mode mode;
        int fd;                         /* memfd or the file, O_RDONLY semantics for workers */
        const uint8_t *base;            /* read-only mapping in this process */
        uint64_t size;
        double load_ms;
        unsigned n_repacked;            /* matrices rewritten as q4_K_r16 or q6_K_r16 */
        uint64_t repacked_bytes;
        double repack_ms;
        /* The file as it was when the store was built or attached. */
        uint64_t dev, ino;
        int64_t mtime_ns;
};

/* Builds the store for a model file. */
int lmp_store_create(const char *model_name, const char *path, enum lmp_store_mode mode,
                     enum lmp_store_numa numa, bool want_repack, struct lmp_store **ret, struct lmp_error *err);

/* Maps a store from an inherited descriptor (worker side). */
int lmp_store_attach(int fd, struct lmp_store **ret, struct lmp_error *err);

void lmp_store_free(struct lmp_store *s);

/* Is the store's file still what it was (size, modification time)? Returns
 * 0 when it is (always, for a memfd), -ESTALE when it changed, with what
 * changed in why ("truncated from 1143200 to 4096 bytes"), or -errno when
 * fstat fails. One fstat: cheap enough for every request. */
int lmp_store_check(const struct lmp_store *s, char *why, size_t why_size);

const char *lmp_store_mode_name(enum lmp_store_mode m);
