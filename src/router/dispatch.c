/* Dispatch decisions (dispatch.h): pure functions over a view of a model's
 * workers, the affinity table and the queue's conversation keys. */
#include "router/dispatch.h"

static bool has_room(const struct lmp_dispatch_worker *w) {
        return w->ready && w->active < w->slots;
}

int lmp_dispatch_least_loaded(const struct lmp_dispatch_worker *w, int n) {
        int best = -1;
        for (int i = 0; i < n; i++) {
                if (!has_room(&w[i]))
                        continue;
                if (best < 0 || w[i].active < w[best].active ||
                    (w[i].active == w[best].active && w[i].served < w[best].served))
                        best = i;
        }
        return best;
}

int lmp_dispatch_place(const struct lmp_dispatch_worker *w, int n, int last, enum lmp_placement *ret_how) {
        int any = lmp_dispatch_least_loaded(w, n);
        *ret_how = LMP_PLACE_WAIT;
        if (any < 0)
                return -1;
        if (last < 0 || last >= n) {
                *ret_how = LMP_PLACE_NEW;
                return any;
        }
        if (has_room(&w[last])) {
                *ret_how = LMP_PLACE_HIT;
                return last;
        }
        /* Its worker is saturated: move only when another is idle, where
         * computing the history again costs less than waiting. */
        if (!w[last].ready || w[any].active == 0) {
                *ret_how = LMP_PLACE_MISS;
                return any;
        }
        return -1;
}

int lmp_affinity_get(const struct lmp_affinity *table, uint64_t key, uint32_t model) {
        const struct lmp_affinity *a = table ? &table[key % LMP_AFFINITY_SLOTS] : NULL;
        return a && a->key == key && a->model == model ? a->worker : -1;
}

void lmp_affinity_set(struct lmp_affinity *table, uint64_t key, uint32_t model, int worker) {
        if (table)
                table[key % LMP_AFFINITY_SLOTS] = (struct lmp_affinity){ .key = key, .model = model,
                                                                         .worker = (int32_t)worker };
}

size_t lmp_dispatch_pass(struct lmp_dispatch_worker *w, int n_workers, uint32_t model, struct lmp_affinity *table,
                         const uint64_t *keys, size_t n, int *ret_assign, struct lmp_dispatch_counts *counts) {
        size_t placed = 0, i;
        for (i = 0; i < n && lmp_dispatch_least_loaded(w, n_workers) >= 0; i++) {
                enum lmp_placement how;
                int k = lmp_dispatch_place(w, n_workers, lmp_affinity_get(table, keys[i], model), &how);
                ret_assign[i] = k;
                counts->new_ += how == LMP_PLACE_NEW;
                counts->hits += how == LMP_PLACE_HIT;
                counts->misses += how == LMP_PLACE_MISS;
                if (k < 0)
                        continue;
                w[k].active++;
                lmp_affinity_set(table, keys[i], model, k);
                placed++;
        }
        for (; i < n; i++)
                ret_assign[i] = -1;
        return placed;
}

bool lmp_dispatch_retry(const struct lmp_retry_facts *f) {
        return !f->answered && !f->streamed && f->retries < f->retries_max && f->now_ms < f->deadline_ms &&
               !f->model_failed && !f->stopping;
}
