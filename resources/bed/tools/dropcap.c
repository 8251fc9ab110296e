/* dropcap: runs a command as root without CAP_IPC_LOCK and with RLIMIT_MEMLOCK set to
 * a given number of bytes, as an unprivileged VMM service would run. Dropped from the
 * bounding and inheritable sets too, so exec does not give it back. Built static into
 * the x86 bed's initramfs. Usage: dropcap MEMLOCK_BYTES COMMAND [ARG...] */
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: dropcap MEMLOCK_BYTES COMMAND [ARG...]\n");
        return 2;
    }
    struct rlimit lim;
    lim.rlim_cur = lim.rlim_max = strtoull(argv[1], NULL, 0);
    if (setrlimit(RLIMIT_MEMLOCK, &lim) != 0) {
        perror("setrlimit");
        return 1;
    }
    if (prctl(PR_CAPBSET_DROP, CAP_IPC_LOCK, 0, 0, 0) != 0) {
        perror("PR_CAPBSET_DROP");
        return 1;
    }
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &hdr, data) != 0) {
        perror("capget");
        return 1;
    }
    unsigned bit = 1u << (CAP_IPC_LOCK % 32);
    int word = CAP_IPC_LOCK / 32;
    data[word].effective &= ~bit;
    data[word].permitted &= ~bit;
    data[word].inheritable &= ~bit;
    if (syscall(SYS_capset, &hdr, data) != 0) {
        perror("capset");
        return 1;
    }
    execvp(argv[2], argv + 2);
    perror(argv[2]);
    return 127;
}
