"""The curl examples in clients/curl/ run against a demo daemon and get the
statuses they document."""

import os
import subprocess
import unittest

import numpy as np

from harness import Daemon, run

CURL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "curl")


def script(d, name, *args):
    out = subprocess.run(["bash", os.path.join(CURL, name)] + list(args), capture_output=True,
                         text=True, env=dict(os.environ, FRESHD=d.url), timeout=120)
    return out.returncode, out.stdout + out.stderr


def statuses(text):
    return [int(l) for l in text.splitlines() if l.strip().isdigit() and len(l.strip()) == 3]


class CurlExamples(unittest.TestCase):
    def test_every_example(self):
        with Daemon("--demo", "--demo-size", "5000") as d:
            expect = {
                "healthz.sh": [200, 200], "info.sh": [200], "search.sh": [200, 200, 200],
                "negatives.sh": [200, 200], "updates.sh": [202], "refit.sh": [202, 200, 409],
                "corrector.sh": [200, 200], "checkpoint.sh": [200], "targets.sh": [200, 200],
                "pairs.sh": [200], "query_map.sh": [200, 200],
                "qdrant.sh": [200, 200, 200, 200, 200],
                "errors.sh": [400, 400, 400, 400, 404, 404, 405, 415, 400],
            }
            for name, want in expect.items():
                code, out = script(d, name)
                self.assertEqual(code, 0, "%s failed:\n%s" % (name, out))
                self.assertEqual(statuses(out), want, "%s:\n%s" % (name, out))
            code, out = script(d, "metrics.sh")
            self.assertEqual(code, 0, out)
            self.assertIn("freshd_corrector_version", out)
            np.save(os.path.join(d.data_dir, "reembedded.npy"),
                    np.random.default_rng(1).standard_normal((5000, 128)).astype("<f4"))
            code, out = script(d, "reload.sh", "reembedded.npy")
            self.assertEqual(code, 0, out)
            self.assertIn("202", out)
            self.assertIn('"state": "done"', out)


if __name__ == "__main__":
    run()
