"""The README's walk-through on the demo corpus, as a test: a search, fresh
embeddings posted for 2% of the targets, a refit, the same search answered
by a newer corrector that agrees far better with the new encoder."""

import unittest

from harness import Daemon, run


class DemoWalkthrough(unittest.TestCase):
    def test_correction_recovers_fresh_neighbours(self):
        with Daemon("--demo", "--demo-size", "20000") as d:
            c = d.client
            queries = c.demo_fresh(list(range(7, 20000, 997)))
            truth = [[h["id"] for h in r] for r in c.demo_truth(queries, k=10)["results"]]

            def recall(answer):
                got = [[h["id"] for h in r] for r in answer["results"]]
                return sum(len(set(a) & set(b)) for a, b in zip(got, truth)) / (10.0 * len(truth))

            before = c.search(queries, k=10)
            self.assertEqual(before["corrector_version"], 0)
            ids = list(range(0, 20000, 50))  # 2% of the targets
            vecs = c.demo_fresh(ids)
            ack = c.update(ids, vecs)
            self.assertEqual(ack["accepted"], len(ids))
            out = c.refit(wait=True)
            self.assertTrue(out["accepted"], out)
            self.assertEqual(out["version"], 1)
            self.assertLess(out["holdout"]["corrected_mse"], 0.2 * out["holdout"]["stale_mse"])
            after = c.search(queries, k=10)
            self.assertEqual(after["corrector_version"], 1)
            self.assertNotEqual(before["results"], after["results"])
            self.assertLess(recall(before), 0.5)
            self.assertGreater(recall(after), 0.8)
            # Stale scoring is still available and unchanged.
            stale = c.search(queries, k=10, scoring="stale")
            self.assertEqual(stale["results"], before["results"])


if __name__ == "__main__":
    run()
