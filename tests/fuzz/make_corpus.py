#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz harnesses: tests/fuzz/corpus/<name>/.

Deterministic: the same files on every run (so that they can be committed
and regenerated). A few small valid inputs per parser, and a few invalid
ones close to valid (truncated, wrong field, bad checksum). Usage:

    python3 tests/fuzz/make_corpus.py [OUTDIR]   (default: next to this file)
"""
import base64
import json
import os
import shutil
import struct
import sys

M64 = (1 << 64) - 1

# --- CRC-32C (Castagnoli), as core/crc32c.c --------------------------------
_CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


# --- the fingerprint hash, as core/hash.c -----------------------------------
P1 = 0x9E3779B185EBCA87
P2 = 0xC2B2AE3D27D4EB4F


def _rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M64


def _mix64(x):
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    x ^= x >> 31
    return x


def fingerprint(data):
    lane = [(P1 + P2) & M64, P2, 0, (-P1) & M64]
    full = len(data) // 32 * 32
    for off in range(0, full, 32):
        for k in range(4):
            (w,) = struct.unpack_from("<Q", data, off + 8 * k)
            acc = (lane[k] + w * P2) & M64
            lane[k] = (_rotl(acc, 31) * P1) & M64
    acc = (_rotl(lane[0], 1) + _rotl(lane[1], 7) + _rotl(lane[2], 12) +
           _rotl(lane[3], 18)) & M64
    for b in data[full:]:
        acc = _mix64(acc ^ b)
    return _mix64(acc ^ len(data))


# --- formats -----------------------------------------------------------------
def f32(values):
    return struct.pack("<%df" % len(values), *values)


def npy(descr, shape, data=b"", version=1, fortran=False, extra=""):
    shape_s = "(" + "".join("%d," % s for s in shape) + ")"
    if len(shape) > 1:
        shape_s = "(" + ", ".join(str(s) for s in shape) + ")"
    d = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, %s}" % (
        descr, "True" if fortran else "False", shape_s, extra)
    pre = 10 if version == 1 else 12
    total = (pre + len(d) + 1 + 63) // 64 * 64
    d = d + " " * (total - pre - len(d) - 1) + "\n"
    if version == 1:
        head = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d))
    else:
        head = b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(d))
    return head + d.encode() + data


def matrix(n, d, base=0.0):
    return [base + 0.5 * i - 0.25 * j for i in range(n) for j in range(d)]


def fvecs(rows):
    out = b""
    for r in rows:
        out += struct.pack("<i", len(r)) + f32(r)
    return out


def snapshot(n, d, ids, vectors):
    vec = f32(vectors)
    idb = struct.pack("<%dQ" % n, *ids)
    fp = fingerprint(struct.pack("<QQ", n, d) + vec + idb)
    head = b"FRESHIDX" + struct.pack("<IIQQQ", 1, 0, n, d, fp)
    head += b"\0" * (64 - len(head))
    return head + idb + vec


def checkpoint(kind, act, d_in, d_out, hidden, params, normalize=0,
               version=3, through=17, holdout=None, fresh=None):
    """fresh: (ids, rows) of served fresh rows, which make it format 2."""
    body = b"FRSHCKPT" + struct.pack("<IIII", 2 if fresh else 1, kind, act,
                                     normalize)
    body += struct.pack("<QQQQQQ", d_in, d_out, hidden, version, through,
                        len(params))
    body += f32(params)
    if fresh:
        ids, rows = fresh
        body += struct.pack("<Q%dQ" % len(ids), len(ids), *ids) + f32(rows)
    if holdout is None:  # the held-out block: absent is all zero
        body += bytes(48)
    else:
        n, stale_mse, mse, stale_rel, rel = holdout
        body += struct.pack("<IIQdddd", 3, 0, n, stale_mse, mse, stale_rel, rel)
    return body + struct.pack("<I", crc32c(body))


def layout_total(kind, d_in, d_out, hidden):
    if kind == 0:
        return 0
    return d_out * d_in + d_out + hidden * d_in + hidden + d_out * hidden


def record(ids, vectors, dim, positives=(), queries=(), step=None):
    t, q = len(ids), len(positives)
    head = struct.pack("<BBHIIIq", 1, 1 if step is not None else 0, 0, t, q,
                       dim, step or 0)
    body = head + struct.pack("<%dQ" % t, *ids)
    body += struct.pack("<%dQ" % q, *positives)
    body += f32(vectors) + f32(queries)
    return body + b"\0" * (-len(body) % 8)


def clear_record():
    return struct.pack("<BBHIIIq", 2, 0, 0, 0, 0, 0, 0)


def expire_record(min_step):
    return struct.pack("<BBHIIIq", 3, 0, 0, 0, 0, 0, min_step)


def wal_segment(first, payloads, prev_len=0, reserved=0):
    """reserved: the harness takes after_seq from its low 3 bits."""
    head = b"FRSHWAL1" + struct.pack("<QQI", first, prev_len, reserved)
    head += struct.pack("<I", crc32c(head))
    out = head
    for i, p in enumerate(payloads):
        seq = first + i
        crc = crc32c(p, crc32c(struct.pack("<Q", seq)))
        out += struct.pack("<IIQ", len(p), crc, seq) + p
    return out


def pairs_file(dim, entries, through=9, total=None, fp=0x1234, cap=3):
    head = b"FRSHPAIR" + struct.pack("<II", 1, cap)
    head += struct.pack("<QQQQQ", through, len(entries) if total is None
                        else total, fp, dim, len(entries))
    body = head
    for (ident, step, seq, g) in entries:
        body += struct.pack("<QqQQ", ident, step or 0, seq,
                            0 if step is None else 1)
        body += f32(g)
    return body + struct.pack("<I", crc32c(body))


# --- the corpora ---------------------------------------------------------------
def corpora():
    c = {}
    v23 = f32(matrix(2, 3))
    c["npy"] = {
        "f32_2x3": npy("<f4", (2, 3), v23),
        "i8_vector": npy("<i8", (4,), struct.pack("<4q", 5, 6, 7, 8)),
        "v2_header": npy("<f4", (1, 2), f32([1, 2]), version=2),
        "v3_scalar": npy("<u8", (), version=3),
        "fortran": npy("<f4", (2, 2), f32([1, 2, 3, 4]), fortran=True),
        "long_suffix": npy("<f4", (2, 3), v23).replace(b"(2, 3)", b"(2L,3L)"),
        "bad_magic": b"\x93NUMPX\x01\x00" + npy("<f4", (1, 1))[8:],
        "bad_version": b"\x93NUMPY\x04\x00" + npy("<f4", (1, 1))[8:],
        "truncated": npy("<f4", (2, 3))[:30],
        "unknown_key": npy("<f4", (2,), extra="'x': 1,"),
        "dup_key": npy("<f4", (2,), extra="'descr': '<f8',"),
        "escape": npy("<f4", (2,)).replace(b"'<f4'", b"'<\\f4'"),
        "nine_dims": npy("<f4", (1,) * 9),
        "huge_shape": npy("<f4", (2 ** 40, 2 ** 40)),
    }

    sep = b"\n--ids--\n"
    m34 = matrix(3, 4)
    good_npy = npy("<f4", (3, 4), f32(m34))
    good_fvecs = fvecs([m34[0:4], m34[4:8], m34[8:12]])
    ids_i8 = npy("<i8", (3,), struct.pack("<3q", 10, 20, 30))
    ids_u8 = npy("<u8", (3,), struct.pack("<3Q", 2 ** 63 + 1, 7, 0))
    c["index"] = {
        "npy_3x4": good_npy,
        "npy_3x4_ids": good_npy + sep + ids_i8,
        "npy_3x4_uids": good_npy + sep + ids_u8,
        "npy_dup_ids": good_npy + sep + npy("<i8", (3,),
                                             struct.pack("<3q", 1, 2, 1)),
        "npy_neg_id": good_npy + sep + npy("<i8", (3,),
                                            struct.pack("<3q", 1, -2, 3)),
        "npy_ids_short": good_npy + sep + npy("<i8", (2,),
                                               struct.pack("<2q", 1, 2)),
        "npy_nan": npy("<f4", (1, 2), f32([1.0, float("nan")])),
        "npy_trailing": good_npy + b"\0\0\0\0",
        "npy_truncated": good_npy[:-4],
        "npy_f8": npy("<f8", (1, 1), struct.pack("<d", 1.0)),
        "npy_1d": npy("<f4", (3,), f32([1, 2, 3])),
        "npy_empty": npy("<f4", (0, 4)),
        "npy_fortran": npy("<f4", (2, 2), f32([1, 2, 3, 4]), fortran=True),
        "npy_shape_overflow": npy("<f4", (2 ** 62, 16)),
        "npy_10_rows_ids": npy("<f4", (10, 2), f32(matrix(10, 2))) + sep +
        npy("<u8", (10,), struct.pack("<10Q", *[1000 * i + 7
                                                 for i in range(10)])),
        "npy_ids_2d": good_npy + sep + npy("<i8", (3, 1),
                                           struct.pack("<3q", 1, 2, 3)),
        "npy_ids_f4": good_npy + sep + npy("<f4", (3,), f32([1, 2, 3])),
        "fvecs_3x4": good_fvecs,
        "fvecs_dim_too_big": struct.pack("<i", 16385) + f32([0.0] * 4),
        "fvecs_3x4_ids": good_fvecs + sep + ids_u8,
        "fvecs_mixed_dims": fvecs([[1.0, 2.0], [3.0]]),
        "fvecs_neg_dim": struct.pack("<i", -1) + f32([1]),
        "fvecs_inf": fvecs([[1.0, float("inf")]]),
        "snapshot": snapshot(3, 4, [9, 4, 100], m34),
        "snapshot_seq": snapshot(2, 2, [0, 1], [1, 2, 3, 4]),
        "snapshot_bad_fp": snapshot(2, 2, [5, 6], [1, 2, 3, 4])[:32] +
        b"\1" * 8 + snapshot(2, 2, [5, 6], [1, 2, 3, 4])[40:],
        "snapshot_dup": snapshot(2, 2, [5, 5], [1, 2, 3, 4]),
        "snapshot_ids": snapshot(3, 4, [9, 4, 100], m34) + sep + ids_i8,
    }

    affine = checkpoint(1, 0, 2, 2, 0,
                        [0.5] * layout_total(1, 2, 2, 0))
    mlp = checkpoint(2, 1, 2, 3, 2,
                     [0.125 * i for i in range(layout_total(2, 2, 3, 2))],
                     normalize=1)
    bad_crc = bytearray(affine)
    bad_crc[-1] ^= 0xFF
    nan = checkpoint(1, 0, 1, 1, 0, [float("nan"), 0.0])
    c["corrector"] = {
        "none": checkpoint(0, 0, 4, 4, 0, []),
        "affine": affine,
        "affine_rect": checkpoint(1, 0, 3, 2, 0,
                                  [1.0] * layout_total(1, 3, 2, 0)),
        "mlp_gelu": mlp,
        "affine_holdout": checkpoint(1, 0, 2, 2, 0,
                                     [0.25] * layout_total(1, 2, 2, 0),
                                     holdout=(40, 1.5, 0.25, 0.75, 0.125)),
        "bad_crc": bytes(bad_crc),
        "nan_param": nan,
        "none_rect": checkpoint(0, 0, 4, 3, 0, []),
        "mlp_no_hidden": checkpoint(2, 0, 2, 2, 0, [0.0] * 6),
        "wrong_count": checkpoint(1, 0, 2, 2, 0, [0.0] * 5),
        "bad_kind": checkpoint(7, 0, 2, 2, 0, [0.0] * 6),
        "truncated": affine[:40],
        "mlp_fresh_rows": checkpoint(
            2, 0, 2, 3, 2, [0.25] * layout_total(2, 2, 3, 2),
            fresh=([4, 9], [0.5, -1.0, 2.0, 0.0, 1.5, -0.25])),
        "fresh_rows_unsorted": checkpoint(
            2, 0, 2, 3, 2, [0.25] * layout_total(2, 2, 3, 2),
            fresh=([9, 4], [0.5, -1.0, 2.0, 0.0, 1.5, -0.25])),
        "fresh_rows_affine": checkpoint(
            1, 0, 2, 2, 0, [0.5] * layout_total(1, 2, 2, 0),
            fresh=([1], [1.0, 2.0])),
    }

    upd = record([1, 2], matrix(2, 3), 3)
    upd_q = record([7], [1.0, 2.0, 3.0], 3, positives=[7],
                   queries=[0.5, 0.5, 0.5], step=42)
    c["record"] = {
        "update": upd,
        "update_queries_step": upd_q,
        "update_odd_pad": record([3], [1.0], 1),
        "clear": clear_record(),
        "clear_long": clear_record() + b"\0" * 8,
        "expire": expire_record(-5),
        "expire_long": expire_record(9) + b"\0" * 8,
        "bad_type": b"\x03" + upd[1:],
        "bad_flags": upd[:1] + b"\x02" + upd[2:],
        "no_targets": record([], [], 3),
        "huge_dim": struct.pack("<BBHIIIq", 1, 0, 0, 1, 0, 2 ** 31, 0),
        "truncated": upd[:-8],
        "overlong": upd + b"\0" * 8,
    }

    rec3 = [record([i], [float(i), 1.0], 2, step=i) for i in (1, 2, 3)]
    good = wal_segment(1, rec3)
    corrupt_mid = bytearray(good)
    corrupt_mid[32 + 16 + 3] ^= 0x40
    bad_seq = wal_segment(1, rec3[:1])
    bad_seq += struct.pack("<IIQ", len(rec3[1]),
                           crc32c(rec3[1], crc32c(struct.pack("<Q", 5))),
                           5) + rec3[1]
    segsep = b"\n--segment--\n"
    seg1 = wal_segment(1, rec3[:2])
    c["wal"] = {
        "two_segments": seg1 + segsep + wal_segment(3, rec3[2:],
                                                    prev_len=len(seg1)),
        "two_segments_vouch_less": seg1 + segsep +
        wal_segment(2, rec3[1:], prev_len=len(seg1) - len(rec3[1]) - 16),
        "two_segments_gap": seg1 + segsep + wal_segment(5, rec3[2:]),
        "two_segments_torn_first": seg1[:-5] + segsep +
        wal_segment(3, rec3[2:], prev_len=len(seg1)),
        "two_segments_empty_second": seg1 + segsep + wal_segment(3, []),
        "three_records": good,
        "after_seq_2": wal_segment(1, rec3, reserved=2),
        "after_seq_past_end": wal_segment(1, rec3[:2], reserved=4),
        "after_seq_gap": wal_segment(3, rec3[:2], reserved=1),
        "header_only": wal_segment(1, []),
        "with_clear": wal_segment(1, [clear_record(), rec3[0],
                                      expire_record(2)]),
        "odd_payload": wal_segment(1, [b"abc", b"", rec3[0]]),
        "torn_tail": good[:-10],
        "torn_header": good[:40],
        "short_file": good[:20],
        "corrupt_middle": bytes(corrupt_mid),
        "corrupt_last": good[:-1] + bytes([good[-1] ^ 1]),
        "out_of_order": bad_seq,
        "wrong_first": wal_segment(2, rec3[:1]),
        "bad_header_crc": good[:28] + b"\0\0\0\0" + good[32:],
        "huge_length": wal_segment(1, []) + struct.pack("<IIQ", 2 ** 31, 0,
                                                        1),
    }

    g = [[0.5, 1.5], [2.5, 3.5], [4.5, 5.5], [6.5, 7.5]]
    c["pairs_file"] = {
        "two": pairs_file(2, [(1, 5, 1, g[0]), (2, None, 2, g[1])]),
        "evicting": pairs_file(2, [(i, i, i, g[i]) for i in range(4)], cap=1),
        "replacing": pairs_file(2, [(1, 5, 1, g[0]), (1, 3, 2, g[1]),
                                    (1, None, 3, g[2]), (1, 9, 4, g[3])]),
        "empty": pairs_file(3, []),
        "width_4": pairs_file(4, [(7, 1, 1, [1.0, 2.0, 3.0, 4.0])]),
        "bad_crc": pairs_file(2, [(1, 5, 1, g[0])])[:-1] + b"\0",
        "count_too_big": pairs_file(2, [(1, 5, 1, g[0])])[:48] +
        struct.pack("<Q", 2 ** 60) + pairs_file(2, [(1, 5, 1, g[0])])[56:],
        "bad_format": pairs_file(2, [])[:8] + b"\2" +
        pairs_file(2, [])[9:],
        "truncated": pairs_file(2, [(1, 5, 1, g[0])])[:50],
    }

    def b64(vals):
        return base64.b64encode(f32(vals)).decode()

    def js(obj):
        return json.dumps(obj).encode()

    c["parse"] = {
        "search": js({"vector": [1, 2.5, -3, 0], "k": 5,
                      "scoring": "stale"}),
        "search_batch": js({"vectors": [[1, 2, 3, 4], [0, 0, 0, 1e-3]],
                            "k": 3, "exclude": [[1, 2], []]}),
        "search_b64": js({"vector_b64": b64([1, 2, 3, 4])}),
        "search_b64_batch": js({"vectors_b64": [b64([1, 2, 3, 4]),
                                                b64([0, 0, 0, 0])]}),
        "negatives": js({"vector": [1, 1, 1, 1], "n": 8, "method": "gumbel",
                         "temperature": 0.5, "seed": 7}),
        "updates": js({"targets": [{"id": 3, "vector": [1, 2, 3, 4]},
                                   {"id": 18446744073709551615,
                                    "vector_b64": b64([4, 3, 2, 1])}],
                       "queries": [{"positive": 3,
                                    "vector": [0, 1, 0, 1]}],
                       "step": 100}),
        "ids": js({"ids": [0, 9223372036854775807, 9223372036854775808,
                           18446744073709551616]}),
        "big_numbers": b'{"vector": [1e39, -0, 1E-50, 123456789012345678901],'
                       b' "k": 99999999999999999999}',
        "escapes": b'{"scoring": "co\\u0072rected", "a\\"b": "\\\\", '
                   b'"vector": [1,2,3,4]}',
        "nul_in_string": b'{"method": "topk\\u0000x", "vector": "AAAA"}',
        "duplicate_key": b'{"k": 1, "k": 2}',
        "deep": b'{"a":' + b"[" * 40 + b"]" * 40 + b"}",
        "not_object": b"[1, 2, 3]",
        "empty_newline": b" \n",
        "truncated": b'{"vector": [1, 2',
        "bad_b64": js({"vector_b64": "AAAA=AAA"}),
        "conflict": js({"vector": [1, 2, 3, 4], "vectors": [[1, 2, 3, 4]]}),
    }

    c["base64"] = {
        "empty": b"",
        "one_pad": b"AAE=",
        "two_pad": b"AA==",
        "no_pad": b"AQID",
        "float32": base64.b64encode(f32([1.0, -2.5, 3.25, 0.0])),
        "nonzero_pad_bits": b"AB==",
        "pad_in_middle": b"AA==AAAA",
        "pad_then_char": b"AA=A",
        "bad_char": b"AA-A",
        "short": b"AAA",
        "all_pad": b"====",
        "url_safe": b"-_-_",
    }
    return c


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus")
    for name, files in sorted(corpora().items()):
        d = os.path.join(out, name)
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)
        for fname, data in sorted(files.items()):
            with open(os.path.join(d, fname), "wb") as f:
                f.write(data)
        print("%s: %d files" % (name, len(files)))


if __name__ == "__main__":
    main()
