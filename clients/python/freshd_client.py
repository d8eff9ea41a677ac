"""A Python client for freshd (standard library only; numpy optional).

    from freshd_client import Client
    c = Client("http://127.0.0.1:8080")
    hits = c.search([0.1, 0.2, ...], k=10)["results"][0]

numpy arrays and torch tensors are sent as base64 float32 (fast, exact);
lists as JSON numbers. Every error the server answers raises FreshdError
(as its subclass for the status: BadRequest, NotFound, Unavailable, ...),
which carries the HTTP status, the API's error code and its message. One
Client may be shared by a trainer's threads: each thread keeps its own
kept-alive connection.
"""

import base64
import http.client
import json
import struct
import threading
import urllib.parse

try:  # numpy is optional
    import numpy as _np
except ImportError:  # pragma: no cover - exercised without numpy
    _np = None

__all__ = ["Client", "QueryMap", "FreshdError", "BadRequest", "Unauthorized", "NotFound", "Conflict",
           "Unavailable"]


class QueryMap:
    """An affine corrector moved to the query side: for a stale vector s,
    <q, h(s)> = <W^T q, s> + <q, b>. transform_queries(Q) gives the W^T q
    a store of stale vectors is searched with, and offsets(Q) the <q, b>
    added to every score of q (a constant per query: it does not change
    the ranking). Lists of floats without numpy; numpy arrays with it."""

    def __init__(self, reply):
        self.version = reply["version"]
        self.kind = reply["kind"]
        self.d_in, self.d_out = reply["d_in"], reply["d_out"]

        def floats(b64):
            raw = base64.b64decode(b64)
            return list(struct.unpack("<%df" % (len(raw) // 4), raw))
        w, b = floats(reply["w_b64"]), floats(reply["b_b64"])
        if _np is not None:
            self.W = _np.asarray(w, _np.float32).reshape(self.d_out, self.d_in)
            self.b = _np.asarray(b, _np.float32)
        else:
            self.W = [w[i * self.d_in:(i + 1) * self.d_in] for i in range(self.d_out)]
            self.b = b

    def transform_queries(self, Q):
        """W^T q for each query (rows of Q, width d_out) -> width d_in."""
        Q = _plain(Q)
        if _np is not None:
            Q = _np.asarray(Q, _np.float32)
            return Q @ self.W if Q.ndim == 2 else self.W.T @ Q
        rows = Q if Q and isinstance(Q[0], (list, tuple)) else [Q]
        out = [[sum(q[i] * self.W[i][j] for i in range(self.d_out)) for j in range(self.d_in)]
               for q in rows]
        return out if rows is Q else out[0]

    def offsets(self, Q):
        """<q, b> for each query."""
        Q = _plain(Q)
        if _np is not None:
            return _np.asarray(Q, _np.float32) @ self.b
        rows = Q if Q and isinstance(Q[0], (list, tuple)) else [Q]
        out = [sum(a * c for a, c in zip(q, self.b)) for q in rows]
        return out if rows is Q else out[0]


class FreshdError(Exception):
    """An error answer: .status (HTTP), .code (API code), .message.
    Raised as the subclass for its status, so callers can catch BadRequest,
    NotFound, Unavailable (retry after .retry_after seconds), ..."""

    def __init__(self, status, code, message, retry_after=None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class BadRequest(FreshdError):
    """400 or 413: the request is malformed; the message names the field."""


class Unauthorized(FreshdError):
    """401 or 403: a missing or wrong API key."""


class NotFound(FreshdError):
    """404: an unknown target id or route."""


class Conflict(FreshdError):
    """409: e.g. another reload runs, or a checkpoint of another shape."""


class Unavailable(FreshdError):
    """503: not ready, overloaded, or the log cannot take updates now."""


_ERRORS = {400: BadRequest, 413: BadRequest, 401: Unauthorized, 403: Unauthorized,
           404: NotFound, 409: Conflict, 503: Unavailable}


def _is_array(x):
    return _np is not None and isinstance(x, _np.ndarray)


def _plain(x):
    """A torch tensor (any device, any grad state) as a numpy array;
    anything else unchanged. Duck-typed: torch is not imported."""
    if hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy"):
        return x.detach().cpu().numpy()
    return x


def _b64(vec):
    if _is_array(vec):
        data = _np.ascontiguousarray(vec, dtype="<f4").tobytes()
    else:
        data = struct.pack("<%df" % len(vec), *vec)
    return base64.b64encode(data).decode("ascii")


def _vectors_field(vectors):
    """The request fields for one or many query vectors."""
    vectors = _plain(vectors)
    if _is_array(vectors):
        if vectors.ndim == 1:
            return {"vector_b64": _b64(vectors)}
        return {"vectors_b64": [_b64(v) for v in vectors]}
    vectors = list(vectors)
    if vectors and isinstance(vectors[0], (int, float)):
        return {"vector": [float(x) for x in vectors]}
    return {"vectors": [[float(x) for x in v] for v in vectors]}


def _vector_item(vec):
    vec = _plain(vec)
    if _is_array(vec):
        return {"vector_b64": _b64(vec)}
    return {"vector": [float(x) for x in vec]}


def _ids(ids):
    return [int(i) for i in ids]


class Client:
    """One freshd server. Thread-safe: each thread keeps its own connection."""

    def __init__(self, url="http://127.0.0.1:8080", api_key=None, timeout=120.0):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http":
            raise ValueError("freshd speaks plain http: " + url)
        self.host = parsed.hostname
        self.port = parsed.port or 80
        self.api_key = api_key
        self.timeout = timeout
        self._local = threading.local()

    # -- transport --------------------------------------------------------
    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def close(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def request(self, method, path, body=None, raw=None, content_type=None):
        """Sends a request; returns the decoded JSON (or bytes for raw replies)."""
        headers = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        elif raw is not None:
            data = raw
            headers["Content-Type"] = content_type or "application/octet-stream"
        if self.api_key:
            headers["Authorization"] = "Bearer " + self.api_key
        for attempt in range(2):
            conn = self._conn()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A kept-alive connection the server closed: retry once, fresh.
                self.close()
                if attempt:
                    raise
        ctype = resp.getheader("Content-Type", "")
        if resp.status >= 400:
            try:
                err = json.loads(payload)["error"]
                code, message = err["code"], err["message"]
            except (ValueError, KeyError, TypeError):
                code, message = "http_error", payload.decode("utf-8", "replace")
            retry = resp.getheader("Retry-After")
            raise _ERRORS.get(resp.status, FreshdError)(
                resp.status, code, message, int(retry) if retry and retry.isdigit() else None)
        if ctype.startswith("application/json"):
            return json.loads(payload)
        if ctype.startswith("text/"):
            return payload.decode("utf-8")
        return payload

    # -- probes and state -------------------------------------------------
    def healthz(self):
        return self.request("GET", "/healthz")

    def readyz(self):
        return self.request("GET", "/readyz")

    def metrics(self):
        return self.request("GET", "/metrics")

    def info(self):
        return self.request("GET", "/v1/info")

    def corrector(self):
        return self.request("GET", "/v1/corrector")

    def target(self, target_id):
        return self.request("GET", "/v1/targets/%d" % int(target_id))

    def corrected(self, ids):
        return self.request("POST", "/v1/corrected", {"ids": _ids(ids)})

    # -- retrieval --------------------------------------------------------
    def search(self, vectors, k=10, exclude=None, scoring="corrected"):
        """Top-k for one vector or many; {"results": [[{id, score}]], ...}."""
        body = _vectors_field(vectors)
        body["k"] = int(k)
        body["scoring"] = scoring
        if exclude is not None:
            body["exclude"] = [_ids(e) for e in exclude]
        return self.request("POST", "/v1/search", body)

    def negatives(self, vectors, positives=None, n=16, method="topk",
                  temperature=1.0, seed=None, exclude=None, scoring="corrected"):
        """Hard negatives per query (method "topk" or "sample")."""
        body = _vectors_field(vectors)
        body.update({"n": int(n), "method": method,
                     "temperature": float(temperature), "scoring": scoring})
        if positives is not None:
            body["positives"] = [_ids(p) for p in positives]
        if exclude is not None:
            body["exclude"] = [_ids(e) for e in exclude]
        if seed is not None:
            body["seed"] = int(seed)
        return self.request("POST", "/v1/negatives", body)

    # -- training updates -------------------------------------------------
    def update(self, ids, vectors, queries=None, positives=None, step=None):
        """Posts fresh embeddings of targets ids (and optional queries with
        the id of their positive). Returns {"accepted", "seq", "buffered"}."""
        ids = _ids(ids)
        vectors = _plain(vectors)
        if len(ids) != len(vectors):
            raise ValueError("ids and vectors differ in length")
        body = {"targets": [dict(id=i, **_vector_item(v)) for i, v in zip(ids, vectors)]}
        if queries is not None:
            if positives is None or len(positives) != len(queries):
                raise ValueError("give one positive per query")
            body["queries"] = [dict(positive=int(p), **_vector_item(q))
                               for q, p in zip(queries, positives)]
        if step is not None:
            body["step"] = int(step)
        return self.request("POST", "/v1/updates", body)

    def clear_pairs(self):
        return self.request("DELETE", "/v1/pairs")

    # -- the corrector ----------------------------------------------------
    def refit(self, wait=False, rows_only=False):
        """Trains a new corrector on the buffered pairs (wait: answer when
        done). rows_only (a daemon with --serve-fresh-rows): no training,
        publish the buffered fresh rows with the serving network."""
        args = [a for a, on in (("wait=true", wait), ("rows_only=true", rows_only)) if on]
        return self.request("POST", "/v1/refit" + ("?" + "&".join(args) if args else ""))

    def reset(self):
        return self.request("POST", "/v1/corrector/reset")

    def checkpoint(self):
        return self.request("GET", "/v1/corrector/checkpoint")

    def put_checkpoint(self, data, force=False):
        path = "/v1/corrector/checkpoint" + ("?force=true" if force else "")
        return self.request("PUT", path, raw=bytes(data))

    def query_map(self):
        """The published corrector as a map of queries, when it is affine:
        a QueryMap with W (d_out x d_in), b (d_out) and the version. Raises
        Conflict (code not_affine) for an MLP or normalized corrector."""
        return QueryMap(self.request("GET", "/v1/corrector/query-map"))

    def reload(self, path, ids_path=None):
        body = {"path": path}
        if ids_path is not None:
            body["ids_path"] = ids_path
        return self.request("POST", "/v1/index/reload", body)

    # -- the demo corpus (--demo only) ------------------------------------
    def demo_fresh(self, ids):
        """The demo's new-encoder embeddings of targets ids."""
        return self.request("POST", "/v1/demo/fresh", {"ids": _ids(ids)})["vectors"]

    def demo_truth(self, vectors, k=10):
        body = _vectors_field(vectors)
        body["k"] = int(k)
        return self.request("POST", "/v1/demo/truth", body)
