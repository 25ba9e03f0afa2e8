/* PNG, JPEG and WebP to RGB bytes. Each decoder first reads the picture's
 * header, checks its dimensions against the limits, and only then
 * allocates and decodes; a decoder's error (a broken or truncated file) is
 * caught where the library reports it (libpng's simplified API and libwebp
 * return it; libjpeg's error manager jumps back here) and returned with the
 * library's own message. A truncated JPEG, which libjpeg only warns about
 * (and fills with grey), is refused as well, and so is a PNG cut after its
 * pixel data (libpng's simplified reader does not look for the IEND chunk
 * that ends every whole file). */
#include "image/image.h"

#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <png.h>
#include <webp/decode.h>

#include "common/readfile.h"

static int check_dims(const struct lmp_image_limits *lim, const char *fmt, uint64_t w, uint64_t h,
                      struct lmp_error *err) {
        if (w == 0 || h == 0)
                return lmp_error_set(err, -EINVAL, "%s image: empty (%llux%llu)", fmt,
                                     (unsigned long long)w, (unsigned long long)h);
        if (w > lim->max_side || h > lim->max_side || w * h > lim->max_pixels)
                return lmp_error_set(err, -E2BIG,
                                     "%s image: %llux%llu is over the limits (%u pixels a side, %u in all)",
                                     fmt, (unsigned long long)w, (unsigned long long)h, lim->max_side,
                                     lim->max_pixels);
        return 0;
}

/* ----------------------------------------------------------------- PNG */

static int decode_png(const void *buf, size_t size, const struct lmp_image_limits *lim,
                      struct lmp_image *ret, struct lmp_error *err) {
        /* the IEND chunk: length 0, type, CRC (the same in every file) */
        static const uint8_t iend[12] = { 0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82 };
        if (!memmem(buf, size, iend, sizeof(iend)))
                return lmp_error_set(err, -EINVAL, "PNG image: truncated (no IEND chunk)");
        png_image im;
        memset(&im, 0, sizeof(im));
        im.version = PNG_IMAGE_VERSION;
        if (!png_image_begin_read_from_memory(&im, buf, size))
                return lmp_error_set(err, -EINVAL, "PNG image: %s", im.message);
        int r = check_dims(lim, "PNG", im.width, im.height, err);
        if (r < 0) {
                png_image_free(&im);
                return r;
        }
        /* RGBA, then the alpha dropped: the colour channels as stored. */
        im.format = PNG_FORMAT_RGBA;
        size_t n = (size_t)im.width * im.height;
        uint8_t *rgba = malloc(n * 4);
        if (!rgba) {
                png_image_free(&im);
                return lmp_error_set(err, -ENOMEM, "PNG image %ux%u: out of memory", im.width, im.height);
        }
        if (!png_image_finish_read(&im, NULL, rgba, 0, NULL)) {
                free(rgba);
                r = lmp_error_set(err, -EINVAL, "PNG image: %s", im.message);
                png_image_free(&im);
                return r;
        }
        for (size_t i = 0; i < n; i++)
                memmove(rgba + i * 3, rgba + i * 4, 3);
        uint8_t *rgb = realloc(rgba, n * 3);
        *ret = (struct lmp_image){ .width = im.width, .height = im.height, .rgb = rgb ? rgb : rgba };
        return 0;
}

/* ---------------------------------------------------------------- JPEG */

struct jpeg_err {
        struct jpeg_error_mgr mgr;
        jmp_buf jump;
        char msg[JMSG_LENGTH_MAX];
};

static void jpeg_fail(j_common_ptr cinfo) {
        struct jpeg_err *je = (struct jpeg_err *)cinfo->err;
        je->mgr.format_message(cinfo, je->msg);
        longjmp(je->jump, 1);
}

/* Warnings (level -1) mean corrupt or truncated data: refused like errors.
 * Trace messages (level >= 0) are ignored. */
static void jpeg_message(j_common_ptr cinfo, int level) {
        if (level < 0)
                jpeg_fail(cinfo);
}

struct jpeg_state {
        struct jpeg_decompress_struct cinfo;
        struct jpeg_err je;
        uint8_t *rgb;
};

static int decode_jpeg(const void *buf, size_t size, const struct lmp_image_limits *lim,
                       struct lmp_image *ret, struct lmp_error *err) {
        /* Everything a longjmp must see unchanged lives in one heap object. */
        struct jpeg_state *s = calloc(1, sizeof(*s));
        if (!s)
                return lmp_error_set(err, -ENOMEM, "JPEG image: out of memory");
        int r;
        s->cinfo.err = jpeg_std_error(&s->je.mgr);
        s->je.mgr.error_exit = jpeg_fail;
        s->je.mgr.emit_message = jpeg_message;
        if (setjmp(s->je.jump)) {
                r = lmp_error_set(err, -EINVAL, "JPEG image: %s", s->je.msg);
                goto out;
        }
        jpeg_create_decompress(&s->cinfo);
        if (size > (unsigned long)-1) {
                r = lmp_error_set(err, -E2BIG, "JPEG image: file too large");
                goto out;
        }
        jpeg_mem_src(&s->cinfo, buf, (unsigned long)size);
        jpeg_read_header(&s->cinfo, TRUE);
        if ((r = check_dims(lim, "JPEG", s->cinfo.image_width, s->cinfo.image_height, err)) < 0)
                goto out;
        s->cinfo.out_color_space = JCS_RGB;
        jpeg_start_decompress(&s->cinfo);
        if (s->cinfo.output_components != 3) {
                r = lmp_error_set(err, -EINVAL, "JPEG image: %d components after conversion to RGB",
                                  s->cinfo.output_components);
                goto out;
        }
        uint32_t w = s->cinfo.output_width, h = s->cinfo.output_height;
        if ((r = check_dims(lim, "JPEG", w, h, err)) < 0)
                goto out;
        s->rgb = malloc((size_t)w * h * 3);
        if (!s->rgb) {
                r = lmp_error_set(err, -ENOMEM, "JPEG image %ux%u: out of memory", w, h);
                goto out;
        }
        while (s->cinfo.output_scanline < h) {
                JSAMPROW row = s->rgb + (size_t)s->cinfo.output_scanline * w * 3;
                if (jpeg_read_scanlines(&s->cinfo, &row, 1) != 1) {
                        r = lmp_error_set(err, -EINVAL, "JPEG image: truncated");
                        goto out;
                }
        }
        jpeg_finish_decompress(&s->cinfo);
        *ret = (struct lmp_image){ .width = w, .height = h, .rgb = s->rgb };
        s->rgb = NULL;
        r = 0;
out:
        jpeg_destroy_decompress(&s->cinfo);
        free(s->rgb);
        free(s);
        return r;
}

/* ---------------------------------------------------------------- WebP */

static int decode_webp(const void *buf, size_t size, const struct lmp_image_limits *lim,
                       struct lmp_image *ret, struct lmp_error *err) {
        int w = 0, h = 0;
        if (!WebPGetInfo(buf, size, &w, &h))
                return lmp_error_set(err, -EINVAL, "WebP image: not a valid WebP header");
        int r = check_dims(lim, "WebP", (uint64_t)w, (uint64_t)h, err);
        if (r < 0)
                return r;
        size_t n = (size_t)w * (size_t)h * 3;
        uint8_t *rgb = malloc(n);
        if (!rgb)
                return lmp_error_set(err, -ENOMEM, "WebP image %dx%d: out of memory", w, h);
        if (!WebPDecodeRGBInto(buf, size, rgb, n, w * 3)) {
                free(rgb);
                return lmp_error_set(err, -EINVAL, "WebP image: broken or truncated data");
        }
        *ret = (struct lmp_image){ .width = (uint32_t)w, .height = (uint32_t)h, .rgb = rgb };
        return 0;
}

/* ---------------------------------------------------------------- entry */

int lmp_image_decode(const void *buf, size_t size, const struct lmp_image_limits *limits,
                     struct lmp_image *ret, struct lmp_error *err) {
        const struct lmp_image_limits lim = limits ? *limits : LMP_IMAGE_LIMITS_DEFAULT;
        const uint8_t *b = buf;
        if (size > lim.max_bytes)
                return lmp_error_set(err, -E2BIG, "image: %zu bytes, over the limit of %zu", size,
                                     lim.max_bytes);
        static const uint8_t png_sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
        if (size >= 8 && memcmp(b, png_sig, 8) == 0)
                return decode_png(buf, size, &lim, ret, err);
        if (size >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
                return decode_jpeg(buf, size, &lim, ret, err);
        if (size >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0)
                return decode_webp(buf, size, &lim, ret, err);
        return lmp_error_set(err, -EINVAL, "image: not a PNG, JPEG or WebP file");
}

int lmp_image_load(const char *path, const struct lmp_image_limits *limits, struct lmp_image *ret,
                   struct lmp_error *err) {
        const struct lmp_image_limits lim = limits ? *limits : LMP_IMAGE_LIMITS_DEFAULT;
        struct stat st;
        if (stat(path, &st) < 0)
                return lmp_error_set(err, -errno, "%s: %s", path, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return lmp_error_set(err, -EINVAL, "%s: not a regular file", path);
        if ((uint64_t)st.st_size > lim.max_bytes)
                return lmp_error_set(err, -E2BIG, "%s: %lld bytes, over the limit of %zu", path,
                                     (long long)st.st_size, lim.max_bytes);
        char *data;
        size_t len;
        int r = lmp_read_file(path, &data, &len);
        if (r < 0)
                return lmp_error_set(err, r, "%s: %s", path, strerror(-r));
        r = lmp_image_decode(data, len, &lim, ret, err);
        free(data);
        if (r < 0)
                lmp_error_prefix(err, "%s: ", path);
        return r;
}

void lmp_image_clear(struct lmp_image *img) {
        free(img->rgb);
        *img = (struct lmp_image){ 0 };
}
