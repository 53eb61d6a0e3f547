// The monotonic clock every timer in vlm reads (seconds, arbitrary origin).
#ifndef VLM_CORE_CLOCK_H
#define VLM_CORE_CLOCK_H

#include <time.h>

static inline double vlm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
