/* Inputs for the kernel checks (kernel_inputs.c): random and extreme weight
 * blocks and activation rows, from one deterministic generator. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "quant/quant.h"

/* The scale patterns applied to weight blocks and activation rows. */
enum scale_kind { SC_NORMAL, SC_TINY, SC_HUGE, SC_ZERO, SC_NEG, SC_MIXED, SC_COUNT };
extern const char *const scale_names[SC_COUNT];

uint64_t rnd(void);
float rndf(void);                       /* uniform in [-1, 1) */
float pick_scale(enum scale_kind k);

/* Fills a weight row of n values of type t: random bytes, then scales of
 * kind k; with allmax, every quant bit set. q8_0 quants stay within
 * [-127, 127], as ggml's quantizer produces. */
void fill_weights(enum lmp_type t, uint8_t *buf, int64_t n, enum scale_kind k, int allmax);

/* Zeroes the d field of every block, leaving only the min/offset part. */
void zero_d(enum lmp_type t, uint8_t *buf, int64_t n);

/* n floats in blocks of 32 with scales of kind k (capped at 50). */
void fill_floats(float *x, int64_t n, enum scale_kind k);

/* Sum over i of |x_i - xm_i| |y_i| + |xm_i y_i|: the bound's magnitude from
 * a dequantized weight row xf, its offset part xm (offset_part) and a
 * dequantized activation row yf. */
double magnitude_rows(const float *xf, const float *xm, const float *yf, int64_t n);

/* xm <- the weight row x (of type t, xbytes long) dequantized with every d
 * zeroed: the min/offset part alone. */
void offset_part(enum lmp_type t, const uint8_t *x, float *xm, int64_t n, size_t xbytes);

/* Sum over i of |x_i y_i| for a weight row x (xbytes long) and an activation
 * row y, splitting x into its scaled and offset parts so that the bound
 * covers both terms the kernels add separately. */
double magnitude(const struct lmp_quant_traits *w, const struct lmp_quant_traits *a,
                 const uint8_t *x, const uint8_t *y, int64_t n, size_t xbytes);
