// PostGraphile 5 (amber preset) over the bench database: bench.run's second baseline.
// One Node process, read-only transactions (default_transaction_read_only on every pooled
// connection), schemas `public` (Laurel's tables) and `bench_pg5` (bench/ranking.py's
// functions), no GraphiQL, no watch mode, NODE_ENV=production (set by bench/pg5.py).
// Environment: BENCH_PG5_DSN, BENCH_PG5_PORT, BENCH_PG5_POOL_SIZE.
import { createServer } from "node:http";
import { postgraphile } from "postgraphile";
import { makePgService } from "postgraphile/adaptors/pg";
import { grafserv } from "postgraphile/grafserv/node";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";

const preset = {
  extends: [PostGraphileAmberPreset],
  pgServices: [
    makePgService({
      connectionString: process.env.BENCH_PG5_DSN,
      schemas: ["public", "bench_pg5"],
      poolConfig: {
        max: Number(process.env.BENCH_PG5_POOL_SIZE || "10"),
        options: "-c default_transaction_read_only=on",
      },
    }),
  ],
  grafserv: { graphqlPath: "/graphql", graphiql: false, watch: false },
  grafast: { explain: false },
};

const pgl = postgraphile(preset);
const serv = pgl.createServ(grafserv);
const handler = serv.createHandler();
const server = createServer((req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end('{"status":"ok"}');
    return;
  }
  handler(req, res);
});
// Build the schema before answering /healthz's callers with anything but a refusal.
await pgl.getSchema();
server.listen(Number(process.env.BENCH_PG5_PORT), "127.0.0.1");
const stop = () => server.close(() => pgl.release().then(() => process.exit(0)));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
