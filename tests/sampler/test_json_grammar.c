/* The JSON grammar of constrained output: whole documents accepted byte by
 * byte, invalid prefixes refused, each schema keyword, the bounds (depth,
 * whitespace, digits), refused schemas naming the keyword, the cache, and
 * random walks (a random accepted byte at each step until the document is
 * complete) that must parse with cJSON. Feeding and checking allocate
 * nothing: malloc and friends are wrapped at link time and counted. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "sampler/json_grammar.h"

static volatile long n_allocs;
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n) { n_allocs++; return __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t m) { n_allocs++; return __real_calloc(n, m); }
void *__wrap_realloc(void *p, size_t n) { n_allocs++; return __real_realloc(p, n); }

static struct lmp_json_grammar *schema(const char *text) {
        struct lmp_json_grammar *g = NULL;
        struct lmp_error err = { 0 };
        int r = text ? lmp_json_grammar_new_schema(text, strlen(text), &g, &err)
                     : lmp_json_grammar_new_object(&g, &err);
        CHECK(r == 0, "schema %s: %s", text, err.msg);
        return g;
}

/* Whether doc is accepted whole and complete; also checks that every byte
 * was accepted alone before being fed (accepts and feed agree). */
static bool doc_ok(const struct lmp_json_grammar *g, const char *doc) {
        struct lmp_json_state s;
        lmp_json_state_init(&s, g);
        size_t n = strlen(doc);
        for (size_t i = 0; i < n; i++) {
                bool a = lmp_json_state_accepts(&s, doc + i, 1);
                if (!lmp_json_state_feed(&s, doc + i, 1)) {
                        CHECK(!a, "accepts and feed disagree at byte %zu of %s", i, doc);
                        return false;
                }
                CHECK(a, "accepts and feed disagree at byte %zu of %s", i, doc);
        }
        return lmp_json_state_complete(&s);
}

/* Whether doc is a valid prefix (complete or not). */
static bool prefix_ok(const struct lmp_json_grammar *g, const char *doc) {
        struct lmp_json_state s;
        lmp_json_state_init(&s, g);
        return lmp_json_state_feed(&s, doc, strlen(doc));
}

#define ACCEPT(g, doc) CHECK(doc_ok(g, doc), "refused: %s", doc)
#define REFUSE(g, doc) CHECK(!doc_ok(g, doc), "accepted: %s", doc)
#define PREFIX(g, doc) CHECK(prefix_ok(g, doc), "prefix refused: %s", doc)
#define NOPREFIX(g, doc) CHECK(!prefix_ok(g, doc), "prefix accepted: %s", doc)

static void test_any_object(void) {
        struct lmp_json_grammar *g = schema(NULL);
        ACCEPT(g, "{}");
        ACCEPT(g, "{\"a\":1}");
        ACCEPT(g, " {\"a\": [1, 2.5e-3, -0, true, false, null, \"x\\n\\u00e9\xc3\xa9\"], \"b\":{}}");
        ACCEPT(g, "{\"\xf0\x9f\x98\x80\":\"\\ud7ff\"}");
        REFUSE(g, "[]");                /* json format: an object */
        REFUSE(g, "\"x\"");
        REFUSE(g, "{\"a\":1");          /* valid prefix, not complete */
        PREFIX(g, "{\"a\":1");
        NOPREFIX(g, "{,");
        NOPREFIX(g, "{\"a\" 1");
        NOPREFIX(g, "{\"a\":01");
        NOPREFIX(g, "{\"a\":1.}");
        NOPREFIX(g, "{\"a\":-}");
        NOPREFIX(g, "{\"a\":1,}");
        NOPREFIX(g, "{\"a\":[1,]");
        NOPREFIX(g, "{\"a\":tru}");
        NOPREFIX(g, "{\"a\":\"\x01\"}");        /* control character */
        NOPREFIX(g, "{\"a\":\"\\x\"}");        /* bad escape */
        NOPREFIX(g, "{\"a\":\"\\ud800\"}");    /* surrogate escape */
        NOPREFIX(g, "{\"a\":\"\xc0\x80\"}");    /* overlong */
        NOPREFIX(g, "{\"a\":\"\xed\xa0\x80\"}");    /* surrogate in UTF-8 */
        NOPREFIX(g, "{\"a\":\"\xf5\"}");
        NOPREFIX(g, "{} ");             /* nothing after the document */
        NOPREFIX(g, "{}{}");
        /* Whitespace: at most LMP_JSON_MAX_WS bytes in a row. */
        ACCEPT(g, "{    \"a\"    :    1    }");
        NOPREFIX(g, "{     ");
        NOPREFIX(g, "{\"a\":1     ");
        /* Digits: at most LMP_JSON_MAX_DIGITS per part; exponents of 3. */
        ACCEPT(g, "{\"a\":12345678901234567890}");
        NOPREFIX(g, "{\"a\":123456789012345678901");
        ACCEPT(g, "{\"a\":1.5e+308}");
        NOPREFIX(g, "{\"a\":1e1234");
        /* Depth: LMP_JSON_MAX_DEPTH nested containers, the document's frame
         * being one of them. */
        char deep[256] = "{\"a\":";
        size_t n = strlen(deep);
        for (int i = 0; i < LMP_JSON_MAX_DEPTH - 2; i++)
                deep[n++] = '[';
        deep[n] = 0;
        PREFIX(g, deep);
        deep[n++] = '[';
        deep[n] = 0;
        NOPREFIX(g, deep);
        /* Empty tokens are never accepted. */
        struct lmp_json_state s;
        lmp_json_state_init(&s, g);
        CHECK(!lmp_json_state_accepts(&s, "", 0), "an empty token was accepted");
        CHECK(!lmp_json_state_complete(&s), "an empty document is complete");
        lmp_json_grammar_unref(g);
}

static void test_types(void) {
        struct lmp_json_grammar *g = schema("{\"type\":\"integer\"}");
        ACCEPT(g, "12");
        ACCEPT(g, "-0");
        REFUSE(g, "1.5");
        REFUSE(g, "1e3");
        REFUSE(g, "12 ");
        lmp_json_grammar_unref(g);
        g = schema("{\"type\":\"number\"}");
        ACCEPT(g, "-1.25E-7");
        REFUSE(g, "\"1\"");
        lmp_json_grammar_unref(g);
        g = schema("{\"type\":\"boolean\"}");
        ACCEPT(g, "true");
        ACCEPT(g, "false");
        REFUSE(g, "null");
        lmp_json_grammar_unref(g);
        g = schema("{\"type\":\"null\"}");
        ACCEPT(g, "null");
        REFUSE(g, "true");
        lmp_json_grammar_unref(g);
        g = schema("{\"type\":[\"string\",\"null\"]}");
        ACCEPT(g, "\"x\"");
        ACCEPT(g, "null");
        REFUSE(g, "1");
        lmp_json_grammar_unref(g);
        g = schema("{\"type\":\"integer\",\"enum\":[1e300,-3,2.0]}");  /* integers out of a cast's range too */
        ACCEPT(g, "1e+300");
        ACCEPT(g, "2");
        REFUSE(g, "2.0");
        lmp_json_grammar_unref(g);
        g = schema("{}");       /* any value */
        ACCEPT(g, "[1,{\"a\":null}]");
        ACCEPT(g, "7");
        ACCEPT(g, "\"s\"");
        lmp_json_grammar_unref(g);
        g = schema("true");
        ACCEPT(g, "false");
        lmp_json_grammar_unref(g);
}

static void test_objects(void) {
        struct lmp_json_grammar *g = schema(
                "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
                "\"age\":{\"type\":\"integer\"},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}},"
                "\"required\":[\"name\",\"age\"],\"additionalProperties\":false}");
        ACCEPT(g, "{\"name\":\"a\",\"age\":3}");
        ACCEPT(g, "{ \"age\" : 3 , \"name\" : \"a\" , \"tags\" : [ \"x\" ] }");
        REFUSE(g, "{\"name\":\"a\"}");                  /* age is required */
        NOPREFIX(g, "{}");
        NOPREFIX(g, "{\"nam\":");
        NOPREFIX(g, "{\"other\"");
        NOPREFIX(g, "{\"name\":1");
        NOPREFIX(g, "{\"name\":\"a\",\"name\"");        /* each once */
        NOPREFIX(g, "{\"name\":\"a\",\"age\":1,\"tags\":[],");      /* nothing left to add */
        lmp_json_grammar_unref(g);
        /* A required name outside properties: any value. */
        g = schema("{\"properties\":{},\"required\":[\"x\"]}");
        ACCEPT(g, "{\"x\":[null]}");
        REFUSE(g, "{}");
        lmp_json_grammar_unref(g);
        g = schema("{\"type\":\"object\",\"additionalProperties\":false}");
        ACCEPT(g, "{}");
        NOPREFIX(g, "{\"");
        lmp_json_grammar_unref(g);
        /* Property names with bytes to escape. */
        g = schema("{\"properties\":{\"a\\\"b\":{\"const\":1}},\"required\":[\"a\\\"b\"]}");
        ACCEPT(g, "{\"a\\\"b\":1}");
        lmp_json_grammar_unref(g);
}

static void test_keywords(void) {
        struct lmp_json_grammar *g = schema("{\"type\":\"array\",\"items\":{\"type\":\"integer\"},"
                                            "\"minItems\":2,\"maxItems\":3}");
        REFUSE(g, "[]");
        REFUSE(g, "[1]");
        NOPREFIX(g, "[1]");
        ACCEPT(g, "[1,2]");
        ACCEPT(g, "[1,2,3]");
        NOPREFIX(g, "[1,2,3,");
        NOPREFIX(g, "[\"a\"");
        lmp_json_grammar_unref(g);
        g = schema("{\"type\":\"array\",\"maxItems\":0}");
        ACCEPT(g, "[]");
        NOPREFIX(g, "[1");
        lmp_json_grammar_unref(g);
        g = schema("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}");
        REFUSE(g, "\"a\"");
        ACCEPT(g, "\"ab\"");
        ACCEPT(g, "\"\xc3\xa9\\n\\u0041\"");    /* three characters */
        NOPREFIX(g, "\"abcd");
        lmp_json_grammar_unref(g);
        g = schema("{\"enum\":[\"red\",\"green\",1,12,null,{\"a\":[1]}]}");
        ACCEPT(g, "\"red\"");
        ACCEPT(g, "\"green\"");
        ACCEPT(g, "1");
        ACCEPT(g, "12");
        ACCEPT(g, "null");
        ACCEPT(g, "{\"a\":[1]}");
        REFUSE(g, "\"blue\"");
        REFUSE(g, "2");
        REFUSE(g, "{\"a\": [1]}");              /* enum values are written compactly */
        lmp_json_grammar_unref(g);
        g = schema("{\"type\":\"object\",\"properties\":{\"n\":{\"enum\":[1,12]}},\"required\":[\"n\"]}");
        ACCEPT(g, "{\"n\":1}");
        ACCEPT(g, "{\"n\":12 }");
        NOPREFIX(g, "{\"n\":123");
        lmp_json_grammar_unref(g);
        g = schema("{\"const\":\"x\"}");
        ACCEPT(g, "\"x\"");
        REFUSE(g, "\"y\"");
        lmp_json_grammar_unref(g);
        g = schema("{\"anyOf\":[{\"type\":\"string\",\"maxLength\":1},{\"type\":\"object\",\"properties\":"
                   "{\"k\":{\"type\":\"boolean\"}},\"required\":[\"k\"]},{\"type\":\"number\"}]}");
        ACCEPT(g, "\"a\"");
        ACCEPT(g, "{\"k\":true}");
        ACCEPT(g, "-3");
        REFUSE(g, "\"ab\"");
        REFUSE(g, "null");
        lmp_json_grammar_unref(g);
}

static void refused(const char *text, const char *want) {
        struct lmp_json_grammar *g = NULL;
        struct lmp_error err = { 0 };
        int r = lmp_json_grammar_new_schema(text, strlen(text), &g, &err);
        CHECK(r == -EINVAL, "schema %s: got %d", text, r);
        CHECK(strstr(err.msg, want), "schema %s: message \"%s\" does not say \"%s\"", text, err.msg, want);
        CHECK(!g, "schema %s: a grammar on failure", text);
        lmp_json_grammar_unref(g);
}

static void test_refusals(void) {
        refused("{\"type\":\"string\",\"pattern\":\"a+\"}", "unsupported keyword \"pattern\"");
        refused("{\"properties\":{\"a\":{\"format\":\"date\"}}}", "schema /properties/a: unsupported keyword \"format\"");
        refused("{\"items\":{\"$ref\":\"#\"}}", "/items: unsupported keyword \"$ref\"");
        refused("{\"oneOf\":[]}", "unsupported keyword \"oneOf\"");
        refused("{\"type\":\"string\",\"minLength\":3,\"maxLength\":2}", "minLength 3 is greater");
        refused("{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}", "minItems 3 is greater");
        refused("{\"enum\":[]}", "enum is empty");
        refused("{\"type\":\"date\"}", "unknown type \"date\"");
        refused("{\"anyOf\":[{\"type\":\"object\"},{\"type\":\"object\"}]}", "begin with '{'");
        refused("{\"anyOf\":[{\"type\":\"integer\"},{\"enum\":[1]}]}", "begin with '1'");
        refused("{\"additionalProperties\":{\"type\":\"string\"}}", "only false or true");
        refused("{\"required\":[\"a\"],\"additionalProperties\":false}", "which properties does not define");
        refused("{\"type\":\"string\",\"enum\":[1]}", "not of type string");
        refused("{\"minLength\":-1}", "minLength must be an integer");
        refused("[1]", "must be an object or true");
        refused("false", "must be an object or true");
        refused("{\"type\":", "not valid JSON");
        refused("{\"properties\":{\"a\":{},\"a\":{}}}", "defined twice");
        /* Depth: a schema of 31 nested arrays is too deep, 30 are fine. */
        char deep[1024] = "";
        for (int i = 0; i < LMP_JSON_MAX_DEPTH - 1; i++)
                strcat(deep, "{\"items\":");
        strcat(deep, "{}");
        for (int i = 0; i < LMP_JSON_MAX_DEPTH - 1; i++)
                strcat(deep, "}");
        refused(deep, "nests deeper than");
        struct lmp_json_grammar *g = schema(deep + strlen("{\"items\":"));
        /* ... and its deepest document fits the state. */
        char doc[128] = "";
        for (int i = 0; i < LMP_JSON_MAX_DEPTH - 2; i++)
                strcat(doc, "[");
        strcat(doc, "[1]");
        for (int i = 0; i < LMP_JSON_MAX_DEPTH - 2; i++)
                strcat(doc, "]");
        ACCEPT(g, doc);
        lmp_json_grammar_unref(g);
        /* Bounds on sizes. */
        char *big = malloc(LMP_JSON_SCHEMA_MAX + 2);
        memset(big, ' ', LMP_JSON_SCHEMA_MAX + 1);
        big[LMP_JSON_SCHEMA_MAX + 1] = 0;
        refused(big, "more than");
        free(big);
        char e[4096] = "{\"enum\":[0";
        for (int i = 1; i <= LMP_JSON_MAX_ALTS; i++)
                snprintf(e + strlen(e), sizeof(e) - strlen(e), ",%d", i);
        strcat(e, "]}");
        refused(e, "more than 64 values");
}

/* Random walks: at each step a random byte among those accepted (the
 * printable ones and a few multi-byte characters), until the document is
 * complete; the result must parse. Stops a walk that runs long. */
static void test_random_walks(const char *text, int walks) {
        struct lmp_json_grammar *g = schema(text);
        uint64_t x = 0x9e3779b97f4a7c15ull;
        static const char *const pieces[] = { "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\\n", "\\u00e9",
                                              "true", "false", "null", "\n", "\t" };
        int complete = 0;
        for (int w = 0; w < walks; w++) {
                struct lmp_json_state s;
                lmp_json_state_init(&s, g);
                char doc[4096];
                size_t n = 0;
                while (n < 3000) {
                        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                        /* End as soon as allowed half the time, and always
                         * past 1000 bytes, so that walks finish. */
                        if (lmp_json_state_complete(&s) && (x % 2 == 0 || n > 1000))
                                break;
                        char cand[128 + 10][8];
                        size_t nc = 0;
                        for (int b = 0x20; b < 0x7f; b++)
                                if (lmp_json_state_accepts(&s, &(char){ (char)b }, 1))
                                        cand[nc][0] = (char)b, cand[nc++][1] = 0;
                        for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++)
                                if (lmp_json_state_accepts(&s, pieces[i], strlen(pieces[i])))
                                        strcpy(cand[nc++], pieces[i]);
                        if (nc == 0) {
                                CHECK(lmp_json_state_complete(&s), "walk %d: a dead end after %.*s", w,
                                      (int)n, doc);
                                break;
                        }
                        /* Past 1000 bytes, prefer closing bytes. */
                        size_t pick = (size_t)(x >> 33) % nc;
                        if (n > 1000)
                                for (size_t i = 0; i < nc; i++)
                                        if (strchr("]}\"0", cand[i][0]))
                                                pick = i;
                        size_t l = strlen(cand[pick]);
                        CHECK(lmp_json_state_feed(&s, cand[pick], l), "walk %d: accepted but not fed", w);
                        memcpy(doc + n, cand[pick], l);
                        n += l;
                }
                if (!lmp_json_state_complete(&s))
                        continue;
                complete++;
                doc[n] = 0;
                cJSON *v = cJSON_Parse(doc);
                CHECK(v, "walk %d: does not parse: %s", w, doc);
                cJSON_Delete(v);
        }
        CHECK(complete > walks / 2, "%s: only %d of %d walks completed", text ? text : "json", complete, walks);
        lmp_json_grammar_unref(g);
}

static void test_no_allocation(void) {
        struct lmp_json_grammar *g = schema("{\"properties\":{\"a\":{\"anyOf\":[{\"type\":\"string\"},"
                                            "{\"type\":\"array\",\"items\":{\"enum\":[1,2]}}]}},"
                                            "\"required\":[\"a\"]}");
        const char *doc = "{\"a\":[1,2,1]}";
        struct lmp_json_state s;
        long before = n_allocs;
        lmp_json_state_init(&s, g);
        for (size_t i = 0; doc[i]; i++) {
                lmp_json_state_accepts(&s, "\"x\"", 3);
                lmp_json_state_feed(&s, doc + i, 1);
        }
        CHECK(lmp_json_state_complete(&s), "not complete");
        CHECK(n_allocs == before, "%ld allocations while matching", n_allocs - before);
        lmp_json_grammar_unref(g);
}

static void test_cache(void) {
        struct lmp_json_cache *c = NULL;
        struct lmp_error err = { 0 };
        CHECK(lmp_json_cache_new(0, &c, &err) == -EINVAL, "capacity 0 accepted");
        CHECK(lmp_json_cache_new(LMP_JSON_CACHE_MAX + 1, &c, &err) == -EINVAL, "capacity over the bound accepted");
        CHECK(lmp_json_cache_new(2, &c, &err) == 0, "%s", err.msg);
        struct lmp_json_grammar *a = NULL, *b = NULL, *a2 = NULL, *d = NULL, *j = NULL;
        const char *sa = "{\"type\":\"string\"}", *sb = "{\"type\":\"integer\"}", *sd = "{\"type\":\"null\"}";
        CHECK(lmp_json_cache_get(c, sa, strlen(sa), &a, &err) == 0, "%s", err.msg);
        CHECK(lmp_json_cache_get(c, sa, strlen(sa), &a2, &err) == 0 && a2 == a, "not cached");
        CHECK(lmp_json_cache_get(c, sb, strlen(sb), &b, &err) == 0, "%s", err.msg);
        CHECK(lmp_json_cache_get(c, sd, strlen(sd), &d, &err) == 0, "%s", err.msg);  /* evicts a */
        ACCEPT(a, "\"still usable after eviction\"");
        CHECK(lmp_json_cache_get(c, "\"json\"", 6, &j, &err) == 0, "%s", err.msg);
        ACCEPT(j, "{}");
        CHECK(lmp_json_cache_get(c, "{\"x\":1}", 7, &d, &err) == -EINVAL, "a bad schema cached");
        lmp_json_grammar_unref(a);
        lmp_json_grammar_unref(a2);
        lmp_json_grammar_unref(b);
        lmp_json_grammar_unref(d);
        lmp_json_grammar_unref(j);
        lmp_json_cache_free(c);
        lmp_json_cache_free(NULL);
        lmp_json_grammar_unref(NULL);
}

int main(void) {
        test_any_object();
        test_types();
        test_objects();
        test_keywords();
        test_refusals();
        test_no_allocation();
        test_cache();
        test_random_walks(NULL, 200);
        test_random_walks("{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},"
                          "\"color\":{\"enum\":[\"red\",\"green\",\"blue\"]},"
                          "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":5},\"maxItems\":3},"
                          "\"owner\":{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
                          "\"ok\":{\"type\":\"boolean\"}},\"required\":[\"name\",\"ok\"],"
                          "\"additionalProperties\":false}},"
                          "\"required\":[\"id\",\"color\",\"owner\"],\"additionalProperties\":false}", 200);
        if (failures) {
                fprintf(stderr, "%d failures\n", failures);
                return 1;
        }
        printf("ok\n");
        return 0;
}
