/* The image decoders: a picture written as PNG, WebP (lossless) and JPEG by
 * the same libraries decodes to its pixels (JPEG: within its loss); every
 * truncation of each file is refused with -EINVAL and a message; a
 * picture over the dimension limits and a file over the byte limit are
 * refused with -E2BIG before decoding; unknown and empty data are refused;
 * files with bytes overwritten decode or are refused, never crash (the
 * sanitizer builds check that). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>
#include <webp/encode.h>

#include "image/image.h"
#include "../check.h"

#define W 37
#define H 23

static uint8_t pixels[W * H * 3];

static void make_pixels(void) {
        for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                        uint8_t *p = pixels + (y * W + x) * 3;
                        p[0] = (uint8_t)(x * 7);
                        p[1] = (uint8_t)(y * 11);
                        p[2] = (uint8_t)(128 + (x - y) * 3);
                }
}

static uint8_t *encode_png(size_t *ret_size) {
        png_image im;
        memset(&im, 0, sizeof(im));
        im.version = PNG_IMAGE_VERSION;
        im.width = W;
        im.height = H;
        im.format = PNG_FORMAT_RGB;
        png_alloc_size_t size = 0;
        CHECK(png_image_write_to_memory(&im, NULL, &size, 0, pixels, 0, NULL), "%s", im.message);
        uint8_t *buf = malloc(size);
        CHECK(buf && png_image_write_to_memory(&im, buf, &size, 0, pixels, 0, NULL), "%s", im.message);
        *ret_size = size;
        return buf;
}

static uint8_t *encode_webp(size_t *ret_size) {
        uint8_t *out = NULL;
        size_t size = WebPEncodeLosslessRGB(pixels, W, H, W * 3, &out);
        CHECK(size > 0, "WebP encoding failed");
        uint8_t *buf = malloc(size);
        CHECK(buf, "out of memory");
        memcpy(buf, out, size);
        WebPFree(out);
        *ret_size = size;
        return buf;
}

static uint8_t *encode_jpeg(size_t *ret_size) {
        struct jpeg_compress_struct c;
        struct jpeg_error_mgr jerr;
        unsigned char *out = NULL;
        unsigned long size = 0;
        c.err = jpeg_std_error(&jerr);
        jpeg_create_compress(&c);
        jpeg_mem_dest(&c, &out, &size);
        c.image_width = W;
        c.image_height = H;
        c.input_components = 3;
        c.in_color_space = JCS_RGB;
        jpeg_set_defaults(&c);
        jpeg_set_quality(&c, 95, TRUE);
        jpeg_start_compress(&c, TRUE);
        while (c.next_scanline < H) {
                JSAMPROW row = pixels + c.next_scanline * W * 3;
                jpeg_write_scanlines(&c, &row, 1);
        }
        jpeg_finish_compress(&c);
        jpeg_destroy_compress(&c);
        uint8_t *buf = malloc(size);
        CHECK(buf, "out of memory");
        memcpy(buf, out, size);
        free(out);
        *ret_size = size;
        return buf;
}

static void check_file(const char *name, uint8_t *buf, size_t size, int max_diff) {
        struct lmp_error err = { 0 };
        struct lmp_image img = { 0 };
        CHECK(lmp_image_decode(buf, size, NULL, &img, &err) == 0, "%s: %s", name, err.msg);
        CHECK(img.width == W && img.height == H, "%s: %ux%u", name, img.width, img.height);
        int worst = 0;
        for (size_t i = 0; i < sizeof(pixels); i++) {
                int d = abs((int)img.rgb[i] - (int)pixels[i]);
                worst = d > worst ? d : worst;
        }
        printf("%s: %zu bytes, %ux%u, max pixel difference %d\n", name, size, img.width, img.height, worst);
        CHECK(worst <= max_diff, "%s: %d", name, worst);
        lmp_image_clear(&img);

        /* every truncation is refused, with a message */
        for (size_t n = 0; n < size; n++) {
                struct lmp_image t = { .width = 7 };
                err = (struct lmp_error){ 0 };
                int r = lmp_image_decode(buf, n, NULL, &t, &err);
                CHECK(r == -EINVAL && err.msg[0] != '\0', "%s truncated to %zu bytes: %d", name, n, r);
                CHECK(t.width == 7 && t.rgb == NULL, "%s: the image changed on failure", name);
        }

        /* over the limits: refused before decoding */
        struct lmp_image_limits lim = LMP_IMAGE_LIMITS_DEFAULT;
        lim.max_side = W - 1;
        CHECK(lmp_image_decode(buf, size, &lim, &img, &err) == -E2BIG, "%s: %s", name, err.msg);
        CHECK(strstr(err.msg, "over the limits") != NULL, "%s: %s", name, err.msg);
        lim = LMP_IMAGE_LIMITS_DEFAULT;
        lim.max_pixels = W * H - 1;
        CHECK(lmp_image_decode(buf, size, &lim, &img, &err) == -E2BIG, "%s: %s", name, err.msg);
        lim = LMP_IMAGE_LIMITS_DEFAULT;
        lim.max_bytes = size - 1;
        CHECK(lmp_image_decode(buf, size, &lim, &img, &err) == -E2BIG, "%s: %s", name, err.msg);

        /* overwritten bytes: decoded or refused, never a crash */
        uint8_t *copy = malloc(size);
        CHECK(copy, "out of memory");
        for (size_t i = 0; i < size; i += 3) {
                memcpy(copy, buf, size);
                copy[i] ^= 0x5a;
                struct lmp_image t = { 0 };
                err = (struct lmp_error){ 0 };
                int r = lmp_image_decode(copy, size, NULL, &t, &err);
                CHECK(r == 0 || (r < 0 && err.msg[0] != '\0'), "%s byte %zu: %d without a message", name, i, r);
                if (r == 0)
                        CHECK(t.width > 0 && t.height > 0 && t.rgb != NULL, "%s byte %zu: empty image", name, i);
                lmp_image_clear(&t);
        }
        free(copy);
}

int main(void) {
        make_pixels();
        size_t size;
        uint8_t *buf = encode_png(&size);
        check_file("PNG", buf, size, 0);
        free(buf);
        buf = encode_webp(&size);
        check_file("WebP", buf, size, 0);
        free(buf);
        buf = encode_jpeg(&size);
        check_file("JPEG", buf, size, 12);
        free(buf);

        struct lmp_error err = { 0 };
        struct lmp_image img = { 0 };
        CHECK(lmp_image_decode("GIF89a\1\0\1\0", 10, NULL, &img, &err) == -EINVAL, "%s", err.msg);
        CHECK(strstr(err.msg, "not a PNG, JPEG or WebP") != NULL, "%s", err.msg);
        CHECK(lmp_image_decode("", 0, NULL, &img, &err) == -EINVAL, "%s", err.msg);
        CHECK(lmp_image_load("/nonexistent/image.png", NULL, &img, &err) == -ENOENT, "%s", err.msg);
        CHECK(lmp_image_load("/", NULL, &img, &err) == -EINVAL, "%s", err.msg);
        CHECK(img.rgb == NULL, "an image after failures");
        if (failures)
                fprintf(stderr, "%d failures\n", failures);
        return failures ? 1 : 0;
}
