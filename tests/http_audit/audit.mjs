// The GraphQL-over-HTTP specification's audit (graphql-http's auditServer) against a live
// server: `node audit.mjs http://127.0.0.1:PORT/graphql` prints one JSON line per audit
// ({id, name, status, reason?, status code and body of the response that failed it}).
import { auditServer } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs URL');
  process.exit(2);
}
const results = await auditServer({ url });
for (const result of results) {
  const line = { id: result.id, name: result.name, status: result.status };
  if (result.status !== 'ok') {
    line.reason = result.reason;
    line.responseStatus = result.response.status;
    try {
      line.responseBody = await result.response.text();
    } catch {
      line.responseBody = null; // read already by the audit
    }
  }
  console.log(JSON.stringify(line));
}
