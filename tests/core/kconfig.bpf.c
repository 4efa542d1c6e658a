// SPDX-License-Identifier: GPL-2.0
// .kconfig externs as libbpf resolves them: the kernel version, a bool, a number, a tristate, a
// string, and weak ones the kernel does not have (0). Written into `out` on the next exec.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern bool CONFIG_BPF_SYSCALL __kconfig __weak;
extern int CONFIG_HZ __kconfig __weak;
extern enum libbpf_tristate CONFIG_EXT4_FS __kconfig __weak;
extern bool CONFIG_RAWSNOOP_NOPE __kconfig __weak;
extern char CONFIG_LOCALVERSION[16] __kconfig __weak;

__u64 out[6];

SEC("tp/sched/sched_process_exec")
int kconfig_values(void *ctx)
{
	out[0] = LINUX_KERNEL_VERSION;
	out[1] = CONFIG_BPF_SYSCALL;
	out[2] = CONFIG_HZ;
	out[3] = CONFIG_EXT4_FS;
	out[4] = CONFIG_RAWSNOOP_NOPE + 100;
	out[5] = CONFIG_LOCALVERSION[0] + 200;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
