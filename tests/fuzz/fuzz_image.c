/* libFuzzer target for the image decoders (PNG, JPEG, WebP): any byte
 * string must give either a picture within the limits, whose every byte
 * is readable, or an error with a code and a message; never a crash, a
 * sanitizer report, a hang or an allocation past the limits. */
#include <stdint.h>
#include <stdlib.h>

#include "image/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* small limits: a header may claim any size */
        const struct lmp_image_limits lim = { .max_bytes = 1 << 20, .max_side = 2048,
                                              .max_pixels = 1 << 20 };
        struct lmp_image img = { 0 };
        struct lmp_error err = { 0 };
        if (lmp_image_decode(data, size, &lim, &img, &err) < 0) {
                if (err.msg[0] == '\0' || err.code >= 0 || img.rgb)
                        abort();
                return 0;
        }
        if (img.width == 0 || img.height == 0 || img.width > lim.max_side || img.height > lim.max_side ||
            (uint64_t)img.width * img.height > lim.max_pixels)
                abort();
        volatile uint32_t sink = 0;
        for (size_t i = 0; i < (size_t)img.width * img.height * 3; i++)
                sink += img.rgb[i];
        (void)sink;
        lmp_image_clear(&img);
        return 0;
}
