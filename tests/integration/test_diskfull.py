"""A full disk, for real: the data dir on a 1 MiB tmpfs (needs root to
mount; CI runs as root). Updates that cannot be logged are 503
insufficient_storage, never 202, and keep nothing; searches, negatives and
the corrector's state go on answering; a refit whose checkpoint cannot be
written leaves the published corrector serving; when space returns,
updates and refits work again without a restart; after a restart every
acknowledged update is there. And a daemon started on a disk that is
already full serves what is there, refusing only what needs space. An mlp
refit under --store bf16 whose h(S) cannot be written is refused."""

import os
import shutil
import subprocess
import tempfile
import unittest

import numpy as np

from harness import run
from support import ApiCase, call, index_args, save_index

N, D = 10000, 32
IN_CI = os.environ.get("CI") == "true"


def fill(path):
    """Writes zeros to path until the filesystem is full."""
    with open(path, "wb", buffering=0) as f:
        for chunk in (64 * 1024, 4096):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                pass


@unittest.skipUnless(os.geteuid() == 0 or IN_CI, "mounting a tmpfs needs root")
class DiskFull(ApiCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="freshd-it-files-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.mnt = os.path.join(self.tmp, "small")
        os.mkdir(self.mnt)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", self.mnt], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", self.mnt])
        rng = np.random.default_rng(1)
        self.X = rng.standard_normal((N, D)).astype("<f4")
        self.ipath, _ = save_index(self.tmp, self.X)
        self.data = os.path.join(self.mnt, "data")
        self.next_id = 0
        self.acked = {}

    def daemon(self):
        return self.start(*index_args(self.ipath), "--corrector", "affine", "--min-pairs", "16",
                          "--refit-every-pairs", "0", "--refit-every-seconds", "0",
                          "--sync", "always", data_dir=self.data)

    def update(self, d, count=32):
        """One update of count new ids; its status."""
        ids = list(range(self.next_id, self.next_id + count))
        self.next_id += count
        G = (self.X[ids] * 1.3 + 0.2).astype("<f4")
        r = call(d, "POST", "/v1/updates",
                 {"targets": [{"id": i, "vector": g.tolist()} for i, g in zip(ids, G)]})
        if r.status == 202:
            for i, g in zip(ids, G):
                self.acked[i] = g
        return r

    def serving(self, d):
        q = self.X[:2].tolist()
        self.assertEqual(call(d, "POST", "/v1/search", {"vectors": q, "k": 5}).status, 200)
        self.assertEqual(call(d, "POST", "/v1/negatives",
                              {"vectors": q, "n": 4, "method": "sample", "seed": 1}).status, 200)
        self.assertEqual(call(d, "GET", "/v1/corrector").status, 200)

    def fill_with_updates(self, d):
        """Updates until the log cannot take one: that answer."""
        for _ in range(5000):
            r = self.update(d)
            if r.status != 202:
                return r
        self.fail("the 1 MiB disk never filled")

    def check_all_acked(self, d):
        for i, g in sorted(self.acked.items()):
            t = d.client.target(i)
            self.assertIsNotNone(t["fresh"], "acknowledged update of %d lost" % i)
            self.assertEqual(np.asarray(t["fresh"], "<f4").tobytes(), g.tobytes(), i)

    def test_full_then_space_returns(self):
        d = self.daemon()
        filler = os.path.join(self.mnt, "filler")
        with open(filler, "wb") as f:
            f.write(b"\0" * (256 * 1024))
        for _ in range(3):
            self.assertEqual(self.update(d).status, 202)
        self.assertTrue(d.client.refit(wait=True)["accepted"])
        version = d.client.corrector()["version"]
        r = self.fill_with_updates(d)
        self.assertError(r, 503, "insufficient_storage", "No space left on device")
        self.assertTrue(r.header("Retry-After"))
        total = d.client.corrector()["pairs"]["total"]
        # Full: the refused update kept nothing, reads go on.
        self.assertError(self.update(d), 503, "insufficient_storage")
        self.assertEqual(d.client.corrector()["pairs"]["total"], total)
        self.serving(d)
        # A refit whose checkpoint cannot be written publishes nothing.
        r = call(d, "POST", "/v1/refit?wait=true")
        self.assertIn(r.status, (200, 503), r)
        if r.status == 200:
            self.assertFalse(r.json()["accepted"], r)
        self.assertEqual(d.client.corrector()["version"], version)
        self.serving(d)
        # Space returns: updates and refits work again, no restart.
        os.unlink(filler)
        self.assertEqual(self.update(d).status, 202)
        self.assertEqual(self.update(d).status, 202)
        out = d.client.refit(wait=True)
        self.assertTrue(out["accepted"], out)
        self.assertGreater(d.client.corrector()["version"], version)
        d.stop()
        d2 = self.daemon()
        self.check_all_acked(d2)
        self.serving(d2)

    def test_start_on_a_full_disk(self):
        d = self.daemon()
        for _ in range(4):
            self.assertEqual(self.update(d).status, 202)
        self.assertTrue(d.client.refit(wait=True)["accepted"])
        version = d.client.corrector()["version"]
        d.stop()
        filler = os.path.join(self.mnt, "filler")
        fill(filler)
        d2 = self.daemon()  # recovery needs no free space
        self.serving(d2)
        self.assertEqual(d2.client.corrector()["version"], version)
        self.check_all_acked(d2)
        self.assertError(self.update(d2), 503, "insufficient_storage")
        os.unlink(filler)
        self.assertEqual(self.update(d2).status, 202)
        d2.stop()
        d3 = self.daemon()
        self.check_all_acked(d3)

    def test_mlp_h_of_s_that_the_disk_cannot_hold(self):
        """--store bf16 keeps an mlp corrector's h(S) in float32 in a file in
        the data dir (1.2 MiB here, on a 1 MiB disk): the refit is refused
        up front, naming what it needs and what is free; the published
        corrector goes on serving, and nothing is left on the disk."""
        d = self.start(*index_args(self.ipath), "--store", "bf16", "--corrector", "mlp",
                       "--hidden", "8", "--min-pairs", "16", "--refit-every-pairs", "0",
                       "--refit-every-seconds", "0", data_dir=self.data)
        for _ in range(4):
            self.assertEqual(self.update(d).status, 202)
        before = sorted(os.listdir(self.data))
        r = d.client.refit(wait=True)
        self.assertFalse(r["accepted"], r)
        self.assertIn("h(S) in float32 needs 1.22 MiB of disk", r["reason"])
        self.assertIn("are free", r["reason"])
        self.assertEqual(d.client.corrector()["version"], 0)
        self.serving(d)
        self.assertEqual(sorted(os.listdir(self.data)), before)

    def test_mlp_restart_on_a_full_disk(self):
        """A bf16 daemon whose mlp corrector was fitted restarts on a disk
        that has since filled: h(S) cannot get its file, so it is kept in
        float32 in memory (said in the log), and the answers are the
        same."""
        mnt = os.path.join(self.tmp, "medium")
        os.mkdir(mnt)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", mnt])
        data = os.path.join(mnt, "data")
        args = (*index_args(self.ipath), "--store", "bf16", "--corrector", "mlp", "--hidden", "8",
                "--min-pairs", "16", "--refit-every-pairs", "0", "--refit-every-seconds", "0")
        d = self.start(*args, data_dir=data)
        for _ in range(4):
            self.assertEqual(self.update(d).status, 202)
        self.assertTrue(d.client.refit(wait=True)["accepted"])
        self.assertEqual(d.client.info()["memory"]["model_bytes"], N * (D * 2 + 4))
        q = self.X[:3] + 0.1
        want = d.client.search(q, k=20)
        d.stop()
        fill(os.path.join(mnt, "filler"))
        d2 = self.start(*args, data_dir=data)
        self.assertEqual(d2.client.corrector()["version"], 1)
        self.assertEqual(d2.client.info()["memory"]["model_bytes"], N * D * 4)
        self.assertEqual(d2.client.search(q, k=20), want)
        self.serving(d2)
        self.assertIn("keeping h(S) in float32 in memory", d2.stop())


if __name__ == "__main__":
    run()
