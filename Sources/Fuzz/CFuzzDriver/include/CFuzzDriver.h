#ifndef CFUZZDRIVER_H
#define CFUZZDRIVER_H
#include <stddef.h>
#include <stdint.h>

/* libFuzzer's entry point for programs with their own main. Weak: without -sanitize=fuzzer it is NULL, so a
   plain `swift build` still links the fuzz targets (TESTING.md §8.1). */
extern int LLVMFuzzerRunDriver(int *argc, char ***argv,
                               int (*UserCb)(const uint8_t *Data, size_t Size)) __attribute__((weak));

/* Whether libFuzzer is linked in (the binary was built with -sanitize=fuzzer). */
static inline int cfuzz_driver_available(void) { return LLVMFuzzerRunDriver != NULL; }

/* Runs libFuzzer with the process arguments; call only when cfuzz_driver_available(). */
static inline int cfuzz_run(int *argc, char ***argv, int (*cb)(const uint8_t *, size_t)) {
    return LLVMFuzzerRunDriver(argc, argv, cb);
}
#endif
