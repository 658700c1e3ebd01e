/*
 * LD_PRELOAD library for oxcd's robustness harness: makes fsync and its relatives slow.
 *
 * Each wrapped call sleeps for the number of microseconds written in the file named by
 * OXCD_FAULT_FSYNC_DELAY_FILE, then calls the real function. The file is re-read at most every
 * 100 ms (so the harness can change the delay of a running member without a syscall storm on
 * every fsync); a missing or empty file means no delay. Built by faults.rs (SlowFsync::build).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define REREAD_NS (100LL * 1000 * 1000)

/* Cached delay and when it was read; races between threads only cause an extra read. */
static int64_t delay_us;
static int64_t read_at_ns = -1;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t read_delay(void) {
    const char *path = getenv("OXCD_FAULT_FSYNC_DELAY_FILE");
    if (path == NULL || *path == '\0') return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[32];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    long long v = strtoll(buf, NULL, 10);
    return v > 0 ? v : 0;
}

static void slow_down(void) {
    /* errno must look untouched to the caller of the real function. */
    int saved = errno;
    int64_t now = now_ns();
    int64_t at = __atomic_load_n(&read_at_ns, __ATOMIC_ACQUIRE);
    int64_t us;
    if (at < 0 || now - at >= REREAD_NS) {
        us = read_delay();
        __atomic_store_n(&delay_us, us, __ATOMIC_RELAXED);
        __atomic_store_n(&read_at_ns, now, __ATOMIC_RELEASE);
    } else {
        us = __atomic_load_n(&delay_us, __ATOMIC_RELAXED);
    }
    if (us > 0) {
        struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
        /* Sleep the full delay even if a signal interrupts it. */
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    errno = saved;
}

/* dlsym is looked up lazily (a constructor may run after another library's first fsync). */
#define REAL(name, type)                                                   \
    static type real_##name;                                               \
    type fn_##name = __atomic_load_n(&real_##name, __ATOMIC_ACQUIRE);      \
    if (fn_##name == NULL) {                                               \
        fn_##name = (type)dlsym(RTLD_NEXT, #name);                         \
        __atomic_store_n(&real_##name, fn_##name, __ATOMIC_RELEASE);       \
    }                                                                      \
    if (fn_##name == NULL) {                                               \
        errno = ENOSYS;                                                    \
        return -1;                                                         \
    }

typedef int (*fd_fn)(int);
typedef int (*sfr_fn)(int, off64_t, off64_t, unsigned int);

int fsync(int fd) {
    REAL(fsync, fd_fn);
    slow_down();
    return fn_fsync(fd);
}

int fdatasync(int fd) {
    REAL(fdatasync, fd_fn);
    slow_down();
    return fn_fdatasync(fd);
}

int syncfs(int fd) {
    REAL(syncfs, fd_fn);
    slow_down();
    return fn_syncfs(fd);
}

int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags) {
    REAL(sync_file_range, sfr_fn);
    slow_down();
    return fn_sync_file_range(fd, offset, nbytes, flags);
}
