// The GraphQL Foundation's GraphQL-over-HTTP audit (graphql-http's auditServer) against a running
// server: prints every check, then the counts; exits non-zero on any error (failed MUST), warning
// (failed SHOULD) or notice (failed MAY).
//
// usage: node audit-http.mjs http://127.0.0.1:PORT/graphql

import { auditServer } from 'graphql-http';

const url = process.argv[2] ?? process.env.GRAPHQL_URL;
if (!url) {
  console.error('usage: node audit-http.mjs <url of the GraphQL endpoint>');
  process.exit(2);
}

const results = await auditServer({ url });
const counts = { ok: 0, notice: 0, warn: 0, error: 0 };
const mark = { ok: 'ok    ', notice: 'NOTICE', warn: 'WARN  ', error: 'ERROR ' };
for (const result of results) {
  counts[result.status] += 1;
  console.log(`${mark[result.status]} ${result.id} ${result.name}`);
  if (result.status !== 'ok') {
    let body = '';
    try {
      body = await result.response.text();
    } catch {
      // the body was already read by the check
    }
    const type = result.response.headers.get('content-type');
    console.log(`       ${result.reason}`);
    console.log(`       answered ${result.response.status} ${type ?? '(no content-type)'} ${body}`);
  }
}
console.log(
  `graphql-http audit of ${url}: ${results.length} checks, ${counts.ok} ok, ` +
    `${counts.error} errors, ${counts.warn} warnings, ${counts.notice} notices`,
);
process.exit(counts.error + counts.warn + counts.notice === 0 ? 0 : 1);
