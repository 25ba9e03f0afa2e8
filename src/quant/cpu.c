/* Run-time choice of the kernel level: what the CPU supports (CPUID, and
 * XGETBV for the register state the OS saves: a CPU with AVX-512 under a
 * kernel that does not enable it must not run AVX-512 code), lowered by
 * LMPOOL_ISA so that a test or a user can force the scalar or AVX2 path on a
 * machine that has more. CPUID is read directly rather than through
 * __builtin_cpu_supports, whose feature names differ between compilers. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

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

#if defined(__x86_64__) || defined(__i386__)
static uint64_t xgetbv0(void) {
        uint32_t lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        return ((uint64_t)hi << 32) | lo;
}
#endif

static enum lmp_isa hw_isa(void) {
#if defined(__x86_64__) || defined(__i386__)
        unsigned a, b, c, d;
        if (!__get_cpuid(1, &a, &b, &c, &d))
                return LMP_ISA_SCALAR;
        bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
        if (!osxsave || !avx)
                return LMP_ISA_SCALAR;
        uint64_t xcr0 = xgetbv0();
        if ((xcr0 & 0x6) != 0x6) /* XMM and YMM state */
                return LMP_ISA_SCALAR;
        if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
                return LMP_ISA_SCALAR;
        bool avx2 = b & (1u << 5), avx512f = b & (1u << 16), avx512bw = b & (1u << 30),
             avx512vl = b & (1u << 31), vnni = c & (1u << 11);
        if (!avx2 || !fma || !f16c)
                return LMP_ISA_SCALAR;
        if (avx512f && avx512bw && avx512vl && vnni && (xcr0 & 0xe6) == 0xe6) /* + opmask, ZMM state */
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
