/* libFuzzer target for the configuration loader: any bytes, read as the
 * YAML file under each kind of profile selection and with environment
 * overrides, give either a configuration that prints, or at least one
 * error with a message, never a crash, a sanitizer report or a hang. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static char *const envs[][4] = {
                { NULL },
                { "LMPOOL_PROFILE=testing", NULL },
                { "LMPOOL_PROFILE=production", "LMPOOL_MODELS_0_WORKERS=2", "LMPOOL_LIMITS_QUEUE_LENGTH=3", NULL },
        };
        /* The length picks the environment, so that every byte stays YAML. */
        size_t which = size % 3;
        struct lmp_config *c = NULL;
        struct lmp_diag diag = { 0 };

        int r = lmp_config_load_buffer("fuzz.yaml", data, size, envs[which], &c, &diag);
        if (r < 0) {
                if (c || diag.n == 0 || diag.entries[0].msg[0] == '\0')
                        abort(); /* every failure says why */
        } else {
                if (!c || c->n_models == 0 || diag.n != 0)
                        abort();
                FILE *f = fopen("/dev/null", "w");
                if (f) {
                        lmp_config_print(c, f);
                        fclose(f);
                }
                lmp_config_free(c);
        }
        lmp_diag_clear(&diag);
        return 0;
}
