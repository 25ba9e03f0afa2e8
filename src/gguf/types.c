/* The GGML type table: block geometry of every type id GGUF files use. The
 * sizes follow the block structs of ggml-common.h (src/quant/blocks.h
 * asserts the same sizes against our own structs). */
#include "gguf/types.h"

#include <strings.h>

#include "common/macros.h"

static const struct lmp_type_info type_table[LMP_TYPE_COUNT] = {
        [LMP_TYPE_F32]     = { "f32",     1,   4 },
        [LMP_TYPE_F16]     = { "f16",     1,   2 },
        [LMP_TYPE_Q4_0]    = { "q4_0",    32,  18 },
        [LMP_TYPE_Q4_1]    = { "q4_1",    32,  20 },
        [LMP_TYPE_Q5_0]    = { "q5_0",    32,  22 },
        [LMP_TYPE_Q5_1]    = { "q5_1",    32,  24 },
        [LMP_TYPE_Q8_0]    = { "q8_0",    32,  34 },
        [LMP_TYPE_Q8_1]    = { "q8_1",    32,  36 },
        [LMP_TYPE_Q2_K]    = { "q2_K",    256, 84 },
        [LMP_TYPE_Q3_K]    = { "q3_K",    256, 110 },
        [LMP_TYPE_Q4_K]    = { "q4_K",    256, 144 },
        [LMP_TYPE_Q5_K]    = { "q5_K",    256, 176 },
        [LMP_TYPE_Q6_K]    = { "q6_K",    256, 210 },
        [LMP_TYPE_Q8_K]    = { "q8_K",    256, 292 },
        [LMP_TYPE_IQ2_XXS] = { "iq2_xxs", 256, 66 },
        [LMP_TYPE_IQ2_XS]  = { "iq2_xs",  256, 74 },
        [LMP_TYPE_IQ3_XXS] = { "iq3_xxs", 256, 98 },
        [LMP_TYPE_IQ1_S]   = { "iq1_s",   256, 50 },
        [LMP_TYPE_IQ4_NL]  = { "iq4_nl",  32,  18 },
        [LMP_TYPE_IQ3_S]   = { "iq3_s",   256, 110 },
        [LMP_TYPE_IQ2_S]   = { "iq2_s",   256, 82 },
        [LMP_TYPE_IQ4_XS]  = { "iq4_xs",  256, 136 },
        [LMP_TYPE_I8]      = { "i8",      1,   1 },
        [LMP_TYPE_I16]     = { "i16",     1,   2 },
        [LMP_TYPE_I32]     = { "i32",     1,   4 },
        [LMP_TYPE_I64]     = { "i64",     1,   8 },
        [LMP_TYPE_F64]     = { "f64",     1,   8 },
        [LMP_TYPE_IQ1_M]   = { "iq1_m",   256, 56 },
        [LMP_TYPE_BF16]    = { "bf16",    1,   2 },
        [LMP_TYPE_TQ1_0]   = { "tq1_0",   256, 54 },
        [LMP_TYPE_TQ2_0]   = { "tq2_0",   256, 66 },
        [LMP_TYPE_MXFP4]   = { "mxfp4",   32,  17 },
};

static const struct lmp_type_info q4_K_r16_info = { "q4_K_r16", 256, 144 };
static const struct lmp_type_info q6_K_r16_info = { "q6_K_r16", 256, 210 };
static const struct lmp_type_info q4_0_r16_info = { "q4_0_r16", 32, 18 };
static const struct lmp_type_info q5_0_r16_info = { "q5_0_r16", 32, 22 };

const struct lmp_type_info *lmp_type_info(uint32_t type) {
        if (type == LMP_TYPE_Q4_K_R16)
                return &q4_K_r16_info;
        if (type == LMP_TYPE_Q6_K_R16)
                return &q6_K_r16_info;
        if (type == LMP_TYPE_Q4_0_R16)
                return &q4_0_r16_info;
        if (type == LMP_TYPE_Q5_0_R16)
                return &q5_0_r16_info;
        if (type >= LMP_TYPE_COUNT || !type_table[type].name)
                return NULL;
        return &type_table[type];
}

const char *lmp_type_name(uint32_t type) {
        const struct lmp_type_info *ti = lmp_type_info(type);
        return ti ? ti->name : NULL;
}

int lmp_type_from_name(const char *name) {
        for (int t = 0; t < LMP_TYPE_COUNT; t++)
                if (type_table[t].name && strcasecmp(type_table[t].name, name) == 0)
                        return t;
        return -1;
}

uint64_t lmp_type_row_size(uint32_t type, uint64_t n) {
        const struct lmp_type_info *ti = lmp_type_info(type);
        if (!ti || n % ti->blck_size)
                return 0;
        return n / ti->blck_size * ti->type_size;
}
