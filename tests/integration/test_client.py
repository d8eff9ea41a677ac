"""The Python client as users install it: `pip install --no-build-isolation`
of clients/python into a fresh directory (offline, Debian's setuptools),
imported from there against the real daemon: numpy arrays and torch tensors
(with grad, as a trainer has them) are sent as base64 and give the same
answers as lists; errors are raised as typed subclasses of FreshdError;
one Client shared by several threads."""

import os
import shutil
import subprocess
import sys
import tempfile
import threading

import numpy as np

from harness import run
from support import ApiCase, save_index

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


class InstalledClient(ApiCase):
    @classmethod
    def setUpClass(cls):
        cls.target = tempfile.mkdtemp(prefix="freshd-client-")
        build = tempfile.mkdtemp(prefix="freshd-client-src-")
        src = os.path.join(build, "python")
        shutil.copytree(os.path.join(ROOT, "clients", "python"), src,
                        ignore=shutil.ignore_patterns("examples", "__pycache__"))
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation",
                        "--no-deps", "--no-index", "--target", cls.target, src], check=True)
        shutil.rmtree(build, True)
        # The installed copy, not the source tree the harness put on the path.
        for name in [m for m in sys.modules if m == "freshd_client"]:
            del sys.modules[name]
        sys.path.insert(0, cls.target)
        import freshd_client
        cls.fc = freshd_client
        assert freshd_client.__file__.startswith(cls.target), freshd_client.__file__

    @classmethod
    def tearDownClass(cls):
        sys.path.remove(cls.target)
        shutil.rmtree(cls.target, True)

    def test_arrays_tensors_errors_threads(self):
        tmp = tempfile.mkdtemp(prefix="freshd-it-files-")
        self.addCleanup(shutil.rmtree, tmp, True)
        rng = np.random.default_rng(5)
        X = rng.standard_normal((500, 24)).astype(np.float32)
        ip, _ = save_index(tmp, X)
        d = self.start("--index", ip)
        c = self.fc.Client(d.url)
        Q = rng.standard_normal((3, 24)).astype(np.float32)
        want = c.search(Q.tolist(), k=5)
        self.assertEqual(c.search(Q, k=5), want)
        try:
            import torch
        except ImportError:
            torch = None
        if torch is not None:
            t = torch.from_numpy(Q.copy()).requires_grad_(True) * 1.0
            self.assertEqual(c.search(t, k=5), want)
            ack = c.update([0, 1], torch.from_numpy(X[:2].copy()).requires_grad_(True) * 1.0)
            self.assertEqual(ack["accepted"], 2)
        with self.assertRaises(self.fc.BadRequest) as e:
            c.search([1.0, 2.0], k=5)
        self.assertEqual(e.exception.status, 400)
        with self.assertRaises(self.fc.NotFound):
            c.target(999999)
        self.assertTrue(issubclass(self.fc.NotFound, self.fc.FreshdError))
        errors = []

        def worker(i):
            try:
                for _ in range(20):
                    if c.search(Q, k=5) != want:
                        errors.append(i)
            except Exception as ex:  # noqa: BLE001 - reported below
                errors.append(repr(ex))

        ts = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(errors, [])
        c.close()


if __name__ == "__main__":
    run()
