// A scripted session of Qdrant's official JavaScript client against a
// freshd: node session.mjs URL COLLECTION QUERIES.json [API_KEY]
//
// Runs the session with each pinned client this Node can run (1.19 needs
// fetch and undici 7: Node >= 20; 1.18 runs on 18) and prints one JSON
// object: per client, what every call returned or the error it raised.
// tests/integration/test_qdrant.py checks it against freshd's /v1 API.
import { readFileSync } from "node:fs";

const [url, collection, queriesFile, apiKey] = process.argv.slice(2);
const queries = JSON.parse(readFileSync(queriesFile, "utf8"));
const major = Number(process.versions.node.split(".")[0]);
const versions = major >= 20 ? ["1.19", "1.18"] : ["1.18"];

// What a call raised, as the client reports it.
function failure(e) {
  return { error: true, status: e.status ?? null, data: e.data ?? null,
           message: String(e.message) };
}

async function attempt(fn) {
  try {
    return await fn();
  } catch (e) {
    return failure(e);
  }
}

async function session(version) {
  const { QdrantClient } = await import(`qdrant-js-${version}`);
  const warnings = [];
  const warn = console.warn;
  console.warn = (...a) => warnings.push(a.join(" "));
  const opts = { url, checkCompatibility: true };
  if (apiKey) opts.apiKey = apiKey;
  const client = new QdrantClient(opts);
  const out = { version };
  // The constructor's version check runs in the background: the first
  // call waits for it by making its own.
  out.collections = await attempt(() => client.getCollections());
  out.exists = await attempt(() => client.collectionExists(collection));
  out.exists_other = await attempt(() => client.collectionExists("no-such-collection"));
  out.info = await attempt(() => client.getCollection(collection));
  out.missing = await attempt(() => client.getCollection("no-such-collection"));
  if (typeof client.query === "function") {
    out.query = [];
    for (const q of queries)
      out.query.push(await attempt(() => client.query(collection, { query: q, limit: 5 })));
    out.query_nearest = await attempt(() => client.query(collection, {
      query: { nearest: queries[0] }, limit: 3, offset: 2, with_payload: true }));
    out.query_batch = await attempt(() => client.queryBatch(collection, {
      searches: queries.map((q, i) => ({ query: q, limit: 1 + i })) }));
    out.query_stale = await attempt(() => client.query(collection, {
      query: queries[0], using: "stale", limit: 5 }));
    out.query_by_id = await attempt(() => client.query(collection, { query: 7, limit: 3 }));
    out.query_filter = await attempt(() => client.query(collection, {
      query: queries[0], filter: { must: [{ key: "city", match: { value: "x" } }] } }));
  }
  if (typeof client.search === "function") {
    out.search = [];
    for (const q of queries)
      out.search.push(await attempt(() => client.search(collection, { vector: q, limit: 5 })));
  }
  out.retrieve = await attempt(() => client.retrieve(collection, { ids: [1, 2, 99999999],
                                                                   with_vector: true }));
  out.upsert = await attempt(() => client.upsert(collection, { wait: true, points: [
    { id: 3, vector: queries[0] }, { id: 4, vector: queries[1] }] }));
  out.upsert_batch = await attempt(() => client.upsert(collection, { wait: true, batch: {
    ids: [5], vectors: [queries[0]] } }));
  out.upsert_payload = await attempt(() => client.upsert(collection, { wait: true, points: [
    { id: 3, vector: queries[0], payload: { city: "Berlin" } }] }));
  out.upsert_unknown = await attempt(() => client.upsert(collection, { wait: true, points: [
    { id: 99999999, vector: queries[0] }] }));
  out.upsert_uuid = await attempt(() => client.upsert(collection, { wait: true, points: [
    { id: "5c56c793-69f3-4fbf-87e6-c4bf54c28c26", vector: queries[0] }] }));
  console.warn = warn;
  out.warnings = warnings.filter((w) => !w.includes("unsecure connection"));
  return out;
}

const results = [];
for (const v of versions) results.push(await session(v));
process.stdout.write(JSON.stringify({ node: process.versions.node, results }) + "\n");
