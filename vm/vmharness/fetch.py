"""Fetch distribution kernels with a private apt configuration.

Nothing here touches the machine's apt state: the sources list, the lists
directory, the status file and the package cache all live under the cache
folder, and `Dir::Etc::SourceParts=/nonexistent` keeps the machine's
sources.list.d out. The mirror address is read from the machine's own apt
sources at run time; no registry host name is written in this repository.
"""

import functools
import glob
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field

DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# Lists older than this are refreshed before resolving package names.
LISTS_MAX_AGE_S = 6 * 3600


class FetchError(Exception):
    pass


@dataclass
class KernelLine:
    """One line of vm/kernels.txt."""

    label: str
    suite: str
    pattern: str
    features: list
    lineno: int


@dataclass
class Resolved:
    line: KernelLine
    package: str
    version: str
    extra: list = field(default_factory=list)  # (name, version) pulled in by Depends


def log(msg):
    print(f"vm: {msg}", flush=True)


def read_kernel_list(path):
    lines = []
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            text = raw.split("#", 1)[0].strip()
            if not text:
                continue
            cols = text.split()
            if len(cols) not in (3, 4):
                raise FetchError(
                    f"{path}:{n}: expected 'label suite pattern [features]', got {len(cols)} columns"
                )
            feats = []
            if len(cols) == 4 and cols[3] != "-":
                feats = [x for x in cols[3].split(",") if x]
            try:
                re.compile(cols[2])
            except re.error as e:
                raise FetchError(f"{path}:{n}: bad package pattern {cols[2]!r}: {e}") from e
            lines.append(KernelLine(cols[0], cols[1], cols[2], feats, n))
    labels = [k.label for k in lines]
    dups = {x for x in labels if labels.count(x) > 1}
    if dups:
        raise FetchError(f"{path}: duplicate labels {sorted(dups)}")
    return lines


# ---------------------------------------------------------------- mirrors


def _parse_one_line_sources(text):
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        line = re.sub(r"\[[^\]]*\]", " ", line)
        parts = line.split()
        if len(parts) >= 3:
            out.append((parts[1], [parts[2]]))
    return out


def _parse_deb822_sources(text):
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            k, v = line.split(":", 1)
            fields[k.strip().lower()] = v.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            out.append((uri, fields.get("suites", "").split()))
    return out


def machine_sources():
    """(uri, suites) of the machine's enabled `deb` sources."""
    found = []
    paths = ["/etc/apt/sources.list"]
    paths += sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    paths += sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))
    for p in paths:
        try:
            with open(p, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        if p.endswith(".sources"):
            found += _parse_deb822_sources(text)
        else:
            found += _parse_one_line_sources(text)
    return found


def discover_mirrors():
    """Return (archive_uri, security_uri) read from the machine's apt sources.

    The archive is the source whose URI path ends in /debian, the security
    archive the one ending in /debian-security (or carrying a -security
    suite). Environment overrides: RAWSNOOP_VM_MIRROR, RAWSNOOP_VM_SECURITY_MIRROR.
    """
    archive = os.environ.get("RAWSNOOP_VM_MIRROR")
    security = os.environ.get("RAWSNOOP_VM_SECURITY_MIRROR")
    for uri, suites in machine_sources():
        u = uri.rstrip("/")
        is_sec = u.endswith("/debian-security") or any(s.endswith("-security") for s in suites)
        if is_sec and security is None:
            security = u
        elif not is_sec and u.endswith("/debian") and archive is None:
            archive = u
    if archive is None:
        raise FetchError(
            "no Debian archive found in /etc/apt/sources.list{,.d}; "
            "set RAWSNOOP_VM_MIRROR to the archive URI (the one ending in /debian)"
        )
    if security is None:
        # The security archive sits beside the main one on Debian mirrors.
        security = archive + "-security"
    return archive.rstrip("/"), security.rstrip("/")


# ---------------------------------------------------------------- private apt


class PrivateApt:
    def __init__(self, cache_dir, suites):
        self.root = os.path.join(os.path.abspath(cache_dir), "apt")
        self.suites = sorted(set(suites))
        self.lists = os.path.join(self.root, "lists")
        self.sources = os.path.join(self.root, "sources.list")
        self.status = os.path.join(self.root, "status")
        self.stamp = os.path.join(self.root, "updated")
        for d in (os.path.join(self.lists, "partial"), os.path.join(self.root, "cache", "archives", "partial")):
            os.makedirs(d, exist_ok=True)
        if not os.path.exists(self.status):
            open(self.status, "w").close()

    def opts(self):
        return [
            "-o", f"Dir::Etc::SourceList={self.sources}",
            "-o", "Dir::Etc::SourceParts=/nonexistent",
            "-o", f"Dir::State::Lists={self.lists}",
            "-o", f"Dir::State::Status={self.status}",
            "-o", f"Dir::Cache={os.path.join(self.root, 'cache')}",
            "-o", "Dir::Cache::pkgcache=",
            "-o", "Dir::Cache::srcpkgcache=",
            "-o", "APT::Architecture=amd64",
            "-o", "APT::Architectures=amd64",
            "-o", "APT::Sandbox::User=root",
            "-o", "Acquire::Languages=none",
            "-o", "Debug::NoLocking=1",
            "-q",
        ]

    def write_sources(self):
        archive, security = discover_mirrors()
        lines = []
        for s in self.suites:
            uri = security if s.endswith("-security") else archive
            lines.append(
                f"deb [signed-by={DEFAULT_KEYRING} target=Packages arch=amd64] {uri} {s} main\n"
            )
        text = "".join(lines)
        old = None
        if os.path.exists(self.sources):
            with open(self.sources, encoding="utf-8") as f:
                old = f.read()
        if old != text:
            with open(self.sources, "w", encoding="utf-8") as f:
                f.write(text)
            if os.path.exists(self.stamp):
                os.unlink(self.stamp)

    def lists_fresh(self):
        try:
            return time.time() - os.path.getmtime(self.stamp) < LISTS_MAX_AGE_S
        except OSError:
            return False

    def has_lists(self):
        return os.path.exists(self.stamp)

    def update(self):
        log(f"refreshing private apt lists ({', '.join(self.suites)})")
        r = subprocess.run(["apt-get", *self.opts(), "update"], capture_output=True, text=True)
        out = r.stdout + r.stderr
        if r.returncode != 0 or "Failed to fetch" in out or "\nE: " in "\n" + out:
            # apt-get update exits 0 when it could not reach a mirror: its W: lines say so.
            msg = [ln for ln in out.splitlines() if ln.startswith(("W:", "E:"))][-6:]
            raise FetchError("apt-get update (private lists) failed:\n  " + "\n  ".join(msg))
        warn = [ln for ln in out.splitlines() if ln.startswith("W:")]
        if warn:
            log("apt-get update warned:\n  " + "\n  ".join(warn[-6:]))
        with open(self.stamp, "w") as f:
            f.write(time.ctime() + "\n")

    def cache(self, *args):
        r = subprocess.run(["apt-cache", *self.opts(), *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise FetchError(f"apt-cache {' '.join(args[:2])} failed: {r.stderr.strip()}")
        return r.stdout

    def madison(self, names):
        """{name: [(version, suite)]} for real packages among names."""
        out = {}
        if not names:
            return out
        for line in self.cache("madison", *names).splitlines():
            cols = [c.strip() for c in line.split("|")]
            if len(cols) < 3:
                continue
            src = cols[2].split()
            if len(src) < 2:
                continue
            suite = src[1].split("/", 1)[0]
            out.setdefault(cols[0], []).append((cols[1], suite))
        return out

    def depends(self, name, version):
        text = self.cache("show", f"{name}={version}")
        deps = []
        for line in text.splitlines():
            if line.startswith(("Depends:", "Pre-Depends:")):
                for alt in line.split(":", 1)[1].split(","):
                    m = re.match(r"\s*([a-z0-9][a-z0-9+.\-]*)\s*\(\s*=\s*([^)\s]+)\s*\)", alt)
                    if m:
                        deps.append((m.group(1), m.group(2)))
            if not line.strip():
                break
        return deps

    def download(self, specs, dest):
        os.makedirs(dest, exist_ok=True)
        args = [f"{n}={v}" for n, v in specs]
        r = subprocess.run(["apt-get", *self.opts(), "download", *args], cwd=dest, capture_output=True, text=True)
        if r.returncode != 0:
            raise FetchError(f"apt-get download {' '.join(args)} failed:\n  {r.stderr.strip()}")


def version_cmp(a, b):
    if a == b:
        return 0
    r = subprocess.run(["dpkg", "--compare-versions", a, "lt", b])
    return -1 if r.returncode == 0 else 1


def literal_prefix(pattern):
    m = re.match(r"[A-Za-z0-9_\-]*(\\\.[A-Za-z0-9_\-]*)*", pattern)
    return m.group(0).replace("\\.", ".") if m else ""


def resolve(apt, line):
    """Newest package in line.suite whose name fully matches line.pattern."""
    rx = re.compile(line.pattern)
    prefix = literal_prefix(line.pattern)
    names = sorted(n for n in apt.cache("pkgnames", prefix).split() if rx.fullmatch(n))
    avail = apt.madison(names)
    cands = [(n, v) for n, vs in avail.items() for v, s in vs if s == line.suite]
    if not cands:
        near = sorted(n for n, vs in avail.items()) or names
        raise FetchError(
            f"kernel {line.label}: no package matching {line.pattern!r} in {line.suite}"
            + (f" (matches elsewhere: {', '.join(near[:6])})" if near else "")
            + "; fix its line in vm/kernels.txt"
        )
    cands.sort(key=functools.cmp_to_key(lambda x, y: version_cmp(x[1], y[1]) or (x[0] > y[0]) - (x[0] < y[0])))
    name, version = cands[-1]
    extra = [
        (n, v)
        for n, v in apt.depends(name, version)
        if re.match(r"linux-(binary|modules|image)-", n) and not n.startswith("linux-binary-unsigned-")
    ]
    return Resolved(line, name, version, extra)


# ---------------------------------------------------------------- kernel trees


@dataclass
class KernelTree:
    label: str
    vmlinuz: str
    kver: str
    pkg: str  # "name version" or a user path


def _tree_id(res):
    return re.sub(r"[^A-Za-z0-9.+_-]", "_", f"{res.package}_{res.version}")


def find_vmlinuz(tree):
    """(image path, kernel release) in an unpacked tree.

    Up to 7.1 the image is boot/vmlinuz-<release>; from 7.2 (linux-binary-*)
    it is usr/lib/modules/<release>/vmlinuz.
    """
    hits = [(p, os.path.basename(p)[len("vmlinuz-"):]) for p in glob.glob(os.path.join(tree, "boot", "vmlinuz-*"))]
    for pat in ("lib/modules/*/vmlinuz", "usr/lib/modules/*/vmlinuz"):
        hits += [(p, os.path.basename(os.path.dirname(p))) for p in glob.glob(os.path.join(tree, pat))]
    if len(hits) != 1:
        raise FetchError(f"{tree}: expected one kernel image (boot/vmlinuz-* or lib/modules/*/vmlinuz), found {len(hits)}")
    return hits[0]


def ensure_tree(cache_dir, apt, res):
    """Download and unpack res into <cache>/kernels/<label>/<pkg>_<ver>/ once."""
    base = os.path.join(cache_dir, "kernels", res.line.label)
    tree = os.path.join(base, _tree_id(res))
    if os.path.exists(os.path.join(tree, ".complete")):
        vmlinuz, kver = find_vmlinuz(tree)
        return KernelTree(res.line.label, vmlinuz, kver, f"{res.package} {res.version}")
    t0 = time.time()
    debs = os.path.join(cache_dir, "debs", res.line.label)
    shutil.rmtree(debs, ignore_errors=True)
    specs = [(res.package, res.version)] + res.extra
    log(f"{res.line.label}: downloading {', '.join(n + '=' + v for n, v in specs)}")
    apt.download(specs, debs)
    tmp = tree + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for deb in sorted(glob.glob(os.path.join(debs, "*.deb"))):
        r = subprocess.run(["dpkg-deb", "-x", deb, tmp], capture_output=True, text=True)
        if r.returncode != 0:
            raise FetchError(f"dpkg-deb -x {deb} failed: {r.stderr.strip()}")
    vmlinuz, kver = find_vmlinuz(tmp)
    moddirs = [d for d in (os.path.join(tmp, "lib", "modules", kver), os.path.join(tmp, "usr", "lib", "modules", kver)) if os.path.isdir(d)]
    if not moddirs:
        raise FetchError(f"{res.package}: no lib/modules/{kver} in the packages (9p and virtio are modules)")
    # Debian packages do not ship modules.dep (postinst makes it): build it now.
    modbase = os.path.dirname(os.path.dirname(os.path.dirname(moddirs[0])))
    r = subprocess.run(["depmod", "-b", modbase, kver], capture_output=True, text=True)
    if r.returncode != 0:
        raise FetchError(f"depmod for {kver} failed: {r.stderr.strip()}")
    with open(os.path.join(tmp, ".complete"), "w") as f:
        f.write("".join(f"{n} {v}\n" for n, v in specs))
    # Keep one tree per label: drop the trees of versions that rolled over.
    for old in glob.glob(os.path.join(base, "*")):
        if old != tmp:
            shutil.rmtree(old, ignore_errors=True)
    os.rename(tmp, tree)
    shutil.rmtree(debs, ignore_errors=True)
    log(f"{res.line.label}: unpacked {kver} in {time.time() - t0:.0f}s")
    vmlinuz, kver = find_vmlinuz(tree)
    return KernelTree(res.line.label, vmlinuz, kver, f"{res.package} {res.version}")


def cached_tree(cache_dir, line):
    """The tree already unpacked for a label, if any (used when lists cannot be refreshed)."""
    for tree in sorted(glob.glob(os.path.join(cache_dir, "kernels", line.label, "*"))):
        if os.path.exists(os.path.join(tree, ".complete")):
            vmlinuz, kver = find_vmlinuz(tree)
            with open(os.path.join(tree, ".complete"), encoding="utf-8") as f:
                pkg = f.readline().strip()
            return KernelTree(line.label, vmlinuz, kver, pkg + " (cached)")
    return None


def fetch_kernels(cache_dir, lines, suites, refresh=False, offline=False):
    """KernelTree for each line; refreshes lists when stale, retries once on a vanished package.

    suites: every suite of the kernel list, so that fetching a subset keeps one set of lists.
    """
    trees = []
    apt = PrivateApt(cache_dir, suites)
    if offline:
        for k in lines:
            t = cached_tree(cache_dir, k)
            if t is None:
                raise FetchError(f"kernel {k.label}: --offline but nothing cached")
            trees.append(t)
        return trees
    apt.write_sources()
    updated = False
    unreachable = False
    if refresh or not apt.lists_fresh():
        try:
            apt.update()
            updated = True
        except FetchError as e:
            if not apt.has_lists():
                raise
            unreachable = True
            log(f"{e}\nvm: using the lists from the last refresh")
    for k in lines:
        try:
            try:
                trees.append(ensure_tree(cache_dir, apt, resolve(apt, k)))
            except FetchError as e:
                if updated or unreachable:
                    raise
                # A stale list may name a version the mirror already dropped.
                log(f"{e}\nvm: refreshing the lists and retrying")
                apt.update()
                updated = True
                trees.append(ensure_tree(cache_dir, apt, resolve(apt, k)))
        except FetchError as e:
            cached = cached_tree(cache_dir, k) if unreachable else None
            if cached is None:
                raise
            log(f"{e}\nvm: {k.label}: the mirror is unreachable, using the cached {cached.pkg}")
            trees.append(cached)
    return trees
