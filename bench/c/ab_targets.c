/* A/B of `provtarget targets` builds, signatures off against enforce, whole process.
 *
 *   cc -O2 -o ab_targets bench/c/ab_targets.c
 *   ./ab_targets RUNS PLUGIN_DIR TRUSTED_KEYS_DIR PROVTARGET...
 *
 * PLUGIN_DIR holds one signed library (see BENCHMARKS.md, "Signed plugins"), each
 * PROVTARGET is a build to compare (copy each out of target/ first). Every round
 * runs every build in both modes, one after another, so that the machine's drift
 * hits all alike; each figure is the median of RUNS wall times (posix_spawn to
 * waitpid, CLOCK_MONOTONIC), stdout and stderr to a file. Not part of the test
 * suite: a tool for comparing a change against its parent on a quiet machine. */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s RUNS PLUGIN_DIR TRUSTED_KEYS_DIR PROVTARGET...\n", argv[0]);
        return 2;
    }
    int runs = atoi(argv[1]), builds = argc - 4, variants = builds * 2;
    if (runs < 1) return 2;
    char keys[4096];
    snprintf(keys, sizeof keys, "plugin.provtarget.trusted_keys=%s", argv[3]);
    double *times = calloc((size_t)variants * runs, sizeof(double));
    int out = open("/tmp/ab_targets.out", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (!times || out < 0) return 1;
    for (int r = 0; r < runs; r++) {
        for (int v = 0; v < variants; v++) {
            char *bin = argv[4 + v / 2];
            char *mode = (v % 2) ? "plugin.provtarget.signatures=enforce"
                                 : "plugin.provtarget.signatures=off";
            char *args[] = {bin, "targets", "--config", "/dev/null", "--plugin-dir", argv[2],
                            "--set", keys, "--set", mode,
                            "--set", "plugin.provtarget.cache_dir=none", NULL};
            posix_spawn_file_actions_t fa;
            posix_spawn_file_actions_init(&fa);
            posix_spawn_file_actions_adddup2(&fa, out, 1);
            posix_spawn_file_actions_adddup2(&fa, out, 2);
            struct timespec a, b;
            clock_gettime(CLOCK_MONOTONIC, &a);
            pid_t pid;
            if (posix_spawn(&pid, bin, &fa, NULL, args, environ) != 0) {
                perror(bin);
                return 1;
            }
            int status;
            waitpid(pid, &status, 0);
            clock_gettime(CLOCK_MONOTONIC, &b);
            posix_spawn_file_actions_destroy(&fa);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "%s (%s) failed; see /tmp/ab_targets.out\n", bin, mode);
                return 1;
            }
            times[v * runs + r] = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
        }
    }
    for (int i = 0; i < builds; i++) {
        double median[2];
        for (int m = 0; m < 2; m++) {
            double *t = times + (size_t)(2 * i + m) * runs;
            qsort(t, runs, sizeof(double), by_value);
            median[m] = t[runs / 2];
        }
        printf("%s: off %.3f ms, enforce %.3f ms, enforce - off %.3f ms, enforce/off %.3fx\n",
               argv[4 + i], median[0], median[1], median[1] - median[0], median[1] / median[0]);
    }
    return 0;
}
