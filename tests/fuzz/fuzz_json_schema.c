/* libFuzzer target for the JSON schema compiler and the grammar it builds.
 * The input is a schema text, a NUL byte, then bytes that drive a walk.
 * A schema is either refused with a message or compiled; a compiled
 * grammar then walks: at each step the bytes it accepts are listed (all
 * 256 tried), one is chosen by the next driving byte and fed. The walk
 * checks the grammar's promises: it never reaches a dead end (a state that
 * accepts no byte yet is not complete), accepts() and feed() agree, and a
 * complete document parses with cJSON. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sampler/json_grammar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define WALK_MAX 512

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *nul = memchr(data, 0, size);
        size_t n_schema = nul ? (size_t)(nul - data) : size;
        const uint8_t *drive = nul ? nul + 1 : data + size;
        size_t n_drive = nul ? size - n_schema - 1 : 0;
        struct lmp_json_grammar *g = NULL;
        struct lmp_error err = { 0 };

        int r = n_schema == 4 && !memcmp(data, "json", 4) ? lmp_json_grammar_new_object(&g, &err)
                                                          : lmp_json_grammar_new_schema((const char *)data, n_schema,
                                                                                        &g, &err);
        if (r < 0) {
                if (!err.msg[0] || g)
                        abort();        /* a refusal says why, and builds nothing */
                return 0;
        }
        static struct lmp_json_state s;
        static char doc[WALK_MAX + 1];
        size_t n = 0;
        lmp_json_state_init(&s, g);
        for (size_t i = 0; i < n_drive && n < WALK_MAX; i++) {
                uint8_t ok[256];
                int n_ok = 0;
                for (int b = 0; b < 256; b++) {
                        uint8_t c = (uint8_t)b;
                        if (lmp_json_state_accepts(&s, &c, 1))
                                ok[n_ok++] = c;
                }
                if (n_ok == 0) {
                        if (!lmp_json_state_complete(&s))
                                abort();        /* a dead end */
                        break;
                }
                if (lmp_json_state_closed(&s))
                        abort();        /* closed, yet a byte accepted */
                uint8_t c = ok[drive[i] % n_ok];
                if (!lmp_json_state_feed(&s, &c, 1))
                        abort();        /* accepts() and feed() disagree */
                doc[n++] = (char)c;
        }
        if (lmp_json_state_complete(&s)) {
                cJSON *v = cJSON_ParseWithLength(doc, n);
                if (!v)
                        abort();        /* a complete document that does not parse */
                cJSON_Delete(v);
        }
        lmp_json_grammar_unref(g);
        return 0;
}
