/* The settings table's row type and the value conversions every row shares.
 * A row says what a setting is (YAML key, type, where it lives in its
 * struct, bounds, default as text, description); the loader, the printer,
 * the environment overrides and the docs generator only ever walk rows.
 * Private to src/config. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"

enum lmp_setting_type {
        LMP_SETTING_BOOL,
        LMP_SETTING_INT,        /* int or int64_t field (size says which), imin..imax */
        LMP_SETTING_SIZE,       /* uint64_t bytes, K/M/G/T suffixes (powers of 1024) */
        LMP_SETTING_DOUBLE,     /* dmin..dmax, either end may be exclusive */
        LMP_SETTING_STRING,     /* char array; its size bounds the length */
        LMP_SETTING_ENUM,       /* enum field; names[] in value order */
};

enum {
        LMP_SETTING_REQUIRED = 1 << 0,  /* must be given (model name and path) */
        LMP_SETTING_OPTIONAL = 1 << 1,  /* null or "" leaves it unset */
        LMP_SETTING_MIN_OPEN = 1 << 2,  /* the minimum itself is not allowed */
        LMP_SETTING_MAX_OPEN = 1 << 3,
        LMP_SETTING_PATH = 1 << 4,      /* a file path, resolved against the file's directory */
};

/* Extra check for a string value: returns NULL if fine, else what is wrong
 * ("must be tcp://HOST:PORT"). */
typedef const char *(*lmp_setting_check_fn)(const char *value);

struct lmp_setting {
        const char *key;                /* "limits.queue_length"; model rows: "defaults.top_p" */
        enum lmp_setting_type type;
        size_t offset, size;            /* the field in struct lmp_config or lmp_model_config */
        int64_t imin, imax;
        double dmin, dmax;
        const char *const *names;       /* ENUM: value names, NULL-terminated */
        lmp_setting_check_fn check;
        unsigned flags;
        const char *def;                /* the default, as YAML text; NULL = unset */
        const char *doc;
};

/* The two tables: top-level settings (fields of struct lmp_config) and the
 * fields of one `models` entry (struct lmp_model_config). */
extern const struct lmp_setting lmp_config_settings[];
extern const size_t lmp_config_n_settings;
extern const struct lmp_setting lmp_model_settings[];
extern const size_t lmp_model_n_settings;

/* The fewest models a configuration may have (LMP_CONFIG_MAX_MODELS is the
 * most), and the most rows a table may have. */
#define LMP_CONFIG_MIN_MODELS 1
#define LMP_SETTINGS_MAX 64

/* Converts `text` (a YAML scalar or an environment value; `is_null` for
 * YAML's null) for row `s` and stores it in base + s->offset. On failure
 * returns -EINVAL or -ERANGE, writes the reason to msg (without the key)
 * and leaves the field as it was. */
int lmp_setting_parse(const struct lmp_setting *s, void *base, const char *text, bool is_null,
                      char *msg, size_t msg_size);

/* Writes the field's value as a YAML scalar (strings double-quoted). */
void lmp_setting_format(const struct lmp_setting *s, const void *base, char *buf, size_t size);

/* "LIMITS_QUEUE_LENGTH" for "limits.queue_length". */
void lmp_setting_env_name(const struct lmp_setting *s, char *buf, size_t size);

/* "integer", "size", "number", ... for messages and the docs. */
const char *lmp_setting_type_name(const struct lmp_setting *s);

/* Fills every field of base with its row's default. */
void lmp_settings_set_defaults(const struct lmp_setting *table, size_t n, void *base);

/* Where one value came from. */
enum lmp_origin_kind { LMP_ORIGIN_DEFAULT, LMP_ORIGIN_FILE, LMP_ORIGIN_PROFILE, LMP_ORIGIN_ENV };

struct lmp_origin {
        enum lmp_origin_kind kind;
        unsigned line, column;          /* FILE and PROFILE */
        bool invalid;                   /* a value was given but rejected */
        char text[LMP_CONFIG_ORIGIN_MAX]; /* "default", "f.yaml:3", "profile p, f.yaml:9", "env VAR" */
};

/* One per row of a table, for struct lmp_config or one model; `line` and
 * `column` locate the model's entry in the file. */
struct lmp_config_origins {
        unsigned line, column;
        size_t n;
        struct lmp_origin v[];
};
