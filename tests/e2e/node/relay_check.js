// Runs a fixed node-postgres session against the server named in PG* env vars and prints what it saw as JSON.
'use strict';

const { Client } = require('pg');

function summary(result) {
  return {
    command: result.command,
    rowCount: result.rowCount,
    fields: result.fields.map((f) => [f.name, f.dataTypeID]),
    rows: result.rows,
  };
}

function failure(err) {
  return { code: err.code, message: err.message, constraint: err.constraint, table: err.table };
}

async function attempt(steps, name, run) {
  try {
    steps.push([name, summary(await run())]);
  } catch (err) {
    steps.push([name, failure(err)]);
  }
}

async function main() {
  const client = new Client();
  await client.connect();
  const steps = [];
  await attempt(steps, 'create', () => client.query(
    'CREATE TABLE node_items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2), ' +
    'tags jsonb, blob bytea, seen timestamptz)'));
  for (let i = 1; i <= 5; i++) {
    await attempt(steps, `insert ${i}`, () => client.query(
      'INSERT INTO node_items VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, name',
      [i, `item ${i} é`, i === 3 ? null : i * 1.5, { n: i, list: [i, 'x'] },
        Buffer.from([0, i, 255]), '2024-01-02T03:04:05Z']));
  }
  await attempt(steps, 'select params', () => client.query(
    'SELECT id, name, price, tags, encode(blob, \'hex\') AS blob, seen::text FROM node_items ' +
    'WHERE id >= $1 AND name LIKE $2 ORDER BY id', [2, 'item%']));
  for (let i = 1; i <= 3; i++) {
    await attempt(steps, `named ${i}`, () => client.query({
      name: 'by_id', text: 'SELECT name FROM node_items WHERE id = $1', values: [i],
    }));
  }
  await attempt(steps, 'array mode', () => client.query({
    text: 'SELECT $1::int + $2::int AS sum, $3::text IS NULL AS is_null',
    values: [40, 2, null], rowMode: 'array',
  }));
  await attempt(steps, 'unique violation', () => client.query(
    'INSERT INTO node_items (id, name) VALUES ($1, $2)', [1, 'dup']));
  await attempt(steps, 'bad param', () => client.query('SELECT $1::int', ['not a number']));
  await attempt(steps, 'update', () => client.query(
    'UPDATE node_items SET price = price * $1 WHERE id <> $2', [2, 4]));
  await attempt(steps, 'begin', () => client.query('BEGIN'));
  await attempt(steps, 'insert in tx', () => client.query(
    'INSERT INTO node_items (id, name) VALUES ($1, $2)', [10, 'ten']));
  await attempt(steps, 'error in tx', () => client.query('SELECT 1 / $1::int', [0]));
  await attempt(steps, 'after error', () => client.query('SELECT 1'));
  await attempt(steps, 'rollback', () => client.query('ROLLBACK'));
  await attempt(steps, 'count', () => client.query('SELECT count(*)::int AS n FROM node_items'));
  await attempt(steps, 'delete', () => client.query('DELETE FROM node_items WHERE id = ANY($1)', [[1, 2]]));
  await attempt(steps, 'drop', () => client.query('DROP TABLE node_items'));
  await client.end();
  process.stdout.write(JSON.stringify(steps) + '\n');
}

main().catch((err) => {
  process.stderr.write(`relay_check: ${err.stack}\n`);
  process.exit(1);
});
