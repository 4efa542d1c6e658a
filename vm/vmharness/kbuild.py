"""Build a kernel for vm/run: a user's tree (--build TREE) or Debian's packaged source
(--source 6.1|6.12), optionally with patches, into a cache keyed by tree, config and patches.

Layout under the cache:
  src/<package>_<version>/linux-source-<series>/   Debian's source, unpacked once
  kbuild/<name>-<key>/                             the unpatched build (in-tree, a copy)
  kbuild/<name>-<key>+<patchkey>/                  a patched build: a copy of the one above
                                                   (sources and objects, mtimes kept) with
                                                   the patches applied, so `make` rebuilds only
                                                   what the patches touch

Builds are in-tree in those copies: Kbuild then records relative paths only, so a copied
tree stays up to date and a patch is an incremental rebuild. The user's tree is only read
(rsync, build products excluded).
"""

import fnmatch
import glob
import hashlib
import os
import re
import shutil
import subprocess
import time

from .fetch import FetchError, PrivateApt, log, version_cmp

VM_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KCONFIG_FRAGMENT = os.path.join(VM_DIR, "kconfig", "rawsnoop.config")
# Bump when the way a config is made changes (not its content: that is hashed).
KCONFIG_METHOD = "allnoconfig+KCONFIG_ALLCONFIG v1"
SOURCES = {"6.1": "linux-source-6.1", "6.12": "linux-source-6.12"}
BUILD_TOOLS = {  # command -> Debian package
    "make": "make", "gcc": "gcc", "flex": "flex", "bison": "bison", "bc": "bc",
    "pahole": "dwarves", "rsync": "rsync", "patch": "patch", "xz": "xz-utils", "cpio": "cpio",
    "perl": "perl",
}
BUILD_HEADERS = {"/usr/include/libelf.h": "libelf-dev", "/usr/include/openssl/ssl.h": "libssl-dev"}
# Build products never copied out of a user's tree.
RSYNC_EXCLUDES = [".git", "*.o", "*.a", "*.ko", "*.mod", "*.mod.c", "*.cmd", "*.d", ".tmp_*",
                  "/vmlinux", "/vmlinux.*", "/System.map", "/.config", "/.config.old", "/Module.symvers",
                  "/modules.order", "/include/generated", "/include/config", "/arch/*/include/generated",
                  "/arch/*/boot/bzImage", "/.rawsnoop-*"]
ERROR_RE = re.compile(r"(: (fatal )?error: |: undefined reference to |^make(\[\d+\])?: \*\*\* |"
                      r"^ERROR: |^Error: |No rule to make target|: Error \d+$)")
STAMP = ".rawsnoop-built"
# In a user tree's build seeded from another cached build: which one.
SEEDED = ".rawsnoop-seeded-from"


class BuildError(Exception):
    pass


class Patch:
    """A patch file and what its header says it breaks."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        try:
            with open(self.path, "rb") as f:
                self.data = f.read()
        except OSError as e:
            raise BuildError(f"cannot read patch {path}: {e.strerror}") from None
        text = self.data.decode("utf-8", "replace")
        head = text.split("\n--- ", 1)[0]
        self.name = os.path.basename(self.path)
        self.expect_red = [m.strip() for m in re.findall(r"^Expect-red:\s*(\S+)\s*$", head, re.M)]
        m = re.search(r"^Subject:\s*(?:\[[^\]]*\]\s*)?(.+)$", head, re.M)
        self.subject = m.group(1).strip() if m else self.name
        if "\n+++ " not in text and not text.startswith("+++ "):
            raise BuildError(f"{path} is not a unified diff (no '+++' line)")
        # The cache key covers the diff only: editing the header (Expect-red:) rebuilds nothing.
        m = re.search(rb"^(diff |--- )", self.data, re.M)
        self.diff = self.data[m.start():] if m else self.data

    def matches(self, test):
        return any(fnmatch.fnmatchcase(test, p) for p in self.expect_red)


def _sha(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else p.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def _safe(name):
    return re.sub(r"[^A-Za-z0-9.+_-]", "_", name)


def ensure_tools(apt_install):
    missing = sorted({pkg for tool, pkg in BUILD_TOOLS.items() if not shutil.which(tool)}
                     | {pkg for path, pkg in BUILD_HEADERS.items() if not os.path.exists(path)})
    if missing:
        apt_install(missing)


# ---------------------------------------------------------------- Debian's source


def fetch_source(cache, series, suites, offline=False, refresh=False):
    """(tree, "package version") of Debian's linux-source-<series>, unpacked once."""
    if series not in SOURCES:
        raise BuildError(f"--source {series}: Debian packages {', '.join(SOURCES)} only")
    pkg = SOURCES[series]

    def cached():
        for d in sorted(glob.glob(os.path.join(cache, "src", f"{pkg}_*")), reverse=True):
            done = os.path.join(d, ".complete")
            if os.path.exists(done):
                with open(done, encoding="utf-8") as f:
                    return os.path.join(d, pkg), f.read().strip()
        return None

    if offline:
        hit = cached()
        if hit is None:
            raise BuildError(f"--offline but {pkg} was never fetched")
        return hit
    apt = PrivateApt(cache, suites)
    apt.write_sources()
    try:
        if refresh or not apt.lists_fresh():
            apt.update()
        versions = [v for v, _s in apt.madison([pkg]).get(pkg, [])]
    except FetchError as e:
        hit = cached()
        if hit is None:
            raise BuildError(str(e)) from None
        log(f"{e}\nvm: using the cached {hit[1]}")
        return hit
    if not versions:
        raise BuildError(f"{pkg} is not in the archive's {', '.join(apt.suites)} (Debian has no such source package there)")
    best = versions[0]
    for v in versions[1:]:
        if version_cmp(v, best) > 0:
            best = v
    d = os.path.join(cache, "src", _safe(f"{pkg}_{best}"))
    tree = os.path.join(d, pkg)
    if os.path.exists(os.path.join(d, ".complete")):
        return tree, f"{pkg} {best}"
    t0 = time.time()
    log(f"downloading {pkg}={best} (about 150 MB)")
    shutil.rmtree(d, ignore_errors=True)
    debs = os.path.join(d, "deb")
    try:
        apt.download([(pkg, best)], debs)
    except FetchError as e:
        raise BuildError(str(e)) from None
    deb = glob.glob(os.path.join(debs, "*.deb"))[0]
    x = os.path.join(d, "x")
    r = subprocess.run(["dpkg-deb", "-x", deb, x], capture_output=True, text=True)
    tarball = glob.glob(os.path.join(x, "usr", "src", f"{pkg}.tar.*"))
    if r.returncode != 0 or not tarball:
        raise BuildError(f"unpacking {deb} failed: {r.stderr.strip() or 'no usr/src/' + pkg + '.tar.*'}")
    r = subprocess.run(["tar", "-xaf", tarball[0], "-C", d], capture_output=True, text=True)
    if r.returncode != 0 or not os.path.isdir(tree):
        raise BuildError(f"unpacking {tarball[0]} failed: {r.stderr.strip() or 'no ' + pkg + '/ in it'}")
    shutil.rmtree(x, ignore_errors=True)
    shutil.rmtree(debs, ignore_errors=True)
    with open(os.path.join(d, ".complete"), "w", encoding="utf-8") as f:
        f.write(f"{pkg} {best}\n")
    log(f"unpacked {pkg} {best} in {time.time() - t0:.0f}s")
    return tree, f"{pkg} {best}"


# ---------------------------------------------------------------- config


# Before 6.2 the BPF JIT and kprobes depend on CONFIG_MODULES: such trees get it on top of
# the fragment (nothing is built as a module: allnoconfig leaves every tristate off).
NEEDS_MODULES = (("kernel/bpf/Kconfig", "BPF_JIT"), ("arch/Kconfig", "KPROBES"))


def needs_modules(tree):
    for path, sym in NEEDS_MODULES:
        try:
            with open(os.path.join(tree, path), encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        m = re.search(rf"^config {sym}\n(.*?)(?=^\S)", text, re.M | re.S)
        if m and re.search(r"^\s*depends on MODULES\b", m.group(1), re.M):
            return True
    return False


def read_fragment(tree=None):
    with open(KCONFIG_FRAGMENT, encoding="utf-8") as f:
        text = f.read()
    if tree is not None and needs_modules(tree):
        text += "# this tree's BPF JIT / kprobes depend on modules (before 6.2)\nCONFIG_MODULES=y\n"
    return text


def wanted_lines(fragment):
    return [ln.strip() for ln in fragment.splitlines() if ln.startswith("CONFIG_")]


def make_config(tree, out=None):
    """Runs allnoconfig with the fragment in `tree` (or into O=`out`); returns the .config
    path. Raises BuildError naming every fragment line Kconfig dropped."""
    frag = read_fragment(tree)
    if out:
        os.makedirs(out, exist_ok=True)
    allconfig = os.path.join(out or tree, ".rawsnoop-kconfig")
    with open(allconfig, "w", encoding="utf-8") as f:
        f.write(frag)
    cmd = ["make", "-s", "allnoconfig", f"KCONFIG_ALLCONFIG={allconfig}"]
    if out:
        cmd.append(f"O={out}")
    r = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError("make allnoconfig failed:\n  " + "\n  ".join((r.stdout + r.stderr).strip().splitlines()[-20:]))
    config = os.path.join(out or tree, ".config")
    with open(config, encoding="utf-8") as f:
        have = set(ln.strip() for ln in f)
    dropped = [w for w in wanted_lines(frag) if w not in have]
    if dropped:
        raise BuildError(f"Kconfig dropped {len(dropped)} line(s) of {KCONFIG_FRAGMENT} in {tree} "
                         f"(a dependency is off or the option is gone): {' '.join(dropped)}")
    return config


def check_only(tree, patches, scratch):
    """The cheap checks: the config can be made and every patch applies (patch --dry-run)."""
    shutil.rmtree(scratch, ignore_errors=True)
    t0 = time.time()
    cfg = make_config(tree, out=scratch)
    with open(cfg, encoding="utf-8") as f:
        n = sum(1 for ln in f if ln.rstrip().endswith("=y"))
    log(f"config: {n} options built in, every line of vm/kconfig/rawsnoop.config kept ({time.time() - t0:.0f}s)")
    shutil.rmtree(scratch, ignore_errors=True)
    for p in patches:
        r = subprocess.run(["patch", "-p1", "--dry-run", "--batch", "--forward", "-i", p.path],
                           cwd=tree, capture_output=True, text=True)
        if r.returncode != 0:
            raise BuildError(f"{p.name} does not apply to {tree}:\n  " + "\n  ".join((r.stdout + r.stderr).strip().splitlines()[-12:]))
        log(f"patch applies: {p.name} (expects red: {', '.join(p.expect_red) or 'nothing declared'})")


# ---------------------------------------------------------------- building


def _stamp(d):
    try:
        with open(os.path.join(d, STAMP), encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def _fixed_path(d):
    """Where every build runs: the host tools under tools/ (objtool, resolve_btfids) record
    absolute paths, and every object depends on objtool, so a tree built at one path and
    copied to another would be rebuilt from scratch. Each build therefore sees its tree
    bind-mounted at this one path, in a private mount namespace (builds at once do not
    collide)."""
    at = os.path.join(os.path.dirname(d), ".at")
    os.makedirs(at, exist_ok=True)
    return at


def _make(d, jobs, nice, logfile, what):
    """Runs the build; on failure raises BuildError with the compiler's error lines."""
    make = ["nice", "-n", str(nice), "make", f"-j{jobs}", "bzImage"]
    at = _fixed_path(d)
    cmd = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
           'mount --bind "$1" "$2" && cd "$2" && shift 2 && exec "$@"', "sh", d, at, *make]
    if subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                      capture_output=True).returncode != 0:
        log("cannot make a mount namespace (not root?): building in place, so a patched copy "
            "rebuilds everything")
        cmd, at = make, d
    log(f"{what}: make -j{jobs} bzImage (nice {nice}) in {d} (seen at {at}); log: {logfile}")
    t0 = time.time()
    with open(logfile, "w", encoding="utf-8") as out:
        r = subprocess.run(cmd, cwd=d, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    secs = time.time() - t0
    if r.returncode != 0:
        with open(logfile, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
        keep = []
        for i, ln in enumerate(lines):
            if ERROR_RE.search(ln):
                # The line before a compiler error names the function ("In function ...").
                if i > 0 and lines[i - 1].rstrip().endswith(":") and lines[i - 1] not in keep:
                    keep.append(lines[i - 1])
                keep.append(ln)
        shown = keep[:30] or lines[-20:]
        raise BuildError(f"{what}: the kernel build failed after {secs:.0f}s (make exited {r.returncode}):\n  "
                         + "\n  ".join(shown) + f"\nfull log: {logfile}")
    log(f"{what}: built in {secs:.0f}s")
    return secs


def _release(d):
    try:
        with open(os.path.join(d, "include", "config", "kernel.release"), encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return "?"


class Built:
    def __init__(self, d, label, built_secs, patches):
        self.dir = d
        self.image = os.path.join(d, "arch", "x86", "boot", "bzImage")
        self.release = _release(d)
        self.label = label
        self.built_secs = built_secs  # None: taken from the cache
        self.patches = patches


def plan(cache, tree, ident, name, patches):
    """(base dir, patched dir or None) for this tree identity, config and patches."""
    frag = read_fragment(tree)
    base = os.path.join(cache, "kbuild", f"{_safe(name)}-{_sha(ident, KCONFIG_METHOD, frag)}")
    if not patches:
        return base, None
    return base, base + "+" + _sha(*[p.diff for p in patches])


def is_built(cache, tree, ident, name, patches):
    base, patched = plan(cache, tree, ident, name, patches)
    return _stamp(base) is not None and (patched is None or _stamp(patched) is not None)


def ensure_build(cache, tree, ident, name, patches, jobs, nice, copy_tree):
    """Builds (or finds in the cache) the kernel; returns a Built.

    ident: what identifies the tree in the cache key (a package version, or the tree's path);
    copy_tree: False when the tree is immutable (Debian's source in the cache): copied once;
    True for a user's tree: synced with rsync every time, and rebuilt when anything changed.
    """
    base, patched = plan(cache, tree, ident, name, patches)
    os.makedirs(os.path.dirname(base), exist_ok=True)
    logs = os.path.join(cache, "kbuild", "logs")
    os.makedirs(logs, exist_ok=True)
    changed = False
    if not os.path.isdir(base):
        t0 = time.time()
        tmp = base + ".partial"
        shutil.rmtree(tmp, ignore_errors=True)
        seed = _find_seed(cache, tree) if copy_tree else None
        if seed:
            # Start from a cached build of the same kernel version: its objects are reused for
            # every file whose content is the same in your tree (rsync --checksum copies only the
            # others, with a fresh mtime), so make rebuilds what differs, not everything.
            r = subprocess.run(["cp", "-a", seed, tmp], capture_output=True, text=True)
            if r.returncode != 0:
                raise BuildError(f"copying {seed} failed: {r.stderr.strip()}")
            for f in (STAMP, SEEDED):
                try:
                    os.unlink(os.path.join(tmp, f))
                except FileNotFoundError:
                    pass
            with open(os.path.join(tmp, SEEDED), "w", encoding="utf-8") as f:
                f.write(seed + "\n")
            n = _rsync(tree, tmp)
            log(f"seeded from the cached build {seed} (same version, {_kernel_version(tree)}): "
                f"{n} file(s) of {tree} differ from it and will be rebuilt")
        elif copy_tree:
            _rsync(tree, tmp)
        else:
            os.makedirs(tmp)
            r = subprocess.run(["cp", "-a", tree + "/.", tmp + "/"], capture_output=True, text=True)
            if r.returncode != 0:
                raise BuildError(f"copying {tree} failed: {r.stderr.strip()}")
        os.rename(tmp, base)
        log(f"copied {tree} to {base} in {time.time() - t0:.0f}s")
        changed = True
    elif copy_tree:
        t0 = time.time()
        n = _rsync(tree, base)
        if n:
            log(f"{n} file(s) changed in {tree} since the last build (compared in {time.time() - t0:.0f}s)")
            changed = True
        else:
            log(f"{tree}: unchanged since the last build (compared in {time.time() - t0:.0f}s)")
    stamp = _stamp(base)
    secs = None
    if stamp is None or changed or not os.path.exists(os.path.join(base, ".config")):
        make_config(base)
        try:
            os.unlink(os.path.join(base, STAMP))
        except FileNotFoundError:
            pass
        secs = _make(base, jobs, nice, os.path.join(logs, os.path.basename(base) + ".log"), name)
        stamp = f"{time.time()}\n"
        with open(os.path.join(base, STAMP), "w", encoding="utf-8") as f:
            f.write(stamp)
    else:
        log(f"{name}: cached build {base} ({_release(base)})")
    if patched is None:
        return Built(base, name, secs, [])
    label = name + "+" + "+".join(os.path.splitext(p.name)[0] for p in patches)
    # A patched build is valid for the base build it was copied from.
    if _stamp(patched) == stamp:
        log(f"{label}: cached build {patched}")
        return Built(patched, label, None, patches)
    t0 = time.time()
    shutil.rmtree(patched, ignore_errors=True)
    tmp = patched + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    r = subprocess.run(["cp", "-a", base, tmp], capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"copying {base} failed: {r.stderr.strip()}")
    os.unlink(os.path.join(tmp, STAMP))
    for p in patches:
        r = subprocess.run(["patch", "-p1", "--batch", "--forward", "-i", p.path], cwd=tmp,
                           capture_output=True, text=True)
        if r.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BuildError(f"{p.name} does not apply to {tree}:\n  "
                             + "\n  ".join((r.stdout + r.stderr).strip().splitlines()[-12:]))
    os.rename(tmp, patched)
    log(f"{label}: copied the build and applied {len(patches)} patch(es) in {time.time() - t0:.0f}s")
    secs = _make(patched, jobs, nice, os.path.join(logs, os.path.basename(patched) + ".log"), label)
    with open(os.path.join(patched, STAMP), "w", encoding="utf-8") as f:
        f.write(stamp)
    return Built(patched, label, secs, patches)


def _kernel_version(tree):
    """VERSION.PATCHLEVEL.SUBLEVEL(EXTRAVERSION) from the tree's Makefile, or None."""
    try:
        with open(os.path.join(tree, "Makefile"), encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return None
    v = {}
    for key in ("VERSION", "PATCHLEVEL", "SUBLEVEL", "EXTRAVERSION"):
        m = re.search(rf"^{key}\s*=[ \t]*(\S*)", head, re.M)
        v[key] = m.group(1) if m else ""
    if not v["VERSION"]:
        return None
    return f"{v['VERSION']}.{v['PATCHLEVEL']}.{v['SUBLEVEL']}{v['EXTRAVERSION']}"


def _find_seed(cache, tree):
    """A finished, unpatched cached build of the same kernel version as `tree` (the newest),
    to start a user tree's first build from; None when there is none."""
    want = _kernel_version(tree)
    if not want:
        return None
    best = None
    for d in glob.glob(os.path.join(cache, "kbuild", "*")):
        name = os.path.basename(d)
        if "+" in name or name.endswith(".partial") or name in ("logs", ".at") or not os.path.isdir(d):
            continue
        stamp = _stamp(d)
        if stamp is None or _kernel_version(d) != want:
            continue
        try:
            when = float(stamp.strip() or 0)
        except ValueError:
            when = 0.0
        if best is None or when > best[0]:
            best = (when, d)
    return best[1] if best else None


def _git_files(src):
    """The files git lists in src (tracked, and untracked but not ignored), NUL-separated, or
    None when src is not a git tree or its listing has no top-level Makefile (a .gitignore
    that ignores the sources, like Debian's packaging one, which ignores everything at the
    top level)."""
    if not os.path.exists(os.path.join(src, ".git")):
        return None
    r = subprocess.run(["git", "-C", src, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                       capture_output=True)
    if r.returncode != 0 or b"Makefile" not in r.stdout.split(b"\0"):
        return None
    return r.stdout


def _rsync(src, dst):
    """Copies src's sources into dst, files whose content differs only (rsync --checksum), never
    its build products, and never deletes in dst (where our build products live); returns how
    many files were copied. A copied file gets the time of the copy as its mtime (not the
    source's), so make always sees it as newer than the objects built before; an unchanged
    file keeps dst's mtime whatever src's is (a `git checkout` that touches files without
    changing them rebuilds nothing, and a build seeded from another tree stays incremental).
    A git tree gives its file list (tracked and untracked files that .gitignore does not
    exclude: the kernel's .gitignore names every build product); otherwise RSYNC_EXCLUDES
    filters."""
    os.makedirs(dst, exist_ok=True)
    # -a without -t (times): content decides, and what is copied is newer than any object.
    cmd = ["rsync", "-rlpgoD", "--checksum", "--itemize-changes"]
    files = _git_files(src)
    if files is not None:
        cmd += ["--from0", "--files-from=-"]
    else:
        cmd += [f"--exclude={x}" for x in RSYNC_EXCLUDES]
    r = subprocess.run(cmd + [src.rstrip("/") + "/", dst + "/"], input=files, capture_output=True)
    if r.returncode != 0:
        raise BuildError(f"rsync {src} -> {dst} failed: {r.stderr.decode(errors='replace').strip()}")
    return sum(1 for ln in r.stdout.decode(errors="replace").splitlines() if ln.startswith(">f"))
