"""Splits an index into id ranges, one part per shard of `freshd --shards`.

    /usr/bin/python3 clients/python/examples/split_index.py --parts 3 \
        index.npy [--ids ids.npy] OUTDIR

writes OUTDIR/part-0.npy, OUTDIR/part-0_ids.npy, ... : part i holds the
rows whose ids are the i-th range of the sorted ids (equal counts), so
that each shard serves one contiguous id range. Rows are read through a
memory map, one part at a time, in row order within a part; the float32
values are copied as they are (the shards' answers then equal one daemon's
over the whole index, bit for bit).
"""

import argparse
import os

import numpy as np


def split(index_path, ids_path, parts, outdir, chunk=65536):
    x = np.load(index_path, mmap_mode="r")
    if x.ndim != 2 or x.dtype != np.float32:
        raise SystemExit("%s: expected float32 N x d, found %s %s"
                         % (index_path, x.dtype, x.shape))
    n = x.shape[0]
    ids = np.load(ids_path) if ids_path else np.arange(n, dtype=np.uint64)
    if ids.shape != (n,):
        raise SystemExit("%s: %d ids for %d rows" % (ids_path, len(ids), n))
    ids = ids.astype(np.uint64)
    order = np.argsort(ids, kind="stable")
    if n > 1 and np.any(ids[order[1:]] == ids[order[:-1]]):
        raise SystemExit("%s: ids are not unique" % ids_path)
    os.makedirs(outdir, exist_ok=True)
    for p, rows in enumerate(np.array_split(order, parts)):
        rows = np.sort(rows)  # row order: sequential reads of the map
        out = np.lib.format.open_memmap(os.path.join(outdir, "part-%d.npy" % p),
                                        mode="w+", dtype=np.float32,
                                        shape=(len(rows), x.shape[1]))
        for i in range(0, len(rows), chunk):
            out[i:i + chunk] = x[rows[i:i + chunk]]
        out.flush()
        del out
        np.save(os.path.join(outdir, "part-%d_ids.npy" % p), ids[rows])
        lo, hi = (ids[rows].min(), ids[rows].max()) if len(rows) else (0, 0)
        print("part-%d: %d rows, ids %d..%d" % (p, len(rows), lo, hi))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=int, required=True)
    ap.add_argument("--ids", help=".npy of ids (default 0..N-1)")
    ap.add_argument("index")
    ap.add_argument("outdir")
    a = ap.parse_args()
    if a.parts < 1:
        raise SystemExit("--parts: at least 1")
    split(a.index, a.ids, a.parts, a.outdir)


if __name__ == "__main__":
    main()
