/* barpoke: writes a text into a PCI BAR through its sysfs resource file (mmap, the
 * only access sysfs offers for memory BARs), reads it back, and prints what it read;
 * or, with "touch", writes one byte per 4 KiB page of the BAR (or of its first BYTES)
 * and prints how long that took (the first touch through stage 2); or, with "peek", prints the 32-bit
 * value at an offset.
 * Built static into the guest initramfs granule boots in the x86 bed.
 * Usage: barpoke RESOURCE-FILE OFFSET TEXT | barpoke RESOURCE-FILE touch [BYTES]
 *        | barpoke RESOURCE-FILE peek OFFSET */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int touch(int fd, size_t size)
{
    volatile char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (size_t off = 0; off < size; off += 4096)
        p[off] = 1;
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ms = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
    printf("BARPOKE touch bytes=%zu ms=%.1f\n", size, ms);
    return 0;
}

int main(int argc, char **argv)
{
    if ((argc == 3 || argc == 4) && strcmp(argv[2], "touch") == 0) {
        int fd = open(argv[1], O_RDWR | O_SYNC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            perror(argv[1]);
            return 1;
        }
        size_t len = (size_t)st.st_size;
        if (argc == 4 && strtoull(argv[3], NULL, 0) < len)
            len = (size_t)strtoull(argv[3], NULL, 0);
        return touch(fd, len);
    }
    if (argc == 4 && strcmp(argv[2], "peek") == 0) {
        unsigned long long at = strtoull(argv[3], NULL, 0) & ~3ULL;
        long pg = sysconf(_SC_PAGESIZE);
        int fd = open(argv[1], O_RDWR | O_SYNC);
        if (fd < 0) {
            perror(argv[1]);
            return 1;
        }
        unsigned long long base = at & ~(unsigned long long)(pg - 1);
        volatile unsigned int *p = mmap(NULL, (size_t)pg, PROT_READ, MAP_SHARED, fd, (off_t)base);
        if (p == MAP_FAILED) {
            perror("mmap");
            return 1;
        }
        printf("BARPEEK offset=0x%llx value=0x%08x\n", at, p[(at - base) / 4]);
        return 0;
    }
    if (argc != 4) {
        fprintf(stderr, "usage: barpoke RESOURCE-FILE OFFSET TEXT | barpoke RESOURCE-FILE touch\n");
        return 2;
    }
    unsigned long long off = strtoull(argv[2], NULL, 0);
    size_t len = strlen(argv[3]);
    int fd = open(argv[1], O_RDWR | O_SYNC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        perror(argv[1]);
        return 1;
    }
    if (off + len > (unsigned long long)st.st_size) {
        fprintf(stderr, "barpoke: %llu + %zu is past the BAR's %lld bytes\n", off, len,
                (long long)st.st_size);
        return 1;
    }
    long page = sysconf(_SC_PAGESIZE);
    unsigned long long base = off & ~(unsigned long long)(page - 1);
    size_t span = (size_t)(off - base) + len;
    volatile char *p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)base);
    if (p == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    volatile char *at = p + (off - base);
    for (size_t i = 0; i < len; i++)
        at[i] = argv[3][i];
    char back[256] = {0};
    for (size_t i = 0; i < len && i < sizeof(back) - 1; i++)
        back[i] = at[i];
    printf("BARPOKE offset=0x%llx wrote=%s read=%s\n", off, argv[3], back);
    return strcmp(back, argv[3]) == 0 ? 0 : 1;
}
