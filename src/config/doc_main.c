/* lmp-config-doc: prints docs/config.md, generated from the settings
 * table. Run it after changing a setting and commit the output; the unit
 * suite fails while the committed page differs. */
#include <stdio.h>

#include "config/config.h"

int main(void) {
        if (lmp_config_write_docs(stdout) < 0 || fflush(stdout) != 0) {
                fprintf(stderr, "lmp-config-doc: write error\n");
                return 1;
        }
        return 0;
}
