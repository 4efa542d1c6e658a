"""Checks of the result judging (no VM needed): python3 -m unittest discover -s vm -t vm"""

import os
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vmharness import fetch, kbuild, results  # noqa: E402

LIBTEST = """
running 4 tests
test perfbuf_cli_sees_own_execs ... ok
test ringbuf_reserve_cli_sees_own_execs ... ok
test perfbuf_attach_uses_bpf_link_where_the_kernel_has_one ... ok
test loader_parses ... FAILED

successes:

---- perfbuf_cli_sees_own_execs stdout ----
some chatter

---- ringbuf_reserve_cli_sees_own_execs stdout ----
SKIPPED: ringbuf_reserve_cli_sees_own_execs: ringbuf needs Linux >= 5.8

---- perfbuf_attach_uses_bpf_link_where_the_kernel_has_one stdout ----
SKIPPED: perfbuf_attach_uses_bpf_link_where_the_kernel_has_one: no perf link before 5.15


successes:
    perfbuf_cli_sees_own_execs
    ringbuf_reserve_cli_sees_own_execs
    perfbuf_attach_uses_bpf_link_where_the_kernel_has_one

failures:

---- loader_parses stdout ----
thread 'loader_parses' panicked at tests/x.rs:1:1:
boom

failures:
    loader_parses

test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.10s
"""


def by_name(outcomes):
    return {o.name: o for o in outcomes}


class ParseTests(unittest.TestCase):
    def test_old_kernel_accepts_gated_skips(self):
        feats = results.supported_features((5, 4))
        outs, probs = results.parse_binary("b", LIBTEST, 101, feats, "5.4.0")
        o = by_name(outs)
        self.assertEqual(o["perfbuf_cli_sees_own_execs"].result, "passed")
        self.assertEqual(o["ringbuf_reserve_cli_sees_own_execs"].result, "skipped")
        self.assertEqual(o["perfbuf_attach_uses_bpf_link_where_the_kernel_has_one"].result, "skipped")
        self.assertEqual(o["loader_parses"].result, "failed")
        self.assertEqual(probs, [])

    def test_skip_on_a_kernel_with_the_feature_is_a_failure(self):
        feats = results.supported_features((5, 10))
        o = by_name(results.parse_binary("b", LIBTEST, 101, feats, "5.10.0")[0])
        self.assertEqual(o["ringbuf_reserve_cli_sees_own_execs"].result, "failed")
        self.assertIn("unexpected skip", o["ringbuf_reserve_cli_sees_own_execs"].note)
        # 5.10 has no perf link: that skip is still fine.
        self.assertEqual(o["perfbuf_attach_uses_bpf_link_where_the_kernel_has_one"].result, "skipped")

    def test_ungated_skip_and_privilege_skip_fail(self):
        text = (
            "test loader_thing ... ok\ntest perfbuf_x ... ok\n\nsuccesses:\n\n"
            "---- loader_thing stdout ----\nSKIPPED: loader_thing: no BTF\n\n"
            "---- perfbuf_x stdout ----\nSKIPPED (needs root/CAP_BPF): perfbuf_x: EPERM\n\n"
            "test result: ok. 2 passed; 0 failed; 0 ignored\n"
        )
        o = by_name(results.parse_binary("b", text, 0, results.supported_features((4, 19)), "4.19")[0])
        self.assertEqual(o["loader_thing"].result, "failed")
        self.assertEqual(o["perfbuf_x"].result, "failed")

    def test_crash_and_timeout_are_problems(self):
        _, probs = results.parse_binary("b", "running 2 tests\ntest a ... ", 134, set(), "6.1")
        self.assertTrue(any("without a libtest summary" in p for p in probs))
        _, probs = results.parse_binary("b", "", 124, set(), "6.1")
        self.assertTrue(any("timed out" in p for p in probs))
        _, probs = results.parse_binary("b", "", None, set(), "6.1")
        self.assertTrue(any("did not finish" in p for p in probs))
        _, probs = results.parse_binary("b", "test result: ok. 0 passed;\n", 1, set(), "6.1")
        self.assertTrue(any("no failed test" in p for p in probs))

    def test_transports(self):
        self.assertEqual(results.transport_of("ringbuf_reserve_burst"), "ringbuf_reserve")
        self.assertEqual(results.transport_of("x_ringbuf_output_y"), "ringbuf_output")
        self.assertEqual(results.transport_of("perfbuf_overflow"), "perfbuf")
        self.assertEqual(results.transport_of("ringbuf_rejects_bad_setup"), "other")


class JudgeTests(unittest.TestCase):
    def write(self, d, name, text):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)

    def test_folder(self):
        with tempfile.TemporaryDirectory() as d:
            self.write(d, "uname", "5.10.0-46-amd64\n")
            self.write(d, "mounts-tests", "proc /proc proc rw 0 0\n")
            self.write(d, "t.out", LIBTEST)
            self.write(d, "t.rc", "101\n")
            self.write(d, "dmesg", "[1] early WARNING: CPU: 0 boot noise\n[2] rawsnoop-vm: tests start\n"
                                   "[3] BUG: unable to handle page fault\n")
            self.write(d, "done", "ok\n")
            kr = results.judge(results.KernelResult("5.10"), d, [("t", "/x")], ["ringbuf", "perf_link"])
            self.assertFalse(kr.ok)
            self.assertTrue(any("predates" in p and "perf_link" in p for p in kr.problems))
            self.assertTrue(any("page fault" in p for p in kr.problems))
            self.assertFalse(any("boot noise" in p for p in kr.problems))
            rows = kr.counts()
            # kernels.txt claims perf_link, so even its skip on 5.10 is a failure.
            self.assertEqual(rows["perfbuf"], [1, 1, 0])
            self.assertEqual(rows["ringbuf_reserve"], [0, 1, 0])

    def test_no_boot(self):
        with tempfile.TemporaryDirectory() as d:
            kr = results.judge(results.KernelResult("x"), d, [("t", "/x")], [])
            self.assertFalse(kr.ok)

    def test_tracefs_left_mounted(self):
        with tempfile.TemporaryDirectory() as d:
            self.write(d, "uname", "6.1.0\n")
            self.write(d, "mounts-tests", "tracefs /sys/kernel/tracing tracefs rw 0 0\n")
            self.write(d, "done", "ok\n")
            kr = results.judge(results.KernelResult("x"), d, [], [])
            self.assertTrue(any("tracefs" in p for p in kr.problems))


class KernelListTests(unittest.TestCase):
    def test_repo_list_parses_and_patterns_select(self):
        lines = fetch.read_kernel_list(os.path.join(os.path.dirname(os.path.dirname(__file__)), "kernels.txt"))
        self.assertGreaterEqual(len(lines), 6)
        import re

        pat = {k.label: re.compile(k.pattern) for k in lines}
        self.assertTrue(pat["5.10"].fullmatch("linux-image-5.10.0-46-amd64"))
        self.assertFalse(pat["5.10"].fullmatch("linux-image-5.10.0-46-cloud-amd64"))
        self.assertFalse(pat["5.10"].fullmatch("linux-image-5.10.0-46-amd64-dbg"))
        self.assertTrue(pat["7.3"].fullmatch("linux-image-7.3-amd64"))
        self.assertFalse(pat["7.3"].fullmatch("linux-image-7.3-rt-amd64"))

    def test_mirror_parsing(self):
        deb822 = (
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n\n"
            "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
        )
        self.assertEqual(
            fetch._parse_deb822_sources(deb822),
            [("http://mirror.example/debian", ["bookworm"]),
             ("http://mirror.example/debian-security", ["bookworm-security"])],
        )
        one = "deb [arch=amd64] http://m.example/debian bookworm main\n# deb http://x/debian sid main\n"
        self.assertEqual(fetch._parse_one_line_sources(one), [("http://m.example/debian", ["bookworm"])])

    def test_literal_prefix(self):
        self.assertEqual(fetch.literal_prefix(r"linux-image-5\.10\.0-\d+-amd64"), "linux-image-5.10.0-")
        self.assertEqual(fetch.literal_prefix(r"linux-image-7\.3(\.\d+)?-amd64"), "linux-image-7.3")


    def test_failure_message_is_kept(self):
        outs, _ = results.parse_binary("b", LIBTEST, 101, {"ringbuf", "perf_link"}, "6.12.1")
        self.assertEqual(by_name(outs)["loader_parses"].message, "boom")
        newer = "thread 't1' (156) panicked at tests/k.rs:3:9:\nconsumer was never woken\nstack backtrace:\n"
        self.assertEqual(results.failure_messages(newer), {"t1": "consumer was never woken"})

    def test_expected_red_must_match_exactly(self):
        def kr(failed, passed=(), expect=None):
            k = results.KernelResult("p", release="6.12.117")
            k.tests = [results.TestOutcome("cs", n, "failed") for n in failed]
            k.tests += [results.TestOutcome("cs", n, "passed") for n in passed]
            k.expect_red = expect
            return k
        exact = kr(["ringbuf_a", "ringbuf_b"], ["perfbuf_c"], ["cs::ringbuf_*"])
        self.assertTrue(exact.ok)
        self.assertEqual(exact.status, "red as expected")
        extra = kr(["ringbuf_a", "perfbuf_c"], [], ["cs::ringbuf_*"])
        self.assertFalse(extra.ok)
        self.assertEqual(extra.expectation(), (["cs::perfbuf_c"], []))
        missing = kr(["ringbuf_a"], ["x"], ["cs::ringbuf_a", "kc::wakeup"])
        self.assertFalse(missing.ok)
        self.assertEqual(missing.expectation(), ([], ["kc::wakeup"]))
        nothing_red = kr([], ["ringbuf_a"], ["cs::ringbuf_a"])
        self.assertFalse(nothing_red.ok, "a patch that breaks nothing is a failure")
        self.assertTrue(kr([], ["a"]).ok)

    def test_patch_headers(self):
        vm = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        pdir = os.path.join(vm, "patches")
        names = sorted(os.listdir(pdir))
        self.assertIn("ringbuf-no-wakeup.patch", names)
        for n in names:
            p = kbuild.Patch(os.path.join(pdir, n))
            self.assertTrue(p.expect_red, f"{n} declares no Expect-red: lines")
            self.assertTrue(all("::" in e for e in p.expect_red), p.expect_red)
        with tempfile.NamedTemporaryFile("w", suffix=".patch") as f:
            f.write("no diff here\n")
            f.flush()
            with self.assertRaises(kbuild.BuildError):
                kbuild.Patch(f.name)

    def test_modules_needed_before_6_2(self):
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "kernel", "bpf"))
            with open(os.path.join(d, "kernel", "bpf", "Kconfig"), "w") as f:
                f.write("config BPF_JIT\n\tbool \"JIT\"\n\tdepends on BPF\n\tdepends on MODULES\n\nconfig X\n")
            self.assertTrue(kbuild.needs_modules(d))
            self.assertIn("CONFIG_MODULES=y", kbuild.read_fragment(d))
            with open(os.path.join(d, "kernel", "bpf", "Kconfig"), "w") as f:
                f.write("config BPF_JIT\n\tbool \"JIT\"\n\tdepends on BPF\n\nconfig X\n\tdepends on MODULES\n")
            self.assertFalse(kbuild.needs_modules(d))
            self.assertNotIn("CONFIG_MODULES=y", kbuild.read_fragment(d))


    def test_user_tree_copy_skips_build_products(self):
        with tempfile.TemporaryDirectory() as d:
            for git in (False, True):
                src, dst = os.path.join(d, f"src{git}"), os.path.join(d, f"dst{git}")
                os.makedirs(os.path.join(src, "kernel"))
                with open(os.path.join(src, "kernel", "fork.c"), "w") as f:
                    f.write("int x;\n")
                with open(os.path.join(src, "kernel", "fork.o"), "w") as f:
                    f.write("obj\n")
                if git:
                    with open(os.path.join(src, ".gitignore"), "w") as f:
                        f.write("*.o\n")
                    subprocess.run(["git", "init", "-q", src], check=True)
                self.assertGreaterEqual(kbuild._rsync(src, dst), 1)
                self.assertTrue(os.path.exists(os.path.join(dst, "kernel", "fork.c")))
                self.assertFalse(os.path.exists(os.path.join(dst, "kernel", "fork.o")))
                with open(os.path.join(dst, "built.o"), "w") as f:
                    f.write("ours\n")
                self.assertEqual(kbuild._rsync(src, dst), 0, "unchanged tree: nothing copied")
                self.assertTrue(os.path.exists(os.path.join(dst, "built.o")), "our build products stay")
                with open(os.path.join(src, "kernel", "fork.c"), "a") as f:
                    f.write("int y;\n")
                self.assertEqual(kbuild._rsync(src, dst), 1)

    def test_git_tree_whose_gitignore_hides_the_sources_falls_back_to_excludes(self):
        # Debian's linux-source .gitignore ignores everything at the top level: a git listing
        # of such a tree has no Makefile, and copying it would copy nothing.
        with tempfile.TemporaryDirectory() as d:
            src, dst = os.path.join(d, "src"), os.path.join(d, "dst")
            os.makedirs(os.path.join(src, "kernel"))
            for name, text in (("Makefile", "VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 117\nEXTRAVERSION =\n"),
                               ("kernel/fork.c", "int x;\n"), ("kernel/fork.o", "obj\n"),
                               (".gitignore", "*.o\n/*\n!/debian/\n")):
                with open(os.path.join(src, name), "w") as f:
                    f.write(text)
            subprocess.run(["git", "init", "-q", src], check=True)
            self.assertIsNone(kbuild._git_files(src))
            self.assertEqual(kbuild._rsync(src, dst), 3)  # Makefile, fork.c, .gitignore
            self.assertFalse(os.path.exists(os.path.join(dst, "kernel", "fork.o")))
            self.assertEqual(kbuild._kernel_version(src), "6.12.117")

    def test_user_tree_build_is_seeded_from_a_cached_build_of_the_same_version(self):
        with tempfile.TemporaryDirectory() as cache:
            def tree(path, sub):
                os.makedirs(path, exist_ok=True)
                with open(os.path.join(path, "Makefile"), "w") as f:
                    f.write(f"VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = {sub}\nEXTRAVERSION =\n")
            old = os.path.join(cache, "kbuild", "linux-source-6.12_a-111")
            new = os.path.join(cache, "kbuild", "linux-source-6.12_b-222")
            patched = new + "+333"
            for d, when in ((old, "1.0"), (new, "2.0"), (patched, "3.0")):
                tree(d, 117)
                with open(os.path.join(d, kbuild.STAMP), "w") as f:
                    f.write(when + "\n")
            other = os.path.join(cache, "kbuild", "linux-source-6.1_c-444")
            tree(other, 192)
            with open(os.path.join(other, kbuild.STAMP), "w") as f:
                f.write("9.0\n")
            user = os.path.join(cache, "user")
            tree(user, 117)
            self.assertEqual(kbuild._find_seed(cache, user), new, "the newest unpatched build of 6.12.117")
            tree(user, 118)
            self.assertIsNone(kbuild._find_seed(cache, user), "no build of 6.12.118")
            os.unlink(os.path.join(new, kbuild.STAMP))
            tree(user, 117)
            self.assertEqual(kbuild._find_seed(cache, user), old, "an unfinished build is no seed")



if __name__ == "__main__":
    unittest.main()
