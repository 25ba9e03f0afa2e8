/* The Qwen2-VL vision encoder: image bytes in, one embedding of the
 * language model's width per image token out. It reads top to bottom like
 * the model's definition (lmp_vision_encode()):
 *
 *   resize (bicubic, to multiples of 28) and normalize
 *   -> patches of 14 x 14 pixels, in the order the merger reads them (each
 *      2 x 2 block of patches consecutive, blocks in reading order)
 *   -> patch embedding: two convolution kernels (the two temporal halves of
 *      a still image), summed
 *   -> per layer: LayerNorm -> Q/K/V (+ biases) -> 2-D rotary positions ->
 *      attention over all patches -> output projection -> residual ->
 *      LayerNorm -> quick-GELU feed-forward -> residual
 *   -> post LayerNorm -> each 2 x 2 block concatenated -> mm.0 -> GELU ->
 *      mm.2
 *
 * The 2-D rotary positions are GGML's "vision" M-RoPE: a head of d values
 * rotates the pairs (i, i + d/2); the first d/4 pairs turn with the patch's
 * row, the next d/4 with its column, each section's angles starting again
 * from the position (theta = pos * base^(-4j/d) for the j-th pair of a
 * section, base 10000).
 *
 * Float weights (f32, f16, bf16) on WIDE_MIN patches or more go through
 * OpenBLAS's sgemm on f32 panels of their rows (wide_rows(), the decoder's
 * encoders' wide path), with the bias, the residual add and the activation
 * folded into the product's pass. Other products go through the kernel
 * table, as the decoder's do: the input converted once to the activation
 * type the weight pairs with, then the type's gemm (or vec_dot) over the
 * rows, split across the pool. The attention products go through
 * OpenBLAS. GELU and quick GELU round their input
 * and output to f16, as GGML's CPU backend (which computes them from f16
 * tables) does. Everything an image needs is allocated at the start of
 * lmp_vision_encode() and freed at its end. */
#include "model/vision.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/macros.h"
#include "model/vecmath.h"
#include "quant/attn.h"
#include "quant/bf16gemm.h"
#include "quant/fp16.h"

#define MAX_SIDE 16384          /* pixels per image side, before resizing */
#define TOK_BLOCK 64            /* tokens per gemm call */
/* Query rows per attention task: sgemm packs the head's keys (and then
 * its values, all patches by head_dim) again on every call, so a tile of
 * 128 rows (its scores, 128 by the patches, stay in L2) spends a quarter
 * of what 32 did there. */
#define ATT_TILE 128
#define WIDE_MIN 32             /* patches from which float weights go through sgemm */
/* f32 weights converted at a time by wide_rows() (16 MiB a thread): a
 * task's rows of the ViT's matrices at once. sgemm packs the activations
 * (hundreds of patches by n_in) again on every call, so a panel of a few
 * rows (as the decoder's encoders take, for a batch of a few texts) spends
 * a fifth of the time there; sgemm blocks the panel for the caches itself.
 * A Qwen2-VL-2B-shaped encode of 1024 patches on one thread took 20.2,
 * 17.7, 16.4, 15.9, 15.5 and 15.4 s with panels of 2^17 to 2^22 floats. */
#define PANEL_FLOATS ((size_t)1 << 22)

/* ------------------------------------------------------------- loading */

static int get_u32(const struct lmp_gguf *g, const char *key, bool required, uint32_t *ret,
                   struct lmp_error *err) {
        int r = lmp_gguf_get_u32(g, key, ret);
        if (r == -ENOENT && !required)
                return 0;
        if (r < 0)
                return lmp_error_set(err, r, "metadata %s: %s", key,
                                     r == -ENOENT ? "missing" : "not an unsigned integer");
        return 0;
}

static int get_f32(const struct lmp_gguf *g, const char *key, bool required, float *ret,
                   struct lmp_error *err) {
        int r = lmp_gguf_get_f32(g, key, ret);
        if (r == -ENOENT && !required)
                return 0;
        if (r < 0)
                return lmp_error_set(err, r, "metadata %s: %s", key,
                                     r == -ENOENT ? "missing" : "not a float");
        return 0;
}

static int get_f32_3(const struct lmp_gguf *g, const char *key, float out[3],
                     struct lmp_error *err) {
        struct lmp_gguf_value arr;
        int r = lmp_gguf_get_arr(g, key, -1, &arr);
        if (r < 0)
                return lmp_error_set(err, r, "metadata %s: %s", key,
                                     r == -ENOENT ? "missing" : "not an array");
        if (arr.n != 3 || lmp_gguf_arr_f32(&arr, out) < 0)
                return lmp_error_set(err, -EINVAL, "metadata %s: not 3 numbers", key);
        return 0;
}

static int check_shape(const struct lmp_gguf_tensor *t, const char *name, const uint64_t ne[4],
                       struct lmp_error *err) {
        for (int d = 0; d < 4; d++)
                if (t->ne[d] != ne[d])
                        return lmp_error_set(err, -EINVAL,
                                             "tensor %s: shape [%llu, %llu, %llu, %llu], expected "
                                             "[%llu, %llu, %llu, %llu]", name,
                                             (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                                             (unsigned long long)t->ne[2], (unsigned long long)t->ne[3],
                                             (unsigned long long)ne[0], (unsigned long long)ne[1],
                                             (unsigned long long)ne[2], (unsigned long long)ne[3]);
        return 0;
}

/* An f32 vector of n values. */
static int load_vec(const struct lmp_vision *v, const char *name, uint64_t n, const float **ret,
                    struct lmp_error *err) {
        const struct lmp_gguf_tensor *t = lmp_gguf_find_tensor(v->gguf, name);
        if (!t)
                return lmp_error_set(err, -ENOENT, "tensor %s: missing", name);
        if (t->type != LMP_TYPE_F32) {
                const char *tn = lmp_type_name(t->type);
                return lmp_error_set(err, -ENOTSUP, "tensor %s: type %s, expected f32", name,
                                     tn ? tn : "unknown");
        }
        int r = check_shape(t, name, (const uint64_t[4]){ n, 1, 1, 1 }, err);
        if (r < 0)
                return r;
        if ((uintptr_t)t->data % sizeof(float) != 0)
                return lmp_error_set(err, -EINVAL, "tensor %s: data not aligned", name);
        *ret = t->data;
        return 0;
}

/* A matrix of n_out rows of n_in values; shape: the tensor's dimensions,
 * [n_in, n_out, 1, 1], or a convolution kernel's [width, height, channels,
 * n_out], whose first three make a row. */
static int load_weight(struct lmp_vision *v, const char *name, const uint64_t shape[4],
                       struct lmp_weight *w, struct lmp_error *err) {
        const struct lmp_gguf_tensor *t = lmp_gguf_find_tensor(v->gguf, name);
        if (!t)
                return lmp_error_set(err, -ENOENT, "tensor %s: missing", name);
        int r = check_shape(t, name, shape, err);
        if (r < 0)
                return r;
        bool conv = shape[2] > 1 || shape[3] > 1;
        uint64_t n_out = conv ? shape[3] : shape[1];
        uint64_t n_in = conv ? shape[0] * shape[1] * shape[2] : shape[0];
        if ((r = lmp_weight_init(w, t, name, n_in, n_out, v->isa, err)) < 0)
                return r;
        /* bf16 products for a float weight that loses nothing in bf16 */
        const size_t n = (size_t)(n_in * n_out);
        w->bf16 = v->bf16 && (w->type == LMP_TYPE_BF16 ||
                              (w->type == LMP_TYPE_F16 && lmp_f16_is_bf16(LMP_ISA_AVX512, w->data, n)) ||
                              (w->type == LMP_TYPE_F32 && lmp_f32_is_bf16(w->data, n)));
        v->n_mat++;
        v->n_bf16 += w->bf16;
        return 0;
}

static int load_hparams(struct lmp_vision *v, struct lmp_error *err) {
        const struct lmp_gguf *g = v->gguf;
        struct lmp_vision_hparams *hp = &v->hp;
        struct lmp_gguf_str s;
        int r = lmp_gguf_get_str(g, "general.architecture", &s);
        if (r < 0 || !lmp_gguf_str_eq(s, "clip"))
                return lmp_error_set(err, -EINVAL, "metadata general.architecture: not clip");
        bool has_vision = false;
        if (lmp_gguf_get_bool(g, "clip.has_vision_encoder", &has_vision) < 0 || !has_vision)
                return lmp_error_set(err, -EINVAL, "metadata clip.has_vision_encoder: not true");
        r = lmp_gguf_get_str(g, "clip.projector_type", &s);
        if (r < 0)
                return lmp_error_set(err, r, "metadata clip.projector_type: missing");
        if (!lmp_gguf_str_eq(s, "qwen2vl_merger"))
                return lmp_error_set(err, -ENOTSUP, "metadata clip.projector_type: %.*s not supported "
                                     "(qwen2vl_merger)", (int)LMP_MIN(s.len, (uint64_t)64), s.ptr);
        v->proj = LMP_PROJECTOR_QWEN2VL_MERGER;

        hp->n_merge = 2;
        hp->rope_base = 10000.0f;
        if ((r = get_u32(g, "clip.vision.image_size", false, &hp->image_size, err)) < 0 ||
            (r = get_u32(g, "clip.vision.patch_size", true, &hp->patch_size, err)) < 0 ||
            (r = get_u32(g, "clip.vision.embedding_length", true, &hp->n_embd, err)) < 0 ||
            (r = get_u32(g, "clip.vision.feed_forward_length", true, &hp->n_ff, err)) < 0 ||
            (r = get_u32(g, "clip.vision.block_count", true, &hp->n_layer, err)) < 0 ||
            (r = get_u32(g, "clip.vision.attention.head_count", true, &hp->n_head, err)) < 0 ||
            (r = get_u32(g, "clip.vision.projection_dim", true, &hp->proj_dim, err)) < 0 ||
            (r = get_u32(g, "clip.vision.spatial_merge_size", false, &hp->n_merge, err)) < 0 ||
            (r = get_f32(g, "clip.vision.attention.layer_norm_epsilon", true, &hp->eps, err)) < 0 ||
            (r = get_f32_3(g, "clip.vision.image_mean", hp->mean, err)) < 0 ||
            (r = get_f32_3(g, "clip.vision.image_std", hp->std, err)) < 0)
                return r;
        if (hp->patch_size == 0 || hp->patch_size > 64 || hp->n_embd == 0 || hp->n_embd > 16384 ||
            hp->n_ff == 0 || hp->n_ff > 65536 || hp->n_layer == 0 || hp->n_layer > 256 ||
            hp->n_head == 0 || hp->n_embd % hp->n_head != 0 || hp->proj_dim == 0 ||
            hp->proj_dim > 65536)
                return lmp_error_set(err, -EINVAL, "metadata clip.vision: a dimension out of range");
        if (hp->n_merge != 2)
                return lmp_error_set(err, -ENOTSUP, "metadata clip.vision.spatial_merge_size: %u "
                                     "not supported (2)", hp->n_merge);
        hp->head_dim = hp->n_embd / hp->n_head;
        /* the rotary sections: d/4 pairs by row, d/4 by column */
        if (hp->head_dim % 4 != 0)
                return lmp_error_set(err, -EINVAL, "metadata clip.vision: head size %u not a "
                                     "multiple of 4", hp->head_dim);
        for (int c = 0; c < 3; c++)
                if (!(hp->std[c] > 0.0f) || !isfinite(hp->mean[c]))
                        return lmp_error_set(err, -EINVAL, "metadata clip.vision.image_std/mean: "
                                             "out of range");
        /* The limits Qwen2-VL's preprocessor sets: 8 to 4096 tokens, unless
         * the file says otherwise. */
        uint32_t tok_px = hp->patch_size * hp->n_merge * hp->patch_size * hp->n_merge;
        hp->min_pixels = 8 * tok_px;
        hp->max_pixels = 4096 * tok_px;
        if ((r = get_u32(g, "clip.vision.image_min_pixels", false, &hp->min_pixels, err)) < 0 ||
            (r = get_u32(g, "clip.vision.image_max_pixels", false, &hp->max_pixels, err)) < 0)
                return r;
        if (hp->min_pixels > hp->max_pixels || hp->max_pixels < tok_px)
                return lmp_error_set(err, -EINVAL, "metadata clip.vision: pixel limits %u..%u",
                                     hp->min_pixels, hp->max_pixels);
        return 0;
}

void lmp_vision_free(struct lmp_vision *v) {
        if (!v)
                return;
        free(v->layers);
        free(v);
}

int lmp_vision_load(const struct lmp_gguf *g, enum lmp_isa isa, struct lmp_vision **ret,
                    struct lmp_error *err) {
        struct lmp_vision *v = calloc(1, sizeof(*v));
        if (!v)
                return lmp_error_set(err, -ENOMEM, "out of memory");
        v->gguf = g;
        v->isa = isa;
        v->bf16 = isa == LMP_ISA_AVX512 && lmp_cpu_bf16();
        int r = load_hparams(v, err);
        if (r < 0)
                goto fail;
        const struct lmp_vision_hparams *hp = &v->hp;
        const uint64_t E = hp->n_embd, F = hp->n_ff, P = hp->patch_size, M = 4 * E;
        v->layers = calloc(hp->n_layer, sizeof(*v->layers));
        if (!v->layers) {
                r = lmp_error_set(err, -ENOMEM, "out of memory");
                goto fail;
        }
        if ((r = load_weight(v, "v.patch_embd.weight", (const uint64_t[4]){ P, P, 3, E }, &v->patch[0],
                             err)) < 0 ||
            (r = load_weight(v, "v.patch_embd.weight.1", (const uint64_t[4]){ P, P, 3, E }, &v->patch[1],
                             err)) < 0)
                goto fail;
        if (lmp_gguf_find_tensor(g, "v.patch_embd.bias") || lmp_gguf_find_tensor(g, "v.pre_ln.weight")) {
                r = lmp_error_set(err, -ENOTSUP, "tensor v.patch_embd.bias or v.pre_ln.weight: "
                                  "not part of qwen2vl_merger");
                goto fail;
        }
        for (uint32_t i = 0; i < hp->n_layer; i++) {
                struct lmp_vision_layer *L = &v->layers[i];
                char n[64];
#define W(field, suffix, a, b)                                                                    \
        snprintf(n, sizeof(n), "v.blk.%u.%s", i, suffix);                                         \
        if ((r = load_weight(v, n, (const uint64_t[4]){ a, b, 1, 1 }, &L->field, err)) < 0)       \
                goto fail;
#define V(field, suffix, len)                                                                     \
        snprintf(n, sizeof(n), "v.blk.%u.%s", i, suffix);                                         \
        if ((r = load_vec(v, n, len, &L->field, err)) < 0)                                        \
                goto fail;
                V(ln1, "ln1.weight", E)
                V(ln1_b, "ln1.bias", E)
                W(wq, "attn_q.weight", E, E)
                V(bq, "attn_q.bias", E)
                W(wk, "attn_k.weight", E, E)
                V(bk, "attn_k.bias", E)
                W(wv, "attn_v.weight", E, E)
                V(bv, "attn_v.bias", E)
                W(wo, "attn_out.weight", E, E)
                V(bo, "attn_out.bias", E)
                V(ln2, "ln2.weight", E)
                V(ln2_b, "ln2.bias", E)
                W(ffn_up, "ffn_up.weight", E, F)
                V(b_up, "ffn_up.bias", F)
                W(ffn_down, "ffn_down.weight", F, E)
                V(b_down, "ffn_down.bias", E)
#undef W
#undef V
        }
        if ((r = load_vec(v, "v.post_ln.weight", E, &v->post_ln, err)) < 0 ||
            (r = load_vec(v, "v.post_ln.bias", E, &v->post_ln_b, err)) < 0 ||
            (r = load_weight(v, "mm.0.weight", (const uint64_t[4]){ M, M, 1, 1 }, &v->mm0, err)) < 0 ||
            (r = load_vec(v, "mm.0.bias", M, &v->mm0_b, err)) < 0 ||
            (r = load_weight(v, "mm.2.weight", (const uint64_t[4]){ M, hp->proj_dim, 1, 1 }, &v->mm2,
                             err)) < 0 ||
            (r = load_vec(v, "mm.2.bias", hp->proj_dim, &v->mm2_b, err)) < 0)
                goto fail;
        *ret = v;
        return 0;
fail:
        lmp_vision_free(v);
        return r;
}

/* ------------------------------------------------------- preprocessing */

int lmp_vision_target_size(const struct lmp_vision *v, uint32_t width, uint32_t height,
                           uint32_t *ret_width, uint32_t *ret_height, struct lmp_error *err) {
        if (width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE)
                return lmp_error_set(err, -EINVAL, "image %ux%u: each side must be 1 to %u pixels",
                                     width, height, MAX_SIDE);
        /* llama.cpp's smart resize, in its float arithmetic: round each
         * side to the factor, then scale both down or up into the limits. */
        const int f = (int)(v->hp.patch_size * v->hp.n_merge);
        const float ff = (float)f;
        const int w = (int)width, h = (int)height;
        int h_bar = LMP_MAX(f, (int)roundf((float)h / ff) * f);
        int w_bar = LMP_MAX(f, (int)roundf((float)w / ff) * f);
        if ((int64_t)h_bar * w_bar > (int64_t)v->hp.max_pixels) {
                float beta = sqrtf((float)((int64_t)h * w) / (float)v->hp.max_pixels);
                h_bar = LMP_MAX(f, (int)floorf((float)h / beta / ff) * f);
                w_bar = LMP_MAX(f, (int)floorf((float)w / beta / ff) * f);
        } else if ((int64_t)h_bar * w_bar < (int64_t)v->hp.min_pixels) {
                float beta = sqrtf((float)v->hp.min_pixels / (float)((int64_t)h * w));
                h_bar = (int)ceilf((float)h * beta / ff) * f;
                w_bar = (int)ceilf((float)w * beta / ff) * f;
        }
        *ret_width = (uint32_t)w_bar;
        *ret_height = (uint32_t)h_bar;
        return 0;
}

/* Pillow's bicubic resampling (a = -0.5), as llama.cpp's preprocessing
 * computes it: separable, a horizontal pass then a vertical one, each
 * output sample a normalized filter over the input samples within 2
 * (scaled by the reduction when shrinking) of its centre, the weights in
 * fixed point with 22 fractional bits, each pass rounded and clamped to a
 * byte. */
#define PILLOW_BITS 22

static double bicubic_filter(double x) {
        const double a = -0.5;
        if (x < 0.0)
                x = -x;
        if (x < 1.0)
                return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2.0)
                return (((x - 5) * x + 8) * x - 4) * a;
        return 0.0;
}

/* Per output sample: first input index, count, and ksize weights. */
static int pillow_weights(int in, int out, int *bounds, int32_t **ret_w) {
        double scale = (double)in / out, filterscale = scale < 1.0 ? 1.0 : scale;
        double support = 2.0 * filterscale;
        int ksize = (int)ceil(support) * 2 + 1;
        int32_t *kw = malloc((size_t)out * (size_t)ksize * sizeof(int32_t));
        double *pre = malloc((size_t)ksize * sizeof(double));
        if (!kw || !pre) {
                free(kw);
                free(pre);
                return -ENOMEM;
        }
        for (int xx = 0; xx < out; xx++) {
                double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
                int xmin = (int)(center - support + 0.5);
                if (xmin < 0)
                        xmin = 0;
                int xmax = (int)(center + support + 0.5);
                if (xmax > in)
                        xmax = in;
                int xcnt = xmax - xmin, x;
                for (x = 0; x < xcnt; x++) {
                        pre[x] = bicubic_filter((x + xmin - center + 0.5) * ss);
                        ww += pre[x];
                }
                for (x = 0; x < xcnt; x++)
                        if (ww != 0.0)
                                pre[x] /= ww;
                for (; x < ksize; x++)
                        pre[x] = 0.0;
                for (x = 0; x < ksize; x++) {
                        double v = pre[x] * (1 << PILLOW_BITS);
                        kw[(size_t)xx * ksize + x] = (int32_t)(pre[x] < 0 ? -0.5 + v : 0.5 + v);
                }
                bounds[2 * xx] = xmin;
                bounds[2 * xx + 1] = xcnt;
        }
        free(pre);
        *ret_w = kw;
        return ksize;
}

static inline uint8_t clip8(int32_t v) {
        return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* One pass along rows (horiz) or columns: src (sw x sh) -> dst (dw x dh),
 * one of the two dimensions unchanged. */
static void pillow_pass(const uint8_t *src, int sw, uint8_t *dst, int dw, int dh, bool horiz,
                        int ksize, const int *bounds, const int32_t *kw) {
        for (int yy = 0; yy < dh; yy++)
                for (int xx = 0; xx < dw; xx++) {
                        int o = horiz ? xx : yy;
                        int first = bounds[2 * o], cnt = bounds[2 * o + 1];
                        const int32_t *k = kw + (size_t)o * ksize;
                        int32_t acc[3] = { 1 << (PILLOW_BITS - 1), 1 << (PILLOW_BITS - 1),
                                           1 << (PILLOW_BITS - 1) };
                        for (int i = 0; i < cnt; i++) {
                                size_t si = horiz ? ((size_t)yy * sw + (size_t)(first + i)) * 3
                                                  : ((size_t)(first + i) * sw + (size_t)xx) * 3;
                                for (int c = 0; c < 3; c++)
                                        acc[c] += src[si + c] * k[i];
                        }
                        for (int c = 0; c < 3; c++)
                                dst[((size_t)yy * dw + xx) * 3 + c] = clip8(acc[c] >> PILLOW_BITS);
                }
}

static int resize_pillow(const uint8_t *src, int nx, int ny, uint8_t *dst, int tw, int th) {
        int *bx = malloc((size_t)tw * 2 * sizeof(int)), *by = malloc((size_t)th * 2 * sizeof(int));
        int32_t *kx = NULL, *ky = NULL;
        uint8_t *tmp = NULL;
        int r = -ENOMEM, kxs = 0, kys = 0;
        if (!bx || !by)
                goto out;
        if (tw != nx && (kxs = pillow_weights(nx, tw, bx, &kx)) < 0)
                goto out;
        if (th != ny && (kys = pillow_weights(ny, th, by, &ky)) < 0)
                goto out;
        if (kx && ky) {
                tmp = malloc((size_t)tw * ny * 3);
                if (!tmp)
                        goto out;
                pillow_pass(src, nx, tmp, tw, ny, true, kxs, bx, kx);
                pillow_pass(tmp, tw, dst, tw, th, false, kys, by, ky);
        } else if (kx) {
                pillow_pass(src, nx, dst, tw, th, true, kxs, bx, kx);
        } else if (ky) {
                pillow_pass(src, nx, dst, tw, th, false, kys, by, ky);
        } else {
                memcpy(dst, src, (size_t)tw * th * 3);
        }
        r = 0;
out:
        free(bx);
        free(by);
        free(kx);
        free(ky);
        free(tmp);
        return r;
}

void lmp_vision_image_clear(struct lmp_vision_image *img) {
        free(img->data);
        *img = (struct lmp_vision_image){ 0 };
}

int lmp_vision_preprocess(const struct lmp_vision *v, const uint8_t *rgb, uint32_t width,
                          uint32_t height, struct lmp_vision_image *ret, struct lmp_error *err) {
        uint32_t tw, th;
        int r = lmp_vision_target_size(v, width, height, &tw, &th, err);
        if (r < 0)
                return r;
        uint8_t *px = malloc((size_t)tw * th * 3);
        uint8_t *scaled = NULL;
        float *out = malloc((size_t)tw * th * 3 * sizeof(float));
        if (!px || !out) {
                free(px);
                free(out);
                return lmp_error_set(err, -ENOMEM, "image %ux%u: out of memory", tw, th);
        }
        if (tw == width && th == height) {
                memcpy(px, rgb, (size_t)tw * th * 3);
        } else {
                /* llama.cpp resizes into the target keeping the aspect ratio
                 * (scale by the smaller ratio, sides rounded up) and pads the
                 * rest with black, centred; the target already has nearly the
                 * source's ratio, so the padding is at most a pixel or so. */
                float sw = (float)tw / (float)width, sh = (float)th / (float)height;
                float s = fminf(sw, sh);
                int nw = LMP_MIN((int)ceilf((float)width * s), (int)tw);
                int nh = LMP_MIN((int)ceilf((float)height * s), (int)th);
                scaled = malloc((size_t)nw * nh * 3);
                if (!scaled) {
                        free(px);
                        free(out);
                        return lmp_error_set(err, -ENOMEM, "image %ux%u: out of memory", tw, th);
                }
                if (resize_pillow(rgb, (int)width, (int)height, scaled, nw, nh) < 0) {
                        free(scaled);
                        free(px);
                        free(out);
                        return lmp_error_set(err, -ENOMEM, "image %ux%u: out of memory", tw, th);
                }
                memset(px, 0, (size_t)tw * th * 3);
                int ox = ((int)tw - nw) / 2, oy = ((int)th - nh) / 2;
                for (int y = 0; y < nh; y++)
                        memcpy(px + ((size_t)(y + oy) * tw + (size_t)ox) * 3, scaled + (size_t)y * nw * 3,
                               (size_t)nw * 3);
                free(scaled);
        }
        /* normalized, planar */
        const size_t plane = (size_t)tw * th;
        for (size_t i = 0; i < plane; i++)
                for (int c = 0; c < 3; c++)
                        out[c * plane + i] = ((float)px[i * 3 + c] / 255.0f - v->hp.mean[c]) / v->hp.std[c];
        free(px);
        *ret = (struct lmp_vision_image){ .width = tw, .height = th, .data = out };
        return 0;
}

/* ----------------------------------------------------- matrix products */

/* Scratch of one encode, allocated once per image. */
struct enc {
        const struct lmp_vision *v;
        struct lmp_threadpool *pool;
        int nth;
        int64_t T;              /* patches */
        void *qbuf;             /* (T, up to 4 bytes per value of the widest input) */
        float *panel;           /* (nth, PANEL_FLOATS): f32 rows of a float weight */
        float *scores;          /* (nth, ATT_TILE, T) */
        float *rope;            /* (T, head_dim/2) cos, sin pairs */
        float *bqkv;            /* (3 n_embd): a block's q, k and v biases */
        const struct lmp_quant_traits *f16;     /* f16 rounding of the activations */
};

/* What a product does with its output: set it (out = x w^T + b), add to it
 * (out += x w^T + b: the residual stream), or set it and apply an
 * activation (on the rows a task computed, while they are in cache). */
enum mm_out { MM_SET, MM_ADD, MM_GELU, MM_GELU_QUICK };

static void activate(const struct enc *e, float *x, int64_t n, enum mm_out how);

struct mm_job {
        const struct enc *e;
        const struct lmp_weight *w;
        const uint8_t *y;       /* activations in the weight's vec_dot type */
        size_t y_stride;
        int64_t n_tok;
        float *out;             /* (n_tok, ld) */
        int64_t ld;
};

static void mm_rows(void *arg, int64_t begin, int64_t end, int tid) {
        (void)tid;
        const struct mm_job *j = arg;
        const struct lmp_weight *w = j->w;
        const uint8_t *wd = (const uint8_t *)w->data + (size_t)begin * w->row_size;
        int n = (int)w->n_in;
        if (w->traits->gemm && j->n_tok > 1) {
                for (int64_t t0 = 0; t0 < j->n_tok; t0 += TOK_BLOCK) {
                        int nt = (int)LMP_MIN((int64_t)TOK_BLOCK, j->n_tok - t0);
                        w->traits->gemm(n, (int)(end - begin), nt, wd, w->row_size,
                                        j->y + (size_t)t0 * j->y_stride, j->y_stride,
                                        j->out + t0 * j->ld + begin, (size_t)j->ld);
                }
                return;
        }
        for (int64_t r = begin; r < end; r++)
                for (int64_t t = 0; t < j->n_tok; t++)
                        w->traits->vec_dot(n, &j->out[t * j->ld + r],
                                           (const uint8_t *)w->data + (size_t)r * w->row_size,
                                           j->y + (size_t)t * j->y_stride);
}

struct conv_job {
        const struct lmp_quant_traits *at;
        const float *x;
        int64_t n_in;
        uint8_t *out;
        size_t stride;
};

static void convert_rows(void *arg, int64_t begin, int64_t end, int tid) {
        (void)tid;
        const struct conv_job *j = arg;
        for (int64_t t = begin; t < end; t++)
                j->at->from_float(j->x + t * j->n_in, j->out + (size_t)t * j->stride, j->n_in);
}

/* The wide path: a float weight (f32, f16, bf16) on a batch of WIDE_MIN
 * patches or more goes through OpenBLAS's sgemm, as the decoder's encoders
 * do (forward.c, matmul_rows_wide()): each task converts PANEL_FLOATS of its
 * rows to f32 at a time (a panel that stays in cache; f32 rows are used as
 * they are) and multiplies the f32 activations by them, into an output
 * that already holds the bias (and the residual), so that sgemm adds to it
 * (beta 1); the activation follows on the panel's outputs. */
struct wide_job {
        const struct enc *e;
        const struct lmp_weight *w;     /* n_parts weights, stacked */
        int n_parts;
        const float *y;         /* (n_tok, n_in) */
        const uint16_t *yb;     /* y in bf16 (n_tok rows of stride ys) for bf16 products, or NULL */
        size_t ys;
        int64_t n_tok;
        float *out;             /* (n_tok, ld) */
        int64_t ld;
        const float *bias;
        enum mm_out how;
};

struct act_arg {
        const struct enc *e;
        enum mm_out how;
};

static void activate_cb(const void *arg, float *x, int64_t n) {
        const struct act_arg *a = arg;
        activate(a->e, x, n, a->how);
}

static void wide_rows(void *arg, int64_t begin, int64_t end, int tid) {
        const struct wide_job *j = arg;
        const struct act_arg aa = { .e = j->e, .how = j->how };
        if (j->yb) {
                lmp_weight_rows_bf16(j->w, j->n_parts, j->yb, j->ys, j->n_tok, j->out, j->ld, j->bias,
                                     j->how == MM_ADD, j->e->panel + (size_t)tid * PANEL_FLOATS, PANEL_FLOATS,
                                     begin, end,
                                     j->how == MM_GELU || j->how == MM_GELU_QUICK ? activate_cb : NULL, &aa);
                return;
        }
        lmp_weight_rows_sgemm(j->w, j->n_parts, j->y, j->n_tok, j->out, j->ld, j->bias, j->how == MM_ADD,
                              j->e->panel + (size_t)tid * PANEL_FLOATS, PANEL_FLOATS, begin, end,
                              j->how == MM_GELU || j->how == MM_GELU_QUICK ? activate_cb : NULL, &aa);
}

/* Rows per task of a wide product, whole 16-row blocks: two tasks per
 * thread, so that a thread slowed by other work leaves less of its share
 * waiting; one on a single thread, since each task's sgemm packs the
 * activations again. */
static int64_t wide_grain(const struct enc *e, int64_t rows) {
        const int64_t tasks = e->nth == 1 ? 1 : 2 * (int64_t)e->nth;
        int64_t grain = (rows + tasks - 1) / tasks;
        return LMP_MAX((int64_t)16, (grain + 15) / 16 * 16);
}

static bool wide_type(enum lmp_type t) {
        return t == LMP_TYPE_F32 || t == LMP_TYPE_F16 || t == LMP_TYPE_BF16;
}

struct bf16_job {
        const float *x;
        int64_t n_in;
        uint16_t *out;
        size_t stride;
        enum lmp_isa isa;
};

static void bf16_rows(void *arg, int64_t begin, int64_t end, int tid) {
        (void)tid;
        const struct bf16_job *j = arg;
        for (int64_t t = begin; t < end; t++)
                lmp_bf16_from_f32(j->isa, j->x + t * j->n_in, j->n_in, j->out + (size_t)t * j->stride);
}

/* A wide product's job, on bf16 operands when all n weights' values are
 * bf16 values: x rounded to bf16 once (into qbuf), for every task. */
static void wide_input(struct enc *e, const struct lmp_weight *w, int n, const float *x, int64_t n_tok,
                       struct wide_job *j) {
        j->y = x;
        j->yb = NULL;
        for (int i = 0; i < n; i++)
                if (!w[i].bf16)
                        return;
        struct bf16_job bj = { .x = x, .n_in = w->n_in, .out = e->qbuf,
                               .stride = (size_t)lmp_bf16_kp(w->n_in), .isa = LMP_ISA_AVX512 };
        lmp_threadpool_run(e->pool, n_tok, 1 + n_tok / (4 * e->nth), bf16_rows, &bj);
        j->yb = e->qbuf;
        j->ys = bj.stride;
}

struct act_job {
        const struct enc *e;
        float *x;
        enum mm_out how;
};

static void activate_elems(void *arg, int64_t begin, int64_t end, int tid) {
        (void)tid;
        const struct act_job *j = arg;
        activate(j->e, j->x + begin, end - begin, j->how);
}

struct add_job {
        float *out;
        const float *x, *bias;  /* bias (n), or NULL */
        int64_t n;              /* values per row */
        int64_t ld;             /* row stride of out and x */
};

/* out (rows, n) += x (rows, n) + bias */
static void add_rows(void *arg, int64_t begin, int64_t end, int tid) {
        (void)tid;
        const struct add_job *j = arg;
        for (int64_t t = begin; t < end; t++) {
                float *o = j->out + t * j->ld;
                const float *xr = j->x ? j->x + t * j->ld : NULL;
                for (int64_t i = 0; i < j->n; i++)
                        o[i] += (xr ? xr[i] : 0.0f) + (j->bias ? j->bias[i] : 0.0f);
        }
}

static int64_t row_grain(const struct enc *e, int64_t n) {
        return LMP_MAX((int64_t)1, n / (4 * e->nth));
}

/* out (n_tok, ld) <- x (n_tok, n_in) w^T + bias (NULL: none), columns [0,
 * n_out), as `how` says; tmp (n_tok, ld): scratch for MM_ADD on the
 * weight type's own kernels. */
static void matmul(struct enc *e, const struct lmp_weight *w, const float *x, int64_t n_tok,
                   const float *bias, float *out, int64_t ld, enum mm_out how, float *tmp) {
        const struct lmp_vision *v = e->v;
        const int nth = e->nth;
        if (n_tok >= WIDE_MIN && wide_type(w->type)) {
                struct wide_job j = { .e = e, .w = w, .n_parts = 1, .n_tok = n_tok, .out = out,
                                      .ld = ld, .bias = bias, .how = how };
                wide_input(e, w, 1, x, n_tok, &j);
                lmp_threadpool_run(e->pool, w->n_out, wide_grain(e, w->n_out), wide_rows, &j);
                return;
        }
        /* the weight type's own kernels: the input converted once to the
         * activation type the weight pairs with */
        enum lmp_type vt = w->traits->vec_dot_type;
        float *dst = how == MM_ADD ? tmp : out;
        struct mm_job j = { .e = e, .w = w, .n_tok = n_tok, .out = dst, .ld = ld };
        if (vt == LMP_TYPE_F32) {
                j.y = (const uint8_t *)x;
                j.y_stride = (size_t)w->n_in * sizeof(float);
        } else {
                struct conv_job cj = {
                        .at = lmp_quant_traits(vt, v->isa), .x = x, .n_in = w->n_in, .out = e->qbuf,
                        .stride = lmp_type_row_size(vt, (uint64_t)w->n_in),
                };
                lmp_threadpool_run(e->pool, n_tok, 1 + n_tok / (4 * nth), convert_rows, &cj);
                j.y = e->qbuf;
                j.y_stride = cj.stride;
        }
        int64_t grain = LMP_MAX((int64_t)8, w->n_out / (4 * nth));
        lmp_threadpool_run(e->pool, w->n_out, grain, mm_rows, &j);
        if (bias) {
                struct add_job aj = { .out = dst, .bias = bias, .n = w->n_out, .ld = ld };
                lmp_threadpool_run(e->pool, n_tok, row_grain(e, n_tok), add_rows, &aj);
        }
        if (how == MM_ADD) {
                struct add_job aj = { .out = out, .x = tmp, .n = w->n_out, .ld = ld };
                lmp_threadpool_run(e->pool, n_tok, row_grain(e, n_tok), add_rows, &aj);
        } else if (how == MM_GELU || how == MM_GELU_QUICK) {
                struct act_job aj = { .e = e, .x = out, .how = how };
                int64_t count = n_tok * ld;
                lmp_threadpool_run(e->pool, count, LMP_MAX((int64_t)2048, count / (4 * nth)), activate_elems,
                                   &aj);
        }
}

/* A block's queries, keys and values: qkv (T, 3 E), each patch's q, k and
 * v side by side. Float weights of one type are one product of their
 * stacked rows: sgemm packs its input (all patches by E) again on every
 * call, so one call per task instead of three saves two of those passes
 * over the input. Otherwise three products. */
static void matmul_qkv(struct enc *e, const struct lmp_vision_layer *L, const float *x, float *qkv) {
        const int64_t E = e->v->hp.n_embd, T = e->T;
        if (T >= WIDE_MIN && wide_type(L->wq.type) && L->wk.type == L->wq.type && L->wv.type == L->wq.type) {
                const struct lmp_weight ws[3] = { L->wq, L->wk, L->wv };
                memcpy(e->bqkv, L->bq, (size_t)E * sizeof(float));
                memcpy(e->bqkv + E, L->bk, (size_t)E * sizeof(float));
                memcpy(e->bqkv + 2 * E, L->bv, (size_t)E * sizeof(float));
                struct wide_job j = { .e = e, .w = ws, .n_parts = 3, .n_tok = T, .out = qkv,
                                      .ld = 3 * E, .bias = e->bqkv, .how = MM_SET };
                wide_input(e, ws, 3, x, T, &j);
                lmp_threadpool_run(e->pool, 3 * E, wide_grain(e, 3 * E), wide_rows, &j);
                return;
        }
        matmul(e, &L->wq, x, T, L->bq, qkv, 3 * E, MM_SET, NULL);
        matmul(e, &L->wk, x, T, L->bk, qkv + E, 3 * E, MM_SET, NULL);
        matmul(e, &L->wv, x, T, L->bv, qkv + 2 * E, 3 * E, MM_SET, NULL);
}

/* ------------------------------------------------------ elementwise ops */

struct norm_job {
        float *out;
        const float *x, *w, *b;
        int64_t n;
        float eps;
};

static void layernorm_rows(void *arg, int64_t begin, int64_t end, int tid) {
        (void)tid;
        const struct norm_job *j = arg;
        layernorm(j->out + begin * j->n, j->x + begin * j->n, j->w, j->b, end - begin, j->n, j->eps);
}

static void layernorm_par(struct enc *e, float *out, const float *x, const float *w, const float *b,
                          int64_t n_tok, int64_t n) {
        struct norm_job j = { .out = out, .x = x, .w = w, .b = b, .n = n, .eps = e->v->hp.eps };
        lmp_threadpool_run(e->pool, n_tok, row_grain(e, n_tok), layernorm_rows, &j);
}

/* GELU (tanh approximation) and quick GELU (x sigmoid(1.702 x)) on
 * f16-rounded values, as GGML's CPU backend computes them from f16 tables:
 * the input rounded to f16, the function, the output rounded to f16, the
 * rounding through the f16 type's conversions (F16C where the CPU has it,
 * else their scalar twins), the function on vectors (model/vecmath.h).
 * GGML's GELU passes values of 10 and more through unrounded and sends
 * those of -10 and less to 0. */
#define ACT_CHUNK 256

static void activate(const struct enc *e, float *x, int64_t n, enum mm_out how) {
        uint16_t h[ACT_CHUNK];
        float r[ACT_CHUNK];
        for (int64_t i0 = 0; i0 < n; i0 += ACT_CHUNK) {
                int64_t m = LMP_MIN((int64_t)ACT_CHUNK, n - i0);
                float *xc = x + i0;
                e->f16->from_float(xc, h, m);
                e->f16->to_float(h, r, m);
                int64_t i = 0;
                for (; i + 4 <= m; i += 4) {
                        vf4 v;
                        memcpy(&v, r + i, sizeof(v));
                        vf4 y = how == MM_GELU_QUICK ? v / (1.0f + exp_vf4(-1.702f * v)) : gelu_vf4(v);
                        memcpy(r + i, &y, sizeof(y));
                }
                for (; i < m; i++) {
                        float v = r[i];
                        r[i] = how == MM_GELU_QUICK ? v / (1.0f + expf(-1.702f * v))
                                                    : 0.5f * v * (1.0f + tanhf(0.79788456f * v * (1.0f + 0.044715f * v * v)));
                }
                e->f16->from_float(r, h, m);
                e->f16->to_float(h, r, m);
                if (how == MM_GELU) {
                        for (i = 0; i < m; i++)
                                xc[i] = xc[i] <= -10.0f ? 0.0f : xc[i] >= 10.0f ? xc[i] : r[i];
                } else {
                        memcpy(xc, r, (size_t)m * sizeof(float));
                }
        }
}

/* ----------------------------------------------------------- attention */

/* cos/sin of each patch's angles: pairs [0, d/4) by its row, [d/4, d/2) by
 * its column, theta = pos * base^(-4j/d) for the j-th pair of a section,
 * multiplied step by step in float as GGML does. */
static void rope_table(struct enc *e, const int32_t *rows, const int32_t *cols) {
        const struct lmp_vision_hparams *hp = &e->v->hp;
        const uint32_t half = hp->head_dim / 2, sect = hp->head_dim / 4;
        float theta_scale = powf(hp->rope_base, -2.0f / (float)half);
        for (int64_t p = 0; p < e->T; p++) {
                float *tab = e->rope + p * hp->head_dim;
                float ty = (float)rows[p], tx = (float)cols[p];
                for (uint32_t i = 0; i < half; i++) {
                        if (i == sect)
                                tx = (float)cols[p];    /* the column section starts again */
                        float th = i < sect ? ty : tx;
                        tab[2 * i] = cosf(th);
                        tab[2 * i + 1] = sinf(th);
                        ty *= theta_scale;
                        tx *= theta_scale;
                }
        }
}

struct rope_job {
        const struct enc *e;
        float *q, *k;           /* (T, n_embd), rows ld apart */
        int64_t ld;
};

static void rope_rows(void *arg, int64_t begin, int64_t end, int tid) {
        (void)tid;
        const struct rope_job *j = arg;
        const struct lmp_vision_hparams *hp = &j->e->v->hp;
        const uint32_t half = hp->head_dim / 2;
        for (int64_t p = begin; p < end; p++) {
                const float *tab = j->e->rope + p * hp->head_dim;
                for (int which = 0; which < 2; which++)
                        for (uint32_t h = 0; h < hp->n_head; h++) {
                                float *vh = (which ? j->k : j->q) + p * j->ld + (size_t)h * hp->head_dim;
                                for (uint32_t i = 0; i < half; i++) {
                                        float c = tab[2 * i], s = tab[2 * i + 1];
                                        float x0 = vh[i], x1 = vh[i + half];
                                        vh[i] = x0 * c - x1 * s;
                                        vh[i + half] = x0 * s + x1 * c;
                                }
                        }
        }
}

struct att_job {
        struct enc *e;
        const float *q, *k, *v;         /* (T, n_embd), rows ld_in apart */
        int64_t ld_in;
        float *out;                     /* (T, n_embd) */
        int64_t n_tiles;                /* query tiles per head */
};

/* One task: a tile of query rows of one head, against every patch. */
static void attend(void *arg, int64_t begin, int64_t end, int tid) {
        const struct att_job *j = arg;
        const struct lmp_vision_hparams *hp = &j->e->v->hp;
        const int T = (int)j->e->T, hd = (int)hp->head_dim, ld = (int)hp->n_embd, ldi = (int)j->ld_in;
        const float scale = 1.0f / sqrtf((float)hd);
        float *s = j->e->scores + (size_t)tid * ATT_TILE * (size_t)T;
        lmp_attn_softmax_fn *softmax = lmp_attn_kernels(j->e->v->isa)->softmax;
        for (int64_t task = begin; task < end; task++) {
                int h = (int)(task / j->n_tiles);
                int r0 = (int)(task % j->n_tiles) * ATT_TILE;
                int m = LMP_MIN(ATT_TILE, T - r0);
                const float *q = j->q + (size_t)r0 * ldi + (size_t)h * hd;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, T, hd, scale, q, ldi,
                            j->k + (size_t)h * hd, ldi, 0.0f, s, T);
                for (int i = 0; i < m; i++)
                        softmax(s + (size_t)i * T, T, 1.0f);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, T, 1.0f, s, T,
                            j->v + (size_t)h * hd, ldi, 0.0f, j->out + (size_t)r0 * ld + (size_t)h * hd, ld);
        }
}

/* -------------------------------------------------------------- encode */

void lmp_image_embd_clear(struct lmp_image_embd *e) {
        free(e->data);
        *e = (struct lmp_image_embd){ 0 };
}

int lmp_vision_encode(const struct lmp_vision *v, struct lmp_threadpool *pool,
                      const struct lmp_vision_image *img, struct lmp_image_embd *ret,
                      struct lmp_error *err) {
        const struct lmp_vision_hparams *hp = &v->hp;
        const uint32_t P = hp->patch_size, unit = P * hp->n_merge;
        if (img->width == 0 || img->height == 0 || img->width % unit || img->height % unit ||
            img->width > MAX_SIDE || img->height > MAX_SIDE)
                return lmp_error_set(err, -EINVAL, "image %ux%u: sides must be multiples of %u",
                                     img->width, img->height, unit);
        const int64_t px = img->width / P, py = img->height / P;        /* patches per row, column */
        const int64_t T = px * py, E = hp->n_embd, F = hp->n_ff, K = 3 * (int64_t)P * P;
        if ((uint64_t)img->width * img->height > hp->max_pixels)
                return lmp_error_set(err, -E2BIG, "image %ux%u: more than %u pixels", img->width,
                                     img->height, hp->max_pixels);
        const int64_t widest = LMP_MAX(LMP_MAX(K, F), 4 * E);
        /* our pool does the threading; OpenBLAS runs in the calling thread */
        openblas_set_num_threads(1);
        int nth = lmp_threadpool_size(pool);
        struct enc e = { .v = v, .pool = pool, .nth = nth, .T = T,
                         .f16 = lmp_quant_traits(LMP_TYPE_F16, v->isa) };
        float *x = malloc((size_t)T * E * sizeof(float));               /* residual stream */
        float *xb = malloc((size_t)T * E * sizeof(float));
        float *qkv = malloc((size_t)T * 3 * E * sizeof(float));  /* also the products' scratch */
        float *hb = malloc((size_t)T * (size_t)widest * sizeof(float));
        int32_t *rows = malloc((size_t)T * sizeof(int32_t));
        int32_t *cols = malloc((size_t)T * sizeof(int32_t));
        e.qbuf = malloc((size_t)T * (size_t)widest * sizeof(float));
        e.panel = malloc((size_t)nth * PANEL_FLOATS * sizeof(float));
        e.scores = malloc((size_t)nth * ATT_TILE * (size_t)T * sizeof(float));
        e.rope = malloc((size_t)T * hp->head_dim * sizeof(float));
        e.bqkv = malloc((size_t)3 * E * sizeof(float));
        float *embd = malloc((size_t)(T / 4) * hp->proj_dim * sizeof(float));
        int r = 0;
        if (!x || !xb || !qkv || !hb || !rows || !cols || !e.qbuf || !e.panel || !e.scores || !e.rope ||
            !e.bqkv || !embd || !e.f16 || !e.f16->from_float || !e.f16->to_float) {
                r = lmp_error_set(err, -ENOMEM, "image %ux%u: out of memory", img->width, img->height);
                free(embd);
                goto out;
        }

        /* Patches in the merger's order: 2 x 2 blocks in reading order, each
         * block's patches in reading order. hb (T, 3 * P * P): a patch's
         * pixels as (channel, row, column), the kernel rows' order. */
        const size_t plane = (size_t)img->width * img->height;
        int64_t p = 0;
        for (int64_t by = 0; by < py; by += 2)
                for (int64_t bx = 0; bx < px; bx += 2)
                        for (int64_t dy = 0; dy < 2; dy++)
                                for (int64_t dx = 0; dx < 2; dx++, p++) {
                                        rows[p] = (int32_t)(by + dy);
                                        cols[p] = (int32_t)(bx + dx);
                                        float *o = hb + p * K;
                                        for (int c = 0; c < 3; c++)
                                                for (uint32_t yy = 0; yy < P; yy++)
                                                        memcpy(o + ((size_t)c * P + yy) * P,
                                                               img->data + c * plane +
                                                                       ((size_t)rows[p] * P + yy) * img->width +
                                                                       (size_t)cols[p] * P,
                                                               P * sizeof(float));
                                }

        /* x (T, E) = both temporal kernels over the patches, summed */
        matmul(&e, &v->patch[0], hb, T, NULL, x, E, MM_SET, NULL);
        matmul(&e, &v->patch[1], hb, T, NULL, x, E, MM_ADD, xb);
        rope_table(&e, rows, cols);

        const int64_t n_tiles = (T + ATT_TILE - 1) / ATT_TILE;
        for (uint32_t l = 0; l < hp->n_layer; l++) {
                const struct lmp_vision_layer *L = &v->layers[l];

                /* attention block */
                layernorm_par(&e, xb, x, L->ln1, L->ln1_b, T, E);
                matmul_qkv(&e, L, xb, qkv);                             /* (T, 3 E) */
                struct rope_job rj = { .e = &e, .q = qkv, .k = qkv + E, .ld = 3 * E };
                lmp_threadpool_run(pool, T, row_grain(&e, T), rope_rows, &rj);
                struct att_job aj = { .e = &e, .q = qkv, .k = qkv + E, .v = qkv + 2 * E, .ld_in = 3 * E,
                                      .out = xb, .n_tiles = n_tiles };
                lmp_threadpool_run(pool, (int64_t)hp->n_head * n_tiles, 1, attend, &aj);   /* xb (T, E) */
                matmul(&e, &L->wo, xb, T, L->bo, x, E, MM_ADD, qkv);    /* x += */

                /* feed-forward block */
                layernorm_par(&e, xb, x, L->ln2, L->ln2_b, T, E);
                matmul(&e, &L->ffn_up, xb, T, L->b_up, hb, F, MM_GELU_QUICK, NULL);    /* (T, F) */
                matmul(&e, &L->ffn_down, hb, T, L->b_down, x, E, MM_ADD, qkv);         /* x += */
        }
        layernorm_par(&e, x, x, v->post_ln, v->post_ln_b, T, E);

        /* the merger: each block's 4 patches are 4 E consecutive values */
        const int64_t n_tok = T / 4;
        matmul(&e, &v->mm0, x, n_tok, v->mm0_b, hb, 4 * E, MM_GELU, NULL);            /* (n_tok, 4 E) */
        matmul(&e, &v->mm2, hb, n_tok, v->mm2_b, embd, hp->proj_dim, MM_SET, NULL);   /* (n_tok, proj_dim) */

        uint32_t gr = (uint32_t)(py / 2), gc = (uint32_t)(px / 2);
        *ret = (struct lmp_image_embd){
                .n_tokens = (uint32_t)n_tok, .grid_rows = gr, .grid_cols = gc,
                .n_pos = LMP_MAX(gr, gc), .n_embd = hp->proj_dim, .data = embd,
        };
out:
        free(x);
        free(xb);
        free(qkv);
        free(hb);
        free(rows);
        free(cols);
        free(e.qbuf);
        free(e.panel);
        free(e.scores);
        free(e.rope);
        free(e.bqkv);
        return r;
}

int64_t lmp_vision_positions(const int32_t *ids, size_t n, const struct lmp_image_embd *const *embd, size_t n_embd,
                             int32_t t, int32_t (*rope)[LMP_ROPE_AXES]) {
        for (size_t i = 0; i < n;) {
                if (ids[i] >= 0) {
                        rope[i][0] = rope[i][1] = rope[i][2] = t++;
                        i++;
                        continue;
                }
                size_t k = (size_t)(-1 - (int64_t)ids[i]);
                if (k >= n_embd || embd[k]->grid_cols == 0 || n - i < embd[k]->n_tokens)
                        return -EINVAL;
                const struct lmp_image_embd *e = embd[k];
                for (uint32_t j = 0; j < e->n_tokens; j++, i++) {
                        if (ids[i] != ids[i - j])
                                return -EINVAL;
                        rope[i][0] = t;
                        rope[i][1] = t + (int32_t)(j / e->grid_cols);
                        rope[i][2] = t + (int32_t)(j % e->grid_cols);
                }
                t += (int32_t)e->n_pos;
        }
        return t;
}
