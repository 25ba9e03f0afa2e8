/* Run-time choice of the kernel level: what the CPU supports (CPUID through
 * __builtin_cpu_supports), lowered by LMPOOL_ISA so that a test or a user can
 * force the scalar or AVX2 path on a machine that has more. */
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"

static const char *const isa_names[LMP_ISA_COUNT] = {
        [LMP_ISA_SCALAR] = "scalar",
        [LMP_ISA_AVX2] = "avx2",
        [LMP_ISA_AVX512] = "avx512",
};

const char *lmp_isa_name(enum lmp_isa isa) {
        if ((unsigned)isa >= LMP_ISA_COUNT)
                return NULL;
        return isa_names[isa];
}

static enum lmp_isa hw_isa(void) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_cpu_init();
        if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") ||
            !__builtin_cpu_supports("f16c"))
                return LMP_ISA_SCALAR;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
                return LMP_ISA_AVX512;
        return LMP_ISA_AVX2;
#else
        return LMP_ISA_SCALAR;
#endif
}

enum lmp_isa lmp_cpu_isa(void) {
        enum lmp_isa isa = hw_isa();
        const char *env = getenv("LMPOOL_ISA");
        if (env && *env) {
                for (int i = 0; i < LMP_ISA_COUNT; i++)
                        if (strcmp(env, isa_names[i]) == 0 && (enum lmp_isa)i < isa)
                                isa = (enum lmp_isa)i;
        }
        return isa;
}
