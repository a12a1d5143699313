/* The baseline of the verdict-cache benchmark (BENCHMARKS.md, "Verdict cache"):
 * a C program that only dlopens the given files (RTLD_NOW | RTLD_LOCAL, as the
 * loader does) and exits. Compiled by the bench driver with `cc -O2`. */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv) {
    int loaded = 0;
    for (int i = 1; i < argc; i++) {
        if (dlopen(argv[i], RTLD_NOW | RTLD_LOCAL) != NULL) {
            loaded++;
        } else {
            fprintf(stderr, "%s\n", dlerror());
        }
    }
    printf("%d\n", loaded);
    return loaded == argc - 1 ? 0 : 1;
}
