/* The scalar attention kernels and the table of every level (attn.h). */
#include "model/vecmath.h"
#include "quant/attn.h"

void lmp_attn_scores_ref(int hd, int m, int L, const float *restrict q, size_t ldq,
                         const float *restrict k, size_t ldk, float *restrict s, size_t lds) {
        for (int i = 0; i < m; i++) {
                const float *qi = q + (size_t)i * ldq;
                for (int p = 0; p < L; p++) {
                        const float *kp = k + (size_t)p * ldk;
                        float acc = 0.0f;
                        for (int d = 0; d < hd; d++)
                                acc += qi[d] * kp[d];
                        s[(size_t)i * lds + (size_t)p] = acc;
                }
        }
}

void lmp_attn_softmax_ref(float *row, int n, float scale) {
        softmax_scaled(row, n, scale);
}

void lmp_attn_wsum_ref(int hd, int m, int L, const float *restrict s, size_t lds,
                       const float *restrict v, size_t ldv, float *restrict o, size_t ldo) {
        for (int i = 0; i < m; i++) {
                float *oi = o + (size_t)i * ldo;
                const float *si = s + (size_t)i * lds;
                for (int d = 0; d < hd; d++)
                        oi[d] = 0.0f;
                for (int p = 0; p < L; p++) {
                        const float *vp = v + (size_t)p * ldv;
                        for (int d = 0; d < hd; d++)
                                oi[d] += si[p] * vp[d];
                }
        }
}

static const struct lmp_attn_kernels kernels[LMP_ISA_COUNT] = {
        [LMP_ISA_SCALAR] = { lmp_attn_scores_ref, lmp_attn_softmax_ref, lmp_attn_wsum_ref },
#ifdef LMP_HAVE_X86_KERNELS
        [LMP_ISA_AVX2] = { lmp_attn_scores_avx2, lmp_attn_softmax_avx2, lmp_attn_wsum_avx2 },
        [LMP_ISA_AVX512] = { lmp_attn_scores_avx2, lmp_attn_softmax_avx512, lmp_attn_wsum_avx512 },
#else
        [LMP_ISA_AVX2] = { lmp_attn_scores_ref, lmp_attn_softmax_ref, lmp_attn_wsum_ref },
        [LMP_ISA_AVX512] = { lmp_attn_scores_ref, lmp_attn_softmax_ref, lmp_attn_wsum_ref },
#endif
};

const struct lmp_attn_kernels *lmp_attn_kernels(enum lmp_isa isa) {
        return (unsigned)isa < LMP_ISA_COUNT ? &kernels[isa] : NULL;
}
