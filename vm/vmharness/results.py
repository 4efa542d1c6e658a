"""Read what a guest left in its results folder and judge it.

Counting follows the integration tests' conventions: libtest's
`test NAME ... ok|FAILED|ignored` lines give each test's outcome; a test that
printed a line starting `SKIPPED` (seen in its `---- NAME stdout ----` section,
libtest's --show-output) passed without testing anything and counts as skipped.
A skip is accepted only when the test belongs to a feature gate the kernel is
too old for (and kernels.txt does not claim the feature); any other skip is a
failure: there are no silent skips.
"""

import fnmatch
import os
import re
from dataclasses import dataclass, field

TRANSPORTS = ("ringbuf_reserve", "ringbuf_output", "perfbuf", "other")

# feature -> (first Linux version with it, test-name pattern of the tests it gates)
FEATURES = {
    "ringbuf": ((5, 8), re.compile(r"ringbuf")),
    "perf_link": ((5, 15), re.compile(r"perf_link|bpf_link")),
}

# Kernel log lines that make a run red even when every test passed.
KERNEL_TROUBLE = re.compile(
    r"(BUG:|Oops|general protection fault|WARNING: CPU:|Kernel panic|kernel BUG at|UBSAN:|KASAN:|"
    r"rcu_sched self-detected stall|RCU stall|INFO: task .* blocked for more than)"
)

RESULT_RE = re.compile(r"^test (\S+) \.\.\. (ok|FAILED|ignored)\b")
SECTION_RE = re.compile(r"^---- (\S+) std(?:out|err) ----$")
SKIP_RE = re.compile(r"^\s*SKIPPED\b(.*)$")
NAMED_SKIP_RE = re.compile(r"^\s*SKIPPED(?: \([^)]*\))?: ([A-Za-z0-9_:]+): ")


def transport_of(test):
    for t in TRANSPORTS[:-1]:
        if t in test:
            return t
    return "other"


def parse_version(release):
    m = re.match(r"(\d+)\.(\d+)", release or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def supported_features(version):
    if version is None:
        return set()
    return {f for f, (need, _) in FEATURES.items() if version >= need}


@dataclass
class TestOutcome:
    binary: str
    name: str
    result: str  # passed | failed | skipped
    note: str = ""
    message: str = ""  # a failed test's panic message (its first lines)


@dataclass
class KernelResult:
    label: str
    release: str = "?"
    seconds: float = 0.0
    tests: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    log_dir: str = ""
    # Patched kernels: the tests the patches say must fail ("binary::test" patterns, a
    # trailing * matches any suffix); None for a kernel expected all green.
    expect_red: list = None

    def failed_names(self):
        return [f"{t.binary}::{t.name}" for t in self.tests if t.result == "failed"]

    def expectation(self):
        """(unexpected failures, patterns no failure matched) against expect_red."""
        pats = self.expect_red or []
        failed = self.failed_names()
        unexpected = [n for n in failed if not any(fnmatch.fnmatchcase(n, p) for p in pats)]
        missing = [p for p in pats if not any(fnmatch.fnmatchcase(n, p) for n in failed)]
        return unexpected, missing

    @property
    def ok(self):
        if self.expect_red is not None:
            unexpected, missing = self.expectation()
            return not self.problems and not unexpected and not missing
        return not self.problems and not any(t.result == "failed" for t in self.tests)

    @property
    def status(self):
        if self.expect_red is not None and self.ok:
            return "red as expected"
        return "ok" if self.ok else "FAIL"

    def counts(self):
        rows = {t: [0, 0, 0] for t in TRANSPORTS}
        col = {"passed": 0, "failed": 1, "skipped": 2}
        for t in self.tests:
            rows[transport_of(t.name)][col[t.result]] += 1
        return rows


def _section_skips(text):
    """{test: skip text} from the per-test output sections and named SKIPPED lines."""
    skips = {}
    current = None
    for line in text.splitlines():
        m = SECTION_RE.match(line)
        if m:
            current = m.group(1)
            continue
        if line in ("successes:", "failures:") or line.startswith("test result:"):
            current = None
            continue
        s = SKIP_RE.match(line)
        if s:
            named = NAMED_SKIP_RE.match(line)
            who = current or (named.group(1) if named else None)
            if who:
                skips.setdefault(who, line.strip())
    return skips


# "thread 'name' panicked at f.rs:1:2:"; Rust 1.9x adds the thread id: "thread 'name' (156) panicked".
PANIC_RE = re.compile(r"^thread '([^']+)'(?: \(\d+\))? panicked at [^\n]*:$")


def failure_messages(text):
    """{test: the first lines of its panic message} from libtest's output."""
    out = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = PANIC_RE.match(line)
        if not m or m.group(1) in out:
            continue
        msg = []
        for nxt in lines[i + 1:i + 7]:
            if not nxt.strip() or nxt.startswith(("note:", "stack backtrace:", "---- ")):
                break
            msg.append(nxt.strip())
        out[m.group(1)] = " ".join(msg)
    return out


def parse_binary(binary, text, rc, features, release):
    """(outcomes, problems) for one test binary's output."""
    outcomes, problems = [], []
    results = {}
    for line in text.splitlines():
        m = RESULT_RE.match(line)
        if m:
            results[m.group(1)] = m.group(2)
    skips = _section_skips(text)
    messages = failure_messages(text)
    for name, res in results.items():
        skip = skips.get(name)
        if skip is None:
            # A named SKIPPED line printed outside a section (e.g. --nocapture).
            skip = next((v for k, v in skips.items() if name == k or name.endswith("::" + k)), None)
        if res == "FAILED":
            outcomes.append(TestOutcome(binary, name, "failed", message=messages.get(name, "")))
        elif res == "ignored":
            outcomes.append(TestOutcome(binary, name, "skipped", "#[ignore]"))
        elif skip is None:
            outcomes.append(TestOutcome(binary, name, "passed"))
        else:
            gate = [f for f, (_, rx) in FEATURES.items() if rx.search(name)]
            missing = [f for f in gate if f not in features]
            if "needs root" in skip or "CAP_BPF" in skip:
                outcomes.append(TestOutcome(binary, name, "failed", f"skipped for privileges in a root guest: {skip}"))
            elif gate and missing:
                outcomes.append(TestOutcome(binary, name, "skipped", skip))
            else:
                why = f"{release} has {', '.join(gate)}" if gate else "not a feature-gated test"
                outcomes.append(TestOutcome(binary, name, "failed", f"unexpected skip ({why}): {skip}"))
    if rc is None:
        problems.append(f"{binary}: did not finish (guest died or timed out)")
    elif "test result:" not in text:
        problems.append(f"{binary}: exited {rc} without a libtest summary" + (" (timed out)" if rc in (124, 137) else ""))
    elif rc != 0 and not any(o.result == "failed" for o in outcomes):
        problems.append(f"{binary}: exited {rc} with no failed test")
    return outcomes, problems


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def judge(kr, resdir, binaries, claimed_features):
    """Fill kr (a KernelResult) from a guest's results folder."""
    kr.log_dir = resdir
    release = (_read(os.path.join(resdir, "uname")) or "").strip()
    if not release:
        kr.problems.append("the guest never ran the test script (boot failed?)")
        return kr
    kr.release = release
    version = parse_version(release)
    supported = supported_features(version)
    for f in claimed_features:
        if f not in FEATURES:
            kr.problems.append(f"kernels.txt names unknown feature {f!r} (known: {', '.join(FEATURES)})")
        elif f not in supported:
            kr.problems.append(f"kernels.txt claims {f} but Linux {release} predates it")
    features = supported | set(claimed_features)
    mounts = _read(os.path.join(resdir, "mounts-tests")) or ""
    for fs in ("tracefs", "debugfs", "bpf"):
        if re.search(rf"^\S+ \S+ {fs} ", mounts, re.M):
            kr.problems.append(f"{fs} was still mounted when the tests started")
    for name, _exe in binaries:
        text = _read(os.path.join(resdir, f"{name}.out"))
        rc_text = _read(os.path.join(resdir, f"{name}.rc"))
        rc = int(rc_text) if rc_text and rc_text.strip().lstrip("-").isdigit() else None
        outcomes, problems = parse_binary(name, text or "", rc, features, release)
        kr.tests += outcomes
        kr.problems += problems
    if binaries and not kr.tests:
        kr.problems.append("no test ran")
    dmesg = _read(os.path.join(resdir, "dmesg")) or ""
    after = dmesg.split("rawsnoop-vm: tests start", 1)
    if len(after) == 2:
        bad = [l for l in after[1].splitlines() if KERNEL_TROUBLE.search(l)]
        if bad:
            kr.problems.append("kernel complained during the tests:\n      " + "\n      ".join(bad[:8]))
    if _read(os.path.join(resdir, "done")) is None:
        kr.problems.append("the guest did not reach the end of its script")
    return kr


def table(results):
    """The summary table, one row per kernel and transport."""
    w = max([10] + [len(kr.label) for kr in results])
    head = f"{'kernel':<{w}} {'release':<24} {'transport':<16} {'passed':>6} {'failed':>6} {'skipped':>7} {'seconds':>8}  status"
    out = [head, "-" * len(head)]
    for kr in results:
        rows = kr.counts()
        shown = [t for t in TRANSPORTS if any(rows[t])] or ["other"]
        for i, t in enumerate(shown):
            p, f, s = rows[t]
            first = i == 0
            out.append(
                f"{kr.label if first else '':<{w}} {kr.release if first else '':<24} {t:<16} {p:>6} {f:>6} {s:>7} "
                f"{(f'{kr.seconds:.0f}' if first else ''):>8}  {kr.status if first else ''}"
            )
    return "\n".join(line.rstrip() for line in out)


def details(results):
    out = []
    for kr in results:
        lines = []
        for t in kr.tests:
            if t.result == "failed":
                expected = kr.expect_red is not None and f"{t.binary}::{t.name}" not in kr.expectation()[0]
                lines.append(f"    {'red    ' if expected else 'failed '} {t.binary}::{t.name}"
                             + (f"  ({t.note})" if t.note else ""))
                if t.message:
                    lines.append(f"            {t.message[:400]}")
            elif t.result == "skipped":
                lines.append(f"    skipped {t.binary}::{t.name}  ({t.note})")
        lines += [f"    problem {p}" for p in kr.problems]
        if kr.expect_red is not None:
            unexpected, missing = kr.expectation()
            lines += [f"    problem {n} failed, but no patch expects it to" for n in unexpected]
            lines += [f"    problem expected red, but passed: {p}" for p in missing]
        if lines:
            out.append(f"{kr.label} ({kr.release}), logs in {kr.log_dir}:")
            out += lines
    return "\n".join(out)
