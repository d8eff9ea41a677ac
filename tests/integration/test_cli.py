"""The command line: a bad flag or file exits non-zero without listening, with
one line on stderr naming the problem (file, row, expected vs found)."""

import os
import shutil
import subprocess
import tempfile

import numpy as np

from harness import FRESHD, run
from support import ApiCase, int_matrix, save_index


class BadStart(ApiCase):
    def test_bad_flags_and_files(self):
        tmp = tempfile.mkdtemp(prefix="freshd-it-files-")
        self.addCleanup(shutil.rmtree, tmp, True)
        X = int_matrix(300, 8, seed=91)
        ip, _ = save_index(tmp, X)

        def path(name):
            return os.path.join(tmp, name)

        np.save(path("short-ids.npy"), np.arange(299, dtype=np.uint64))
        dup = np.arange(300, dtype=np.int64)
        dup[40] = dup[70] = 4242
        np.save(path("dup-ids.npy"), dup)
        np.save(path("f64.npy"), X.astype(np.float64))
        np.save(path("float-ids.npy"), np.arange(300, dtype=np.float32))
        bad = X.copy()
        bad[12, 5] = np.inf
        np.save(path("inf.npy"), bad)
        np.save(path("3d.npy"), X.reshape(300, 2, 4))
        with open(path("junk.npy"), "wb") as f:
            f.write(b"definitely not an index")
        cases = [
            (["--bogus-flag"], ["--bogus-flag"]),
            ([], ["--index"]),
            (["--index", path("missing.npy")], ["missing.npy"]),
            (["--index", ip, "--ids", path("short-ids.npy")], ["short-ids.npy", "299", "300"]),
            (["--index", ip, "--ids", path("dup-ids.npy")], ["dup-ids.npy", "4242"]),
            (["--index", path("f64.npy")], ["f64.npy"]),
            (["--index", ip, "--ids", path("float-ids.npy")], ["float-ids.npy"]),
            (["--index", path("inf.npy")], ["inf.npy", "12"]),
            (["--index", path("3d.npy")], ["3d.npy"]),
            (["--index", path("junk.npy")], ["junk.npy"]),
            (["--index", ip, "--corrector", "wavelet"], ["--corrector", "wavelet"]),
            (["--index", ip, "--hidden", "-4"], ["--hidden"]),
            (["--index", ip, "--max-body", "lots"], ["--max-body"]),
            (["--index", ip, "--api-key-file", path("no.key")], ["no.key"]),
        ]
        for args, needles in cases:
            with self.subTest(args=args):
                p = subprocess.run([FRESHD, "--listen", "127.0.0.1:0", "--data-dir",
                                    path("data")] + args, capture_output=True, timeout=30)
                self.assertNotEqual(p.returncode, 0)
                self.assertEqual(p.stdout, b"", "it printed a listening line")
                lines = [l for l in p.stderr.decode(errors="replace").splitlines() if l.strip()]
                self.assertEqual(len(lines), 1, lines)
                for n in needles:
                    self.assertIn(n, lines[0])

    def test_help_and_version(self):
        for flag in ("--help", "--version"):
            p = subprocess.run([FRESHD, flag], capture_output=True, timeout=10)
            self.assertEqual(p.returncode, 0, flag)
            self.assertIn(b"freshd", p.stdout)
        p = subprocess.run([FRESHD, "--help"], capture_output=True, timeout=10)
        for flag in (b"--max-body", b"--max-queries", b"--max-pairs", b"--min-pairs", b"--sync",
                     b"--read-key-file", b"--fresh-dim", b"--insecure", b"--normalize-output",
                     b"--refit-every-pairs", b"--refit-every-seconds", b"--max-step-lag"):
            self.assertIn(flag, p.stdout)


if __name__ == "__main__":
    run()
