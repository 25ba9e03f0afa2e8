/* Growable arrays: an array of *cap elements of elem bytes each, grown by
 * doubling so that appending one element at a time costs amortized O(1).
 * Every buffer of the project that is appended to grows through here. */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/macros.h"

/* Makes the array at *ptr hold at least need elements: its capacity is
 * doubled (from first when it is 0) until it does. ptr is the address of
 * an object pointer (&b->data). Returns 0, or -ENOMEM (also for a size that
 * would overflow) with *ptr and *cap untouched. */
static inline int lmp_grow(void *ptr, size_t *cap, size_t need, size_t elem, size_t first) {
        size_t c = *cap ? *cap : first, bytes;
        void *p;
        if (need <= *cap)
                return 0;
        while (c < need)
                if (lmp_mul_overflow(c, (size_t)2, &c))
                        return -ENOMEM;
        if (lmp_mul_overflow(c, elem, &bytes))
                return -ENOMEM;
        memcpy(&p, ptr, sizeof(p)); /* any object pointer, without aliasing it as void * */
        p = realloc(p, bytes);
        if (!p)
                return -ENOMEM;
        memcpy(ptr, &p, sizeof(p));
        *cap = c;
        return 0;
}
