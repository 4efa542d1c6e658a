//! Constants of the BPF user-space ABI (include/uapi/linux/bpf.h) that rawsnoop names.
//! Plain numbers, no syscalls: the loader's pure parsing uses them too.

// Map types (enum bpf_map_type) we name.
pub const BPF_MAP_TYPE_HASH: u32 = 1;
pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
pub const BPF_MAP_TYPE_PROG_ARRAY: u32 = 3;
pub const BPF_MAP_TYPE_PERF_EVENT_ARRAY: u32 = 4;
pub const BPF_MAP_TYPE_PERCPU_HASH: u32 = 5;
pub const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
pub const BPF_MAP_TYPE_CGROUP_ARRAY: u32 = 8;
pub const BPF_MAP_TYPE_LRU_HASH: u32 = 9;
pub const BPF_MAP_TYPE_RINGBUF: u32 = 27;

// Program types (enum bpf_prog_type) we name.
pub const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
pub const BPF_PROG_TYPE_KPROBE: u32 = 2;
pub const BPF_PROG_TYPE_TRACEPOINT: u32 = 5;
pub const BPF_PROG_TYPE_XDP: u32 = 6;
pub const BPF_PROG_TYPE_PERF_EVENT: u32 = 7;
pub const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
pub const BPF_PROG_TYPE_TRACING: u32 = 26;

/// `enum bpf_attach_type` value for links on perf events (kernel >= 5.15).
pub const BPF_PERF_EVENT: u32 = 41;

/// `BPF_F_RDONLY_PROG`: the program may only read the map (used for frozen .rodata).
pub const BPF_F_RDONLY_PROG: u32 = 1 << 7;
/// `BPF_F_MMAPABLE`: an array map user space can mmap (Linux >= 5.5); global data counters
/// are then read without a map syscall.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
/// `BPF_ANY` for map updates.
pub const BPF_ANY: u64 = 0;

/// Longest map/program name the kernel stores (BPF_OBJ_NAME_LEN minus the NUL).
pub const OBJ_NAME_MAX: usize = 15;

pub const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
pub const BPF_PROG_TYPE_SCHED_ACT: u32 = 4;
pub const BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE: u32 = 24;
pub const BPF_PROG_TYPE_LSM: u32 = 29;
pub const BPF_PROG_TYPE_STRUCT_OPS: u32 = 27;
pub const BPF_PROG_TYPE_EXT: u32 = 28;
pub const BPF_PROG_TYPE_SYSCALL: u32 = 31;

// Attach types (enum bpf_attach_type) the section names imply.
pub const BPF_TRACE_RAW_TP: u32 = 23;
pub const BPF_TRACE_FENTRY: u32 = 24;
pub const BPF_TRACE_FEXIT: u32 = 25;
pub const BPF_MODIFY_RETURN: u32 = 26;
pub const BPF_LSM_MAC: u32 = 27;
pub const BPF_TRACE_ITER: u32 = 28;

/// `src_reg` of an `ld_imm64` whose imm is a map fd.
pub const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `src_reg` of an `ld_imm64` whose `insn[0].imm` is a map fd and `insn[1].imm` an offset into its value.
pub const BPF_PSEUDO_MAP_VALUE: u8 = 2;
/// `src_reg` of a `call` to a bpf-to-bpf subprogram (imm = relative instruction offset).
pub const BPF_PSEUDO_CALL: u8 = 1;
/// `src_reg` of an `ld_imm64` loading the address of a subprogram (callbacks).
pub const BPF_PSEUDO_FUNC: u8 = 4;

/// `enum bpf_map_type` names (include/uapi/linux/bpf.h).
pub fn map_type_name(t: u32) -> &'static str {
    const NAMES: [&str; 34] = [
        "unspec",
        "hash",
        "array",
        "prog_array",
        "perf_event_array",
        "percpu_hash",
        "percpu_array",
        "stack_trace",
        "cgroup_array",
        "lru_hash",
        "lru_percpu_hash",
        "lpm_trie",
        "array_of_maps",
        "hash_of_maps",
        "devmap",
        "sockmap",
        "cpumap",
        "xskmap",
        "sockhash",
        "cgroup_storage",
        "reuseport_sockarray",
        "percpu_cgroup_storage",
        "queue",
        "stack",
        "sk_storage",
        "devmap_hash",
        "struct_ops",
        "ringbuf",
        "inode_storage",
        "task_storage",
        "bloom_filter",
        "user_ringbuf",
        "cgrp_storage",
        "arena",
    ];
    NAMES.get(t as usize).copied().unwrap_or("unknown")
}

/// `enum bpf_prog_type` names.
pub fn prog_type_name(t: u32) -> &'static str {
    const NAMES: [&str; 33] = [
        "unspec",
        "socket_filter",
        "kprobe",
        "sched_cls",
        "sched_act",
        "tracepoint",
        "xdp",
        "perf_event",
        "cgroup_skb",
        "cgroup_sock",
        "lwt_in",
        "lwt_out",
        "lwt_xmit",
        "sock_ops",
        "sk_skb",
        "cgroup_device",
        "sk_msg",
        "raw_tracepoint",
        "cgroup_sock_addr",
        "lwt_seg6local",
        "lirc_mode2",
        "sk_reuseport",
        "flow_dissector",
        "cgroup_sysctl",
        "raw_tracepoint_writable",
        "cgroup_sockopt",
        "tracing",
        "struct_ops",
        "ext",
        "lsm",
        "sk_lookup",
        "syscall",
        "netfilter",
    ];
    NAMES.get(t as usize).copied().unwrap_or("unknown")
}
