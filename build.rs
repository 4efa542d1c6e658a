//! Builds the BPF programs in `bpf/*.bpf.c` into `$OUT_DIR/<name>.bpf.o`,
//! which `src/objects.rs` embeds.
//!
//! - With clang (`$CLANG`, else the newest `clang-NN` on PATH, else `clang`):
//!   compiles every program with `-target bpfel|bpfeb -O2 -g -Wall -Werror`.
//!   A failing compile fails the build and shows clang's output.
//! - Without clang: copies the committed `bpf/prebuilt/<name>.bpf.o` instead,
//!   with a warning (and a louder one when its sources have changed since).
//!
//! Refreshing the committed objects (needs clang; then commit bpf/prebuilt/):
//!
//! ```text
//! RAWSNOOP_UPDATE_PREBUILT=1 cargo build
//! ```
//!
//! writes each fresh object to `bpf/prebuilt/<name>.bpf.o` and the hash of its
//! sources (`bpf/source_hash.rs`) to `bpf/prebuilt/<name>.bpf.o.hash`.
//! `tests/prebuilt.rs` fails while any committed object is stale.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

include!("bpf/source_hash.rs");

fn main() {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env_var("OUT_DIR"));
    let bpf_dir = manifest_dir.join("bpf");
    let prebuilt_dir = bpf_dir.join("prebuilt");

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-env-changed=RAWSNOOP_UPDATE_PREBUILT");
    // The folder catches added and removed files, the files their edits.
    println!("cargo:rerun-if-changed={}", bpf_dir.display());
    for file in list_files(&bpf_dir) {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let programs = bpf_programs(&bpf_dir);
    if programs.is_empty() {
        panic!("no BPF programs (*.bpf.c) in {}", bpf_dir.display());
    }
    let update = env::var("RAWSNOOP_UPDATE_PREBUILT").is_ok_and(|v| v == "1");
    let target = Target::from_env();

    match find_clang() {
        Some(clang) => {
            for program in &programs {
                let object = out_dir.join(format!("{}.bpf.o", program.name));
                compile(&clang, &target, &manifest_dir, &bpf_dir, program, &object);
                if update {
                    update_prebuilt(&prebuilt_dir, program, &object);
                } else if prebuilt_status(&prebuilt_dir, program) != Prebuilt::Fresh {
                    println!(
                        "cargo:warning=bpf/prebuilt/{}.bpf.o is missing or stale: run \
                         `RAWSNOOP_UPDATE_PREBUILT=1 cargo build` and commit bpf/prebuilt/",
                        program.name
                    );
                }
            }
        }
        None => {
            if update {
                panic!(
                    "RAWSNOOP_UPDATE_PREBUILT=1 needs clang to rebuild the BPF objects, and none \
                     was found: install clang (with the BPF target) or set CLANG=/path/to/clang"
                );
            }
            if target.big_endian {
                panic!(
                    "the committed BPF objects in bpf/prebuilt/ are little-endian and this target \
                     is big-endian: install clang (or set CLANG) to build them"
                );
            }
            for program in &programs {
                use_prebuilt(&prebuilt_dir, program, &out_dir);
            }
        }
    }
}

/// One `bpf/<name>.bpf.c`.
struct Program {
    name: String,
    source: PathBuf,
}

/// What the build is for, as clang needs it.
struct Target {
    big_endian: bool,
    /// `__TARGET_ARCH_<arch>`, as the kernel's tools spell it.
    arch_define: Option<&'static str>,
    /// Where `asm/types.h` lives for this arch, when it exists.
    multiarch_include: Option<PathBuf>,
}

impl Target {
    fn from_env() -> Target {
        let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
        let big_endian = env::var("CARGO_CFG_TARGET_ENDIAN").is_ok_and(|e| e == "big");
        let (arch_define, triple_arch) = match arch.as_str() {
            "x86_64" => (Some("x86"), Some("x86_64")),
            "aarch64" => (Some("arm64"), Some("aarch64")),
            "arm" => (Some("arm"), Some("arm")),
            "riscv64" => (Some("riscv"), Some("riscv64")),
            "powerpc64" => (Some("powerpc"), Some("powerpc64")),
            "s390x" => (Some("s390"), Some("s390x")),
            "loongarch64" => (Some("loongarch"), Some("loongarch64")),
            _ => (None, None),
        };
        let multiarch_include = triple_arch
            .map(|a| PathBuf::from(format!("/usr/include/{a}-linux-gnu")))
            .filter(|dir| dir.is_dir());
        Target {
            big_endian,
            arch_define,
            multiarch_include,
        }
    }
}

fn env_var(name: &str) -> String {
    env::var(name).unwrap_or_else(|_| panic!("cargo did not set {name}"))
}

/// Every file under `dir`, recursively, sorted.
fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = fs::read_dir(&d).unwrap_or_else(|e| panic!("reading {}: {e}", d.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("reading {}: {e}", d.display()))
                .path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The `bpf/*.bpf.c` programs, sorted by name.
fn bpf_programs(bpf_dir: &Path) -> Vec<Program> {
    let mut programs: Vec<Program> = list_files(bpf_dir)
        .into_iter()
        .filter(|p| p.parent() == Some(bpf_dir))
        .filter_map(|source| {
            let file_name = source.file_name()?.to_str()?;
            let name = file_name.strip_suffix(".bpf.c")?.to_string();
            Some(Program { name, source })
        })
        .collect();
    programs.sort_by(|a, b| a.name.cmp(&b.name));
    programs
}

/// `$CLANG` if set; else the highest `clang-NN` on PATH; else `clang` on PATH.
fn find_clang() -> Option<PathBuf> {
    if let Some(clang) = env::var_os("CLANG").filter(|c| !c.is_empty()) {
        let clang = PathBuf::from(clang);
        // A bare name is looked up on PATH, like a shell would.
        let found = if clang.components().count() == 1 {
            env::var_os("PATH").and_then(|path| {
                env::split_paths(&path)
                    .map(|dir| dir.join(&clang))
                    .find(|p| is_executable(p))
            })
        } else {
            Some(clang.clone()).filter(|p| is_executable(p))
        };
        return Some(
            found.unwrap_or_else(|| panic!("CLANG={} is not an executable file", clang.display())),
        );
    }

    let path = env::var_os("PATH")?;
    let mut best: Option<(u32, PathBuf)> = None;
    let mut plain: Option<PathBuf> = None;
    for dir in env::split_paths(&path) {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else {
                continue;
            };
            let candidate = entry.path();
            if name == "clang" {
                if plain.is_none() && is_executable(&candidate) {
                    plain = Some(candidate);
                }
                continue;
            }
            let Some(version) = name.strip_prefix("clang-") else {
                continue;
            };
            if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(version) = version.parse::<u32>() else {
                continue;
            };
            // Strictly greater: on a tie the earlier PATH entry wins.
            if best.as_ref().is_none_or(|(v, _)| version > *v) && is_executable(&candidate) {
                best = Some((version, candidate));
            }
        }
    }
    best.map(|(_, p)| p).or(plain)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn compile(
    clang: &Path,
    target: &Target,
    manifest_dir: &Path,
    bpf_dir: &Path,
    program: &Program,
    object: &Path,
) {
    let mut cmd = Command::new(clang);
    cmd.arg("-target")
        .arg(if target.big_endian { "bpfeb" } else { "bpfel" })
        .args(["-O2", "-g", "-Wall", "-Werror"])
        // Same bytes whatever folder the crate is built in.
        .arg(format!("-fdebug-prefix-map={}=.", manifest_dir.display()))
        .arg("-I")
        .arg(bpf_dir);
    if let Some(dir) = &target.multiarch_include {
        cmd.arg("-I").arg(dir);
    }
    if let Some(arch) = target.arch_define {
        cmd.arg(format!("-D__TARGET_ARCH_{arch}"));
    }
    cmd.arg("-c").arg(&program.source).arg("-o").arg(object);

    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", clang.display()));
    if !output.status.success() {
        panic!(
            "clang failed to compile {} ({}):\n{:?}\n{}{}",
            program.source.display(),
            output.status,
            cmd,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
    }
}

fn source_hash(program: &Program) -> u64 {
    bpf_source_hash(&program.source)
        .unwrap_or_else(|e| panic!("hashing the sources of {}: {e}", program.source.display()))
}

#[derive(PartialEq)]
enum Prebuilt {
    Fresh,
    Stale,
    Missing,
}

fn prebuilt_status(prebuilt_dir: &Path, program: &Program) -> Prebuilt {
    let object = prebuilt_dir.join(format!("{}.bpf.o", program.name));
    let hash_file = prebuilt_dir.join(format!("{}.bpf.o.hash", program.name));
    if !object.is_file() {
        return Prebuilt::Missing;
    }
    let committed = fs::read_to_string(&hash_file)
        .ok()
        .and_then(|t| parse_hash_file(&t));
    if committed == Some(source_hash(program)) {
        Prebuilt::Fresh
    } else {
        Prebuilt::Stale
    }
}

/// Writes `path` only when its bytes differ, so an unchanged file keeps its
/// mtime and does not retrigger this build script. True when it wrote.
fn write_if_changed(path: &Path, bytes: &[u8]) -> bool {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return false;
    }
    fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    true
}

fn update_prebuilt(prebuilt_dir: &Path, program: &Program, object: &Path) {
    fs::create_dir_all(prebuilt_dir)
        .unwrap_or_else(|e| panic!("creating {}: {e}", prebuilt_dir.display()));
    let bytes = fs::read(object).unwrap_or_else(|e| panic!("reading {}: {e}", object.display()));
    let wrote_object = write_if_changed(
        &prebuilt_dir.join(format!("{}.bpf.o", program.name)),
        &bytes,
    );
    let wrote_hash = write_if_changed(
        &prebuilt_dir.join(format!("{}.bpf.o.hash", program.name)),
        format_hash_file(source_hash(program)).as_bytes(),
    );
    if wrote_object || wrote_hash {
        println!(
            "cargo:warning=updated bpf/prebuilt/{}.bpf.o: commit bpf/prebuilt/",
            program.name
        );
    }
}

fn use_prebuilt(prebuilt_dir: &Path, program: &Program, out_dir: &Path) {
    let name = &program.name;
    let prebuilt = prebuilt_dir.join(format!("{name}.bpf.o"));
    match prebuilt_status(prebuilt_dir, program) {
        Prebuilt::Missing => panic!(
            "clang not found and there is no committed {}: install clang (with the BPF target) \
             or set CLANG=/path/to/clang",
            prebuilt.display()
        ),
        Prebuilt::Stale => println!(
            "cargo:warning=clang not found: using committed BPF object for {name}, which is \
             STALE (bpf/ sources changed since it was built; install clang to rebuild)"
        ),
        Prebuilt::Fresh => println!(
            "cargo:warning=clang not found: using committed BPF object for {name} (install clang \
             to rebuild)"
        ),
    }
    let dest = out_dir.join(format!("{name}.bpf.o"));
    fs::copy(&prebuilt, &dest)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", prebuilt.display(), dest.display()));
}
