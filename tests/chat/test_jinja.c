/* Unit tests of the Jinja interpreter: each statement, expression, test,
 * filter and method the model templates use, whitespace control, each
 * bound (depth, output, iterations, memory) and errors (syntax, undefined
 * values, raise_exception), each a template, a context and the expected
 * text or refusal. The expected texts are Python jinja2's (3.1) under Hugging
 * Face's settings. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja.h"

static int failures, checks;

static const char CTX[] =
        "{\"messages\": [{\"role\": \"system\", \"content\": \" Be brief. \"},"
        " {\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\","
        " \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1, \"b\": [true, null, 1.5]}}}]}],"
        " \"n\": 3, \"x\": 2.5, \"s\": \"a,b,,c\", \"d\": {\"k\": \"v\", \"z\": 1, \"a\": 2}, \"u\": \"caf\\u00e9 \\u00e0\","
        " \"none\": null, \"t\": true, \"bos_token\": \"<s>\"}";

static int render(const char *tmpl, const struct lmp_jinja_limits *lim, char **out, struct lmp_error *err) {
        cJSON *ctx = cJSON_Parse(CTX);
        if (!ctx)
                abort();
        struct lmp_jinja_opts o = {.limits = lim, .now = 1768435200, .trim_blocks = true, .lstrip_blocks = true};
        int r = lmp_jinja_render(tmpl, strlen(tmpl), ctx, &o, out, err);
        cJSON_Delete(ctx);
        return r;
}

static void ok(const char *tmpl, const char *want) {
        char *out = NULL;
        struct lmp_error err = {0};
        checks++;
        int r = render(tmpl, NULL, &out, &err);
        if (r < 0) {
                fprintf(stderr, "FAIL %s\n  error %d: %s\n  want: %s\n", tmpl, r, err.msg, want);
                failures++;
        } else if (strcmp(out, want) != 0) {
                fprintf(stderr, "FAIL %s\n  got:  [%s]\n  want: [%s]\n", tmpl, out, want);
                failures++;
        }
        free(out);
}

static void bad_lim(const char *tmpl, const struct lmp_jinja_limits *lim, int code, const char *msg) {
        char *out = (char *)"untouched";
        struct lmp_error err = {0};
        checks++;
        int r = render(tmpl, lim, &out, &err);
        if (r != code || !strstr(err.msg, msg) || strcmp(out, "untouched") != 0) {
                fprintf(stderr, "FAIL %s\n  got %d [%s], want %d [%s]\n", tmpl, r, r == 0 ? out : err.msg, code, msg);
                failures++;
                if (r == 0)
                        free(out);
        }
}

static void bad(const char *tmpl, const char *msg) { bad_lim(tmpl, NULL, -EINVAL, msg); }

int main(void) {
        /* text, output, comments, whitespace control, trim_blocks, lstrip_blocks */
        ok("", "");
        ok("plain {{ 'text' }}", "plain text");
        ok("a {# comment #} b", "a  b");
        ok("a  {{- 'b' -}}  c", "abc");
        ok("{% if t %}\nyes\n{% endif %}\n", "yes\n");
        ok("  {% if t %}x{% endif %}", "x");
        ok("  {%+ if t %}x{% endif %}", "  x");
        ok("{% if t +%}\nx{% endif %}", "\nx");
        ok("a\n  {# c #}\nb", "a\nb");
        ok("{{ 'x' }}\n", "x");
        ok("{{ 'x' }}\n\n", "x\n");
        ok("a\r\nb\rc", "a\nb\nc");
        ok("{% raw %}{{ x }}{% endraw %}", "{{ x }}");
        /* literals and operators */
        ok("{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }}",
           "7 3 -4 1 2 1024 3.5");
        ok("{{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 3 * 1.5 }} {{ x * 2 }}", "1.0 0.30000000000000004 1e+20 4.5 5.0");
        ok("{{ 'a' ~ 1 ~ none ~ true }} {{ 'ab' + 'cd' }} {{ 'ab' * 2 }}", "a1NoneTrue abcd abab");
        ok("{{ [1, 'a', none, true] }} {{ {'k': 'v'} }} {{ (1, 2) }} {{ (1,) }}", "[1, 'a', None, True] {'k': 'v'} (1, 2) (1,)");
        ok("{{ 1 < 2 and 2 <= 2 and 3 > 2 and 3 >= 3 and 1 == 1.0 and 1 != 2 }}", "True");
        ok("{{ not t }} {{ none or 'd' }} {{ 0 and 1 }} {{ 'a' in 'cat' }} {{ 2 not in [1, 3] }} {{ 'k' in d }}",
           "False d 0 True True True");
        ok("{{ 'y' if t else 'n' }}{{ 'y' if none else 'n' }}[{{ 'y' if none }}]", "yn[]");
        ok("{{ \"it's\" }} {{ 'a\\nb' }} {{ '\\u00e9' }}", "it's a\nb \xc3\xa9");
        /* attributes, subscripts, slices */
        ok("{{ messages[1].role }} {{ messages[1]['content'] }} {{ messages[-1].role }} {{ d.k }} {{ d['z'] }}",
           "user Hi assistant v 1");
        ok("{{ messages[1:] | length }} {{ messages[:-1] | length }} {{ 'hello'[1:3] }} {{ 'hello'[::-1] }} {{ u[0:4] }}",
           "2 2 el olleh caf\xc3\xa9");
        ok("{{ u | length }} {{ u[3] }} {{ [1, 2, 3][::2] }}", "6 \xc3\xa9 [1, 3]");
        ok("{{ d.missing is defined }} {{ messages[9] is defined }} {{ nope is defined }} {{ nope is undefined }}",
           "False False False True");
        ok("{{ none.x is defined }}", "False");
        /* if / elif / else, for with loop.*, else, break, continue, unpacking, filtering */
        ok("{% if n > 5 %}a{% elif n > 2 %}b{% else %}c{% endif %}", "b");
        ok("{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
           "{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}",
           "1032TrueFalse3;2121FalseFalse3;3210FalseTrue3;");
        ok("{% for m in messages %}{{ loop.previtem.role if loop.previtem is defined else '-' }}{% endfor %}",
           "-systemuser");
        ok("{% for x in [] %}a{% else %}empty{% endfor %}", "empty");
        ok("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}",
           "013");
        ok("{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}", "k=v,z=1,a=2,");
        ok("{% for k in d %}{{ k }}{% endfor %}", "kza");
        ok("{% for m in messages if m.role != 'system' %}{{ loop.index }}{{ m.role }}{% endfor %}", "1user2assistant");
        ok("{% for c in 'ab' %}{{ c }}.{% endfor %}", "a.b.");
        /* set, block set, namespace, scoping */
        ok("{% set a = 1 %}{% set b, c = 2, 3 %}{{ a }}{{ b }}{{ c }}", "123");
        ok("{% set a = 1 %}{% for i in [1] %}{% set a = 2 %}{% endfor %}{{ a }}", "1");
        ok("{% set ns = namespace(a=1, f=false) %}{% for i in [1, 2] %}{% set ns.a = ns.a + i %}{% endfor %}{{ ns.a }}{{ ns.f }}",
           "4False");
        ok("{% set b %}x{{ 1 }}y{% endset %}[{{ b }}]", "[x1y]");
        ok("{% set b | upper %}abc{% endset %}{{ b }}", "ABC");
        /* macros, call blocks, filter blocks */
        ok("{% macro m(a, b='B') %}{{ a }}{{ b }}{% endmacro %}{{ m(1) }}{{ m(1, 2) }}{{ m(b=3, a=4) }}", "1B1243");
        ok("{% macro w() %}<{{ caller() }}>{% endmacro %}{% call w() %}in{% endcall %}", "<in>");
        ok("{% macro w() %}{{ caller(5) }}{% endmacro %}{% call(v) w() %}{{ v * 2 }}{% endcall %}", "10");
        ok("{% macro r(k) %}{% if k > 0 %}{{ k }}{{ r(k - 1) }}{% endif %}{% endmacro %}{{ r(3) }}", "321");
        ok("{% filter upper %}ab{{ 'c' }}{% endfilter %}", "ABC");
        /* tests */
        ok("{{ s is string }}{{ d is mapping }}{{ messages is iterable }}{{ messages is sequence }}{{ n is number }}"
           "{{ n is integer }}{{ x is float }}{{ t is boolean }}{{ none is none }}{{ t is true }}{{ n is odd }}"
           "{{ 4 is even }}{{ 9 is divisibleby(3) }}{{ n is eq 3 }}{{ s is not string }}",
           "TrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueFalse");
        /* filters */
        ok("[{{ '  a b  ' | trim }}] {{ 'ab' | upper }} {{ 'AB' | lower }} {{ 'hello world' | title }} {{ 'aB' | capitalize }}",
           "[a b] AB ab Hello World Ab");
        ok("{{ messages | length }} {{ s | length }} {{ d | count }} {{ [3, 1, 2] | first }} {{ [3, 1, 2] | last }}",
           "3 6 3 3 2");
        ok("{{ [1, 2] | join(', ') }} {{ messages | map(attribute='role') | join('/') }} {{ messages | join('|', attribute='role') }}",
           "1, 2 system/user/assistant system|user|assistant");
        ok("{{ messages | selectattr('role', 'equalto', 'user') | list | length }} {{ messages | rejectattr('role', 'eq', 'user') | map(attribute='role') | list }}",
           "1 ['system', 'assistant']");
        ok("{{ messages | selectattr('tool_calls') | list | length }} {{ [0, 1, 2] | select | list }} {{ [0, 1, 2] | reject('odd') | list }}",
           "1 [1, 2] [0, 2]");
        ok("{{ nope | default('d') }} {{ '' | default('d', true) }} {{ none | default('d') }}", "d d None");
        ok("{{ d | items | list }} {{ d | dictsort }} {{ [3, 1, 2] | sort }} {{ ['b', 'A', 'c'] | sort(reverse=true) }}",
           "[('k', 'v'), ('z', 1), ('a', 2)] [('a', 2), ('k', 'v'), ('z', 1)] [1, 2, 3] ['c', 'b', 'A']");
        ok("{{ 'a-b-c' | replace('-', '+') }} {{ '3' | int + 1 }} {{ 'x' | int }} {{ 2 | float }} {{ 5 | string ~ 'x' }}",
           "a+b+c 4 0 2.0 5x");
        ok("{{ [1, 2, 2, 3] | unique | list }} {{ [1, 5, 3] | max }} {{ [1, 5, 3] | min }} {{ [1, 2] | reverse | list }} {{ -3 | abs }}",
           "[1, 2, 3] 5 1 [2, 1] 3");
        ok("{{ 'a\\nb' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}", "a\n  b|  a\n  b");
        ok("{{ '<b>' | safe }} {{ '<' | safe + '<' }}", "<b> <&lt;");
        ok("{{ messages[2].tool_calls[0].function.arguments | tojson }}", "{\"a\": 1, \"b\": [true, null, 1.5]}");
        ok("{{ d | tojson(indent=2) }}", "{\n  \"k\": \"v\",\n  \"z\": 1,\n  \"a\": 2\n}");
        ok("{{ d | tojson(sort_keys=true) }} {{ u | tojson }} {{ u | tojson(ensure_ascii=true) }} {{ '\"\\\\' | tojson }}",
           "{\"a\": 2, \"k\": \"v\", \"z\": 1} \"caf\xc3\xa9 \xc3\xa0\" \"caf\\u00e9 \\u00e0\" \"\\\"\\\\\"");
        ok("{{ d | tojson(separators=(',', ':')) }}", "{\"k\":\"v\",\"z\":1,\"a\":2}");
        /* string and dict methods */
        ok("[{{ '  x  '.strip() }}][{{ '  x  '.lstrip() }}][{{ '  x  '.rstrip() }}][{{ 'xxaxx'.strip('x') }}]",
           "[x][x  ][  x][a]");
        ok("{{ s.split(',') }} {{ ' a  b '.split() }} {{ s.split(',', 1) }} {{ s.rsplit(',', 1) }}",
           "['a', 'b', '', 'c'] ['a', 'b'] ['a', 'b,,c'] ['a,b,', 'c']");
        ok("{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'ab'.upper() }} {{ 'AB'.lower() }} {{ 'a b'.title() }}",
           "True True AB ab A B");
        ok("{{ 'aXbX'.replace('X', '-') }} {{ 'aXbX'.replace('X', '-', 1) }} {{ '{} and {}'.format(1, 'b') }} {{ '{x}!'.format(x=2) }}",
           "a-b- a-bX 1 and b 2!");
        ok("{{ d.get('k') }} {{ d.get('q') }} {{ d.get('q', 0) }} {{ d.keys() | list }} {{ d.values() | list }}",
           "v None 0 ['k', 'z', 'a'] ['v', 1, 2]");
        ok("{{ '-'.join(['a', 'b']) }} {{ 'banana'.count('an') }} {{ 'banana'.find('n') }}", "a-b 2 2");
        /* globals */
        ok("{{ strftime_now('%Y-%m-%d') }} {{ strftime_now('%d %b %Y') }}", "2026-01-15 15 Jan 2026");
        ok("{{ range(3) | list }} {{ range(1, 7, 2) | list }} {{ dict(a=1) }}", "[0, 1, 2] [1, 3, 5] {'a': 1}");
        ok("{{ bos_token }}{% for m in messages %}{{ m.role | upper }}:{{ m.content | trim }}\n{% endfor %}",
           "<s>SYSTEM:Be brief.\nUSER:Hi\nASSISTANT:Yo\n");

        /* errors: syntax, undefined values, types, raise_exception */
        bad("{% if t %}", "expected 'elif'");
        bad("{{ 1 + }}", "syntax error");
        bad("{% for %}", "syntax error");
        bad("{{ 'abc }}", "unterminated string");
        bad("{# x", "unterminated comment");
        bad("{% frobnicate %}", "unknown statement 'frobnicate'");
        bad("{{ x", "unexpected end of template");
        bad("{{ nope.attr }}", "'nope' is undefined");
        bad("{{ nope() }}", "'nope' is undefined");
        bad("{{ 1 + 'a' }}", "unsupported operand");
        bad("{{ 1 // 0 }}", "division or modulo by zero");
        bad("{% for x in none %}{% endfor %}", "'NoneType' object is not iterable");
        bad("{{ raise_exception('Only user and assistant roles are supported!') }}",
            "Only user and assistant roles are supported!");
        bad("{{ x | frob }}", "no filter named 'frob'");
        bad("{{ x is frob }}", "no test named 'frob'");
        bad("{{ messages.append(1) }}", "unsafe");
        bad("{% set q = 1 %}{% set q.a = 2 %}", "non-namespace");
        bad("{{ [1] | map(attribute='a') | tojson }}", "generator is not JSON serializable");
        bad("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", "takes not more than 1");

        /* bounds: each with a clear error, never a crash */
        struct lmp_jinja_limits lim = lmp_jinja_default_limits;
        lim.max_output = 100;
        bad_lim("{% for i in range(200) %}x{% endfor %}", &lim, -E2BIG, "longer than 100 bytes");
        bad_lim("{{ 'x' * 1000 }}", &lim, -E2BIG, "longer than 100 bytes");
        lim = lmp_jinja_default_limits;
        lim.max_iterations = 50;
        bad_lim("{% for i in range(10) %}{% for j in range(10) %}{% endfor %}{% endfor %}", &lim, -E2BIG,
                "more than 50 loop iterations");
        bad_lim("{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}", &lim, -E2BIG, "");
        lim = lmp_jinja_default_limits;
        lim.max_depth = 20;
        bad_lim("{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}", &lim, -E2BIG, "deeper than 20");
        bad_lim("{{ ((((((((((((((((((((((((1)))))))))))))))))))))))) }}", &lim, -E2BIG, "deeper than 20");
        bad_lim("{% if t %}{% if t %}{% if t %}{% if t %}{% if t %}{% if t %}{% if t %}{% if t %}{% if t %}{% if t %}"
                "{% if t %}{% if t %}{% if t %}{% if t %}{% if t %}{% if t %}{% if t %}{% if t %}{% if t %}{% if t %}"
                "{% if t %}x{% endif %}{% endif %}{% endif %}{% endif %}{% endif %}{% endif %}{% endif %}{% endif %}"
                "{% endif %}{% endif %}{% endif %}{% endif %}{% endif %}{% endif %}{% endif %}{% endif %}{% endif %}"
                "{% endif %}{% endif %}{% endif %}{% endif %}", &lim, -E2BIG, "deeper than 20");
        bad_lim("{% set ns = namespace(x=[]) %}{% for i in range(30) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}",
                &lim, -E2BIG, "values nested deeper than 20");
        lim = lmp_jinja_default_limits;
        lim.max_memory = 1 << 20;
        bad_lim("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(30) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                &lim, -E2BIG, "memory");

        printf("%d checks, %d failures\n", checks, failures);
        return failures ? 1 : 0;
}
