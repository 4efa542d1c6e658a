// Shared by build.rs and tests/prebuilt.rs through `include!`, so both compute
// the same hash of a BPF program's sources. Plain functions only, std only.
//
// The sources of `bpf/<name>.bpf.c` are the .c file itself followed by every
// `bpf/*.h`, headers in byte order of their file names. Each file contributes
// its name, its length and its bytes, so moving text between files changes
// the hash. The hash is FNV-1a 64: a staleness check, not a security measure.

/// FNV-1a 64-bit over `bytes`, continuing from `state`.
#[allow(dead_code)]
fn fnv1a64_update(mut state: u64, bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    for &b in bytes {
        state ^= u64::from(b);
        state = state.wrapping_mul(PRIME);
    }
    state
}

/// The FNV-1a 64 offset basis.
#[allow(dead_code)]
const FNV1A64_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// The files whose bytes make up the hash of `c_file` (a `bpf/*.bpf.c`):
/// `c_file` first, then every `*.h` in the same folder, sorted by name.
#[allow(dead_code)]
fn bpf_source_files(c_file: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let dir = c_file.parent().unwrap_or_else(|| std::path::Path::new("."));
    let mut headers = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "h") {
            headers.push(path);
        }
    }
    headers.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    let mut files = vec![c_file.to_path_buf()];
    files.extend(headers);
    Ok(files)
}

/// The hash of `c_file`'s sources (see the top of this file).
#[allow(dead_code)]
fn bpf_source_hash(c_file: &std::path::Path) -> std::io::Result<u64> {
    let mut state = FNV1A64_OFFSET;
    for file in bpf_source_files(c_file)? {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(&file)?;
        state = fnv1a64_update(state, name.as_bytes());
        state = fnv1a64_update(state, &[0]);
        state = fnv1a64_update(state, &(bytes.len() as u64).to_le_bytes());
        state = fnv1a64_update(state, &bytes);
    }
    Ok(state)
}

/// The text of a `bpf/prebuilt/<name>.bpf.o.hash` file.
#[allow(dead_code)]
fn format_hash_file(hash: u64) -> String {
    format!("fnv1a64 {hash:016x}\n")
}

/// The hash in a `.hash` file's text, or None when it is not in that format.
#[allow(dead_code)]
fn parse_hash_file(text: &str) -> Option<u64> {
    let hex = text.trim().strip_prefix("fnv1a64 ")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}
