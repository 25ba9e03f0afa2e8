/* lmpoold's --check-config entry point as a program of its own, so that
 * the tests can run it on files without the daemon. */
#include "config/config.h"

int main(int argc, char **argv) {
        return lmp_config_check_main(argc, argv);
}
