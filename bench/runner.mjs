// node-pg-migrate's programmatic runner() in this process, timed after the imports, reported as one JSON line.
//
// node runner.mjs DIR [--dry-run] [--no-single-transaction], with DATABASE_URL set. The options are
// what `node-pg-migrate up` passes by default (schema public, check order, one transaction for all
// pending migrations), minus its logging. Every client.query() is counted: one round trip each.
import { performance } from "node:perf_hooks";
import { runner } from "node-pg-migrate";
import pg from "pg";

const [dir, ...flags] = process.argv.slice(2);
let queries = 0;
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function countedQuery(...args) {
  queries += 1;
  return query.apply(this, args);
};
const quiet = { debug() {}, info() {}, warn() {}, error: console.error };

const started = performance.now();
const run = await runner({
  databaseUrl: process.env.DATABASE_URL,
  dir,
  direction: "up",
  migrationsTable: "pgmigrations",
  schema: "public",
  checkOrder: true,
  singleTransaction: !flags.includes("--no-single-transaction"),
  dryRun: flags.includes("--dry-run"),
  logger: quiet,
});
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ seconds, applied: run.length, round_trips: queries }));
