/* What reading one task's cgroup v1 stat files costs the kernel, file by file: opened, read
 * and closed each time through the controller directory (as the agent's reader does), against
 * read again with pread through a descriptor kept open. Then the kernel memory each kept,
 * read descriptor holds (its seq_file buffer), from SUnreclaim in /proc/meminfo.
 *
 * Built and run by bench_cgstats.py --file-costs, which makes the cgroups and removes them.
 * Arguments: rounds, then DIR:NAME for each file (NAME may be missing: a failed open is timed
 * too, as the reader pays for it). Prints one line per file and a total, all in µs. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of n samples of one file. */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return v[n / 2];
}

static long sunreclaim_kib(void)
{
    char line[256];
    long v = -1;
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "SUnreclaim: %ld kB", &v) == 1)
            break;
    fclose(f);
    return v;
}

/* Kernel memory per kept, read descriptor of `dir/name`, over `n` descriptors (the median of
 * three tries: other work on the host moves SUnreclaim too). */
static double kept_fd_kib(int dirfd, const char *name, int n)
{
    double tries[3];
    char buf[256];
    int *fds = calloc((size_t)n, sizeof(int));
    if (!fds)
        return -1;
    for (int t = 0; t < 3; t++) {
        long before = sunreclaim_kib(), after;
        int opened = 0;
        for (; opened < n; opened++) {
            fds[opened] = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
            if (fds[opened] < 0 || pread(fds[opened], buf, sizeof(buf), 0) < 0)
                break;
        }
        after = sunreclaim_kib();
        for (int i = 0; i < opened; i++)
            close(fds[i]);
        if (opened < n) {
            fprintf(stderr, "kept descriptors: stopped at %d: %s\n", opened, strerror(errno));
            free(fds);
            return -1;
        }
        tries[t] = (double)(after - before) / n;
    }
    free(fds);
    return median(tries, 3);
}

int main(int argc, char **argv)
{
    static char buf[65536];
    struct rlimit rl;
    double total_open = 0, total_kept = 0;
    int rounds, dirfd = -1, first_dirfd = -1;
    const char *first_name = NULL;

    if (argc < 3) {
        fprintf(stderr, "usage: %s ROUNDS DIR:NAME...\n", argv[0]);
        return 2;
    }
    rounds = atoi(argv[1]);
    if (rounds < 3)
        rounds = 3;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    double *open_s = calloc((size_t)rounds, sizeof(double));
    double *kept_s = calloc((size_t)rounds, sizeof(double));
    if (!open_s || !kept_s)
        return 1;

    printf("%-40s %12s %12s\n", "file", "open+read+close", "kept pread");
    for (int a = 2; a < argc; a++) {
        char *sep = strrchr(argv[a], ':');
        const char *name;
        int fd;
        if (!sep) {
            fprintf(stderr, "not DIR:NAME: %s\n", argv[a]);
            return 2;
        }
        *sep = '\0';
        name = sep + 1;
        dirfd = open(argv[a], O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0) {
            fprintf(stderr, "open %s: %s\n", argv[a], strerror(errno));
            return 1;
        }
        for (int r = 0; r < rounds; r++) {
            double t0 = now_us();
            fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                if (read(fd, buf, sizeof(buf)) < 0)
                    return 1;
                close(fd);
            }
            open_s[r] = now_us() - t0;
        }
        fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            for (int r = 0; r < rounds; r++) {
                double t0 = now_us();
                if (pread(fd, buf, sizeof(buf), 0) < 0)
                    return 1;
                kept_s[r] = now_us() - t0;
            }
            close(fd);
        }
        double o = median(open_s, rounds), k = fd >= 0 ? median(kept_s, rounds) : 0;
        total_open += o;
        total_kept += k;
        printf("%-40s %12.2f %12.2f%s\n", name, o, k, fd >= 0 ? "" : "  (missing: a failed open)");
        if (fd >= 0 && !first_name && strcmp(name, "memory.stat") != 0) {
            first_name = name;
            first_dirfd = dirfd;
        } else {
            close(dirfd);
        }
    }
    printf("%-40s %12.2f %12.2f\n", "one task, all files", total_open, total_kept);
    if (first_name) {
        double kib = kept_fd_kib(first_dirfd, first_name, 4000);
        if (kib >= 0)
            printf("kernel memory per kept, read descriptor (%s, 4000 of them): %.2f KiB\n",
                   first_name, kib);
    }
    return 0;
}
