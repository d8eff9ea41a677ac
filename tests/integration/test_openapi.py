"""GET /openapi.json stays true: it is server/openapi.json; every route in
the server's tables (server/routes.c, and the Qdrant subset's in
server/api_qdrant.c) is in it; every path and method in it is answered by
the daemon (not 404 or 405); API.md's examples validate against its
schemas; and a third-party OpenAPI 3 validator (pinned in tests/qdrant_js)
accepts it."""

import json
import os
import re
import subprocess
import unittest

from harness import HERE, run
from support import ApiCase, call

ROOT = os.path.join(HERE, "..", "..")
API_MD = os.path.join(ROOT, "..", "shared", "API.md")
JS = os.path.join(HERE, "..", "qdrant_js")


def load_doc():
    with open(os.path.join(ROOT, "server", "openapi.json")) as f:
        return json.load(f)


class Invalid(Exception):
    pass


def validate(doc, schema, value, path="$"):
    """The OpenAPI 3.0 schema subset server/openapi.json uses."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return validate(doc, doc["components"]["schemas"][name], value, path)
    if value is None:
        if schema.get("nullable") or not schema or (
                "enum" in schema and None in schema["enum"]):
            return
        if "type" in schema or "oneOf" in schema:
            raise Invalid("%s: null" % path)
        return
    if "oneOf" in schema:
        ok = 0
        for s in schema["oneOf"]:
            try:
                validate(doc, s, value, path)
                ok += 1
            except Invalid:
                pass
        if ok == 0:
            raise Invalid("%s: matches none of oneOf" % path)
        return
    t = schema.get("type")
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool}
    if t in kinds and not isinstance(value, kinds[t]):
        raise Invalid("%s: %r is not %s" % (path, value, t))
    if t == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        raise Invalid("%s: %r is not an integer" % (path, value))
    if t == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise Invalid("%s: %r is not a number" % (path, value))
    if "enum" in schema and value not in schema["enum"]:
        raise Invalid("%s: %r not in %r" % (path, value, schema["enum"]))
    if "minimum" in schema and value < schema["minimum"]:
        raise Invalid("%s: below %r" % (path, schema["minimum"]))
    if "maximum" in schema and value > schema["maximum"]:
        raise Invalid("%s: above %r" % (path, schema["maximum"]))
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", 1 << 62):
            raise Invalid("%s: %d items" % (path, len(value)))
        for i, v in enumerate(value):
            validate(doc, schema.get("items", {}), v, "%s[%d]" % (path, i))
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for k in schema.get("required", []):
            if k not in value:
                raise Invalid("%s.%s: missing" % (path, k))
        if len(value) > schema.get("maxProperties", 1 << 62):
            raise Invalid("%s: too many properties" % path)
        for k, v in value.items():
            if k in props:
                validate(doc, props[k], v, "%s.%s" % (path, k))
            elif schema.get("additionalProperties", True) is False:
                raise Invalid("%s.%s: not allowed" % (path, k))


def server_routes():
    """(method, OpenAPI path) of every route in the server's tables."""
    with open(os.path.join(ROOT, "server", "routes.c")) as f:
        http = f.read()
    with open(os.path.join(ROOT, "server", "api_qdrant.c")) as f:
        qdrant = f.read()
    routes = set()
    for path, prefix, method in re.findall(r'\{"(/[^"]*)", (true|false), "([A-Z*]+)"', http):
        if prefix == "true":
            if path == "/v1/targets/":
                routes.add((method, "/v1/targets/{id}"))
            elif path != "/collections/":
                raise AssertionError("a new prefix route %s: map it here" % path)
        else:
            routes.add((method, path))
    for rest, method in re.findall(r'strcmp\(rest, "([^"]*)"\) == 0 &&\s*strcmp\(m, "([A-Z]+)"\)',
                                   qdrant):
        routes.add((method, "/collections/{collection_name}" + rest))
    return routes


# API.md's examples, as it writes them ("..." included). API.md is the
# contract the project shares, kept beside the repository, not in it: where
# it is present, test_examples_are_api_mds checks these are still its text.
EXAMPLES = [
    ("POST", "/v1/search", "request",
     '{"vectors": [[0.1, 0.2, ...], ...], "k": 10, "exclude": [[17, 4], ...], '
     '"scoring": "corrected"}'),
    ("POST", "/v1/search", "200",
     '{"results": [[{"id": 42, "score": 12.5}, ...], ...], "corrector_version": 3}'),
    ("POST", "/v1/negatives", "request",
     '{"vectors": [[...], ...], "positives": [[17], ...], "n": 16, "method": "sample", '
     '"temperature": 1.0, "seed": 7}'),
    ("POST", "/v1/updates", "request",
     '{"targets": [{"id": 17, "vector": [...]}, ...], "queries": [{"vector": [...], '
     '"positive": 17}, ...], "step": 1200}'),
    ("POST", "/v1/updates", "202", '{"accepted": 2, "seq": 118, "buffered": 5400}'),
    ("POST", "/v1/refit", "202", '{"state": "training"}'),
    ("POST", "/v1/index/reload", "request", '{"path": "<file under the data dir>"}'),
    ("POST", "/v1/index/reload", "202", '{"state": "loading"}'),
    ("POST", "/v1/index/reload", "request", '{"path": "...", "ids_path": "..."}'),
    ("POST", "/v1/corrected", "request", '{"ids": [...]}'),
    ("GET", "/healthz", "200", '{"status":"ok"}'),
]


def clean(s):
    """An example with its elisions filled in, as JSON."""
    s = s.replace("[...]", "[1]").replace("{...}", "{}")
    s = re.sub(r",\s*\.\.\.", "", s)
    s = s.replace('"..."', '"x"')
    return json.loads(s)


def flat(text):
    return re.sub(r"\s+", " ", text)


class OpenAPI(ApiCase):
    def setUp(self):
        self.doc = load_doc()

    def test_served_document_is_the_file(self):
        d = self.start("--demo", "--demo-size", "1000", "--demo-dim", "8")
        r = call(d, "GET", "/openapi.json")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("Content-Type").startswith("application/json"))
        self.assertEqual(r.json(), self.doc)
        self.assertEqual(self.doc["openapi"], "3.0.3")

    def test_every_route_is_documented_and_answered(self):
        routes = server_routes()
        self.assertGreater(len(routes), 25)
        documented = {(m.upper(), p) for p, ops in self.doc["paths"].items() for m in ops}
        self.assertEqual(sorted(r for r in routes if r[0] != "*" and r not in documented), [],
                         "routes the server answers that openapi.json lacks")
        self.assertEqual(sorted(r for r in documented if r not in routes), [],
                         "documented routes the server's tables lack")
        # And the daemon answers each (not 404 no-such-route, not 405).
        d = self.start("--demo", "--demo-size", "1000", "--demo-dim", "8")
        for method, path in sorted(documented):
            url = path.replace("{id}", "1").replace("{collection_name}", "freshd")
            if method in ("POST", "PUT") and "checkpoint" not in url:
                body = {}
            else:
                body = None
            r = call(d, method, url, body)
            with self.subTest(route="%s %s" % (method, path)):
                self.assertNotEqual(r.status, 405, r)
                if r.status == 404:
                    self.assertNotIn(b"no such path", r.data)
                    self.assertNotIn(b"does not implement", r.data)

    def test_api_md_examples_validate(self):
        for method, path, kind, text in EXAMPLES:
            with self.subTest(endpoint="%s %s %s" % (method, path, kind)):
                op = self.doc["paths"][path][method.lower()]
                if kind == "request":
                    schema = op["requestBody"]["content"]["application/json"]["schema"]
                else:
                    schema = op["responses"][kind]["content"]["application/json"]["schema"]
                validate(self.doc, schema, clean(text))

    @unittest.skipUnless(os.path.exists(API_MD), "API.md is not beside this checkout")
    def test_examples_are_api_mds(self):
        with open(API_MD) as f:
            text = flat(f.read())
        for _, _, _, example in EXAMPLES:
            self.assertIn(flat(example), text)

    def test_schemas_refuse_what_the_server_refuses(self):
        """The validator is not vacuous: bodies the server answers 400 fail it."""
        req = lambda p: self.doc["paths"][p]["post"]["requestBody"]["content"][
            "application/json"]["schema"]
        for path, body in [("/v1/search", {"vectors": [[1.0]], "k": 0}),
                           ("/v1/search", {"vectors": [[1.0]], "colour": 1}),
                           ("/v1/negatives", {"vector": [1.0], "method": "best"}),
                           ("/v1/updates", {"targets": []}),
                           ("/v1/updates", {"step": 3}),
                           ("/collections/{collection_name}/points/query", {"limit": 3})]:
            with self.subTest(path=path, body=body):
                with self.assertRaises(Invalid):
                    validate(self.doc, req(path), body)

    def test_third_party_validator_accepts_it(self):
        if not os.path.isdir(os.path.join(JS, "node_modules")):
            self.fail("run `npm ci` in tests/qdrant_js (.ci/run does)")
        out = subprocess.run(["node", os.path.join(JS, "validate_openapi.mjs"),
                              os.path.join(ROOT, "server", "openapi.json")],
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)


if __name__ == "__main__":
    run()
