/* struct lmp_error helpers: formatting an error once, where it is found, so
 * that the message travels with the code to whoever reports it. */
#include "common/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int lmp_error_set(struct lmp_error *err, int code, const char *fmt, ...) {
        if (err) {
                va_list ap;
                err->code = code;
                va_start(ap, fmt);
                vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
                va_end(ap);
        }
        return code;
}

void lmp_error_prefix(struct lmp_error *err, const char *fmt, ...) {
        char prefix[LMP_ERROR_MSG_MAX], old[LMP_ERROR_MSG_MAX];
        va_list ap;

        if (!err)
                return;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof(prefix), fmt, ap);
        va_end(ap);
        /* Truncation is fine here: a cut message beats no message. */
        memcpy(old, err->msg, sizeof(old));
        old[sizeof(old) - 1] = '\0';
        size_t pl = strlen(prefix), ol = strlen(old), cap = sizeof(err->msg) - 1, n = 0;
        memcpy(err->msg, prefix, LMP_MIN(pl, cap));
        n = LMP_MIN(pl, cap);
        if (n + 2 <= cap) {
                memcpy(err->msg + n, ": ", 2);
                n += 2;
        }
        memcpy(err->msg + n, old, LMP_MIN(ol, cap - n));
        n += LMP_MIN(ol, cap - n);
        err->msg[n] = '\0';
}

const char *lmp_strerror_name(int code) {
        switch (-code) {
        case 0: return "OK";
        case EINVAL: return "EINVAL";
        case ENOENT: return "ENOENT";
        case ENOMEM: return "ENOMEM";
        case EIO: return "EIO";
        case EOVERFLOW: return "EOVERFLOW";
        case EBADMSG: return "EBADMSG";
        case ENOTSUP: return "ENOTSUP";
        case EEXIST: return "EEXIST";
        case ERANGE: return "ERANGE";
        case E2BIG: return "E2BIG";
        case EACCES: return "EACCES";
        case EISDIR: return "EISDIR";
        case ENODATA: return "ENODATA";
        case EPROTO: return "EPROTO";
        case ENOSPC: return "ENOSPC";
        case EBUSY: return "EBUSY";
        case ETIMEDOUT: return "ETIMEDOUT";
        case ECANCELED: return "ECANCELED";
        default: return "E?";
        }
}
