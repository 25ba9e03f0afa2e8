/* Image files in: PNG, JPEG and WebP decoded to RGB bytes by Debian's
 * libraries (libpng, libjpeg-turbo, libwebp), with bounds on the file's
 * bytes and on the picture's dimensions checked before any pixel buffer is
 * allocated. The format is told by the file's signature, not its name.
 * Library code: errors are values with a message, nothing is logged. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* Defaults of struct lmp_image_limits (a camera frame is well within). */
#define LMP_IMAGE_MAX_BYTES (32u << 20)         /* 32 MiB of file */
#define LMP_IMAGE_MAX_SIDE 8192u                /* pixels per side */
#define LMP_IMAGE_MAX_PIXELS (32u << 20)        /* width * height */

struct lmp_image_limits {
        size_t max_bytes;
        uint32_t max_side;
        uint32_t max_pixels;
};

#define LMP_IMAGE_LIMITS_DEFAULT \
        ((struct lmp_image_limits){ LMP_IMAGE_MAX_BYTES, LMP_IMAGE_MAX_SIDE, LMP_IMAGE_MAX_PIXELS })

/* A decoded picture: width x height pixels of 3 bytes (R, G, B), row-major. */
struct lmp_image {
        uint32_t width, height;
        uint8_t *rgb;
};

/* Decodes an image file held in memory. Errors: -EINVAL for an unknown
 * format or a broken or truncated file, -E2BIG for a file or a picture over
 * the limits (NULL: the defaults), -ENOMEM. Alpha is dropped (composited on
 * nothing: the colour channels as stored), grey and palette images become
 * RGB, 16-bit samples are reduced to 8. *ret is untouched on failure. */
int lmp_image_decode(const void *buf, size_t size, const struct lmp_image_limits *limits,
                     struct lmp_image *ret, struct lmp_error *err);

/* Reads and decodes a file (bounded by limits->max_bytes before reading). */
int lmp_image_load(const char *path, const struct lmp_image_limits *limits, struct lmp_image *ret,
                   struct lmp_error *err);

void lmp_image_clear(struct lmp_image *img);
