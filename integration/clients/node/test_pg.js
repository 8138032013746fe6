// node-postgres (`pg`) against a running Borealis cluster.
//
// Goal: a Node.js application written for PostgreSQL with node-postgres runs
// unmodified. Method: connect with the libpq environment that `pg` reads
// itself (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE), then one check
// per feature applications use: plain and parameterised queries, named
// prepared statements, a pool, transactions, error codes and type parsing.
// Every check runs; the script exits 1 if any failed.
// integration/tests/drivers.rs runs it against a fresh cluster.
'use strict';

process.env.TZ = 'UTC'; // pg parses date and timestamp columns in local time

const assert = require('node:assert/strict');
const { Client, Pool } = require('pg');

const checks = [];
const check = (name, fn) => checks.push({ name, fn });

async function withClient(fn) {
  const client = new Client({ connectionTimeoutMillis: 10000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function expectCode(promise, code) {
  try {
    await promise;
  } catch (error) {
    assert.equal(error.code, code, `expected SQLSTATE ${code}, got ${error.code}: ${error.message}`);
    return error;
  }
  assert.fail(`expected an error with SQLSTATE ${code}, got none`);
}

check('connects_and_queries', () => withClient(async (client) => {
  // An integer literal is int4 (oid 23) when it fits, int8 beyond: pg returns int8 as a string.
  const result = await client.query('SELECT 1 AS one, version() AS v, 2147483648 AS big');
  assert.equal(result.rows[0].one, 1);
  assert.match(result.rows[0].v, /^PostgreSQL/);
  assert.equal(result.rows[0].big, '2147483648');
  assert.deepEqual(result.fields.map((f) => f.name), ['one', 'v', 'big']);
  assert.deepEqual(result.fields.map((f) => f.dataTypeID), [23, 25, 20]);
  const multi = await client.query('SELECT 1 AS a; SELECT 1 + 1 AS b');
  assert.deepEqual(multi.map((r) => r.rows[0]), [{ a: 1 }, { b: 2 }]);
  // int4 arithmetic that overflows fails as in PostgreSQL.
  const overflow = await expectCode(client.query('SELECT 2147483647 + 1'), '22003');
  assert.equal(overflow.message, 'integer out of range');
}));

check('parameterised_queries', () => withClient(async (client) => {
  await client.query('CREATE TABLE node_items (id int PRIMARY KEY, name text NOT NULL, qty bigint)');
  for (let i = 1; i <= 20; i++) {
    const inserted = await client.query('INSERT INTO node_items VALUES ($1, $2, $3)', [i, `item ${i}`, i * 10]);
    assert.equal(inserted.rowCount, 1);
    assert.equal(inserted.command, 'INSERT');
  }
  const one = await client.query('SELECT name, qty FROM node_items WHERE id = $1', [7]);
  assert.deepEqual(one.rows, [{ name: 'item 7', qty: '70' }]); // int8 arrives as a string, as from PostgreSQL
  const range = await client.query('SELECT count(*)::int AS n FROM node_items WHERE id BETWEEN $1 AND $2 AND name LIKE $3',
    [5, 15, 'item 1%']);
  assert.equal(range.rows[0].n, 6);
  const updated = await client.query('UPDATE node_items SET qty = qty + $1 WHERE id > $2', [1, 18]);
  assert.equal(updated.rowCount, 2);
  const deleted = await client.query('DELETE FROM node_items WHERE id = $1 RETURNING name', [20]);
  assert.deepEqual(deleted.rows, [{ name: 'item 20' }]);
  const nulls = await client.query('SELECT id FROM node_items WHERE qty = $1', [null]);
  assert.equal(nulls.rowCount, 0);
  // Array mode, as query builders use it.
  const arrays = await client.query({ text: 'SELECT id, name FROM node_items WHERE id = $1', values: [2], rowMode: 'array' });
  assert.deepEqual(arrays.rows, [[2, 'item 2']]);
}));

check('named_prepared_statements', () => withClient(async (client) => {
  await client.query('CREATE TABLE node_prepared (id int PRIMARY KEY, v text)');
  for (let i = 0; i < 10; i++) {
    await client.query({ name: 'node_insert', text: 'INSERT INTO node_prepared VALUES ($1, $2)', values: [i, `v${i}`] });
  }
  for (let i = 0; i < 10; i++) {
    const result = await client.query({ name: 'node_select', text: 'SELECT v FROM node_prepared WHERE id = $1', values: [i] });
    assert.deepEqual(result.rows, [{ v: `v${i}` }]);
  }
}));

check('pool_runs_concurrent_clients', async () => {
  const pool = new Pool({ max: 4, connectionTimeoutMillis: 10000 });
  try {
    await pool.query('CREATE TABLE node_pool (id int PRIMARY KEY, worker int)');
    await Promise.all([0, 1, 2, 3].map(async (worker) => {
      for (let i = 0; i < 10; i++) {
        await pool.query('INSERT INTO node_pool VALUES ($1, $2)', [worker * 100 + i, worker]);
      }
    }));
    const result = await pool.query('SELECT worker, count(*)::int AS n FROM node_pool GROUP BY worker ORDER BY worker');
    assert.deepEqual(result.rows, [0, 1, 2, 3].map((worker) => ({ worker, n: 10 })));
  } finally {
    await pool.end();
  }
});

check('transactions', () => withClient(async (client) => {
  await client.query('CREATE TABLE node_tx (id int PRIMARY KEY, v text)');
  await client.query('BEGIN');
  await client.query('INSERT INTO node_tx VALUES ($1, $2)', [1, 'kept']);
  await client.query('COMMIT');
  await client.query('BEGIN');
  await client.query('INSERT INTO node_tx VALUES ($1, $2)', [2, 'dropped']);
  await client.query('ROLLBACK');
  // A failed statement aborts the block until ROLLBACK.
  await client.query('BEGIN');
  await client.query('INSERT INTO node_tx VALUES ($1, $2)', [3, 'lost']);
  await expectCode(client.query('INSERT INTO node_tx VALUES ($1, $2)', [1, 'duplicate']), '23505');
  await expectCode(client.query('SELECT 1'), '25P02');
  await client.query('ROLLBACK');
  const result = await client.query('SELECT id FROM node_tx ORDER BY id');
  assert.deepEqual(result.rows, [{ id: 1 }]);
  // Uncommitted rows are invisible to another client.
  await withClient(async (other) => {
    await client.query('BEGIN');
    await client.query('INSERT INTO node_tx VALUES (4, $1)', ['pending']);
    assert.equal((await other.query('SELECT count(*)::int AS n FROM node_tx')).rows[0].n, 1);
    await client.query('COMMIT');
    assert.equal((await other.query('SELECT count(*)::int AS n FROM node_tx')).rows[0].n, 2);
  });
}));

check('error_codes', () => withClient(async (client) => {
  await client.query('CREATE TABLE node_err (id int PRIMARY KEY, name text NOT NULL)');
  await client.query('INSERT INTO node_err VALUES (1, $1)', ['a']);
  const unique = await expectCode(client.query('INSERT INTO node_err VALUES ($1, $2)', [1, 'b']), '23505');
  assert.equal(unique.severity, 'ERROR');
  await expectCode(client.query('INSERT INTO node_err VALUES ($1, $2)', [2, null]), '23502');
  await expectCode(client.query('SELECT * FROM node_missing'), '42P01');
  await expectCode(client.query('SELECT * FROM node_missing WHERE id = $1', [1]), '42P01');
  await expectCode(client.query('SELECT nope FROM node_err'), '42703');
  await expectCode(client.query('SELEC 1'), '42601');
  await expectCode(client.query('SELECT 1 / 0'), '22012');
  await expectCode(client.query('INSERT INTO node_err VALUES ($1, $2)', ['x', 'y']), '22P02');
  assert.equal((await client.query('SELECT count(*)::int AS n FROM node_err')).rows[0].n, 1);
}));

check('types_parse', () => withClient(async (client) => {
  await client.query(`CREATE TABLE node_types (id int PRIMARY KEY, small smallint, big bigint, price numeric(10,2),
    ratio double precision, flag boolean, note text, day date, at timestamp)`);
  await client.query('INSERT INTO node_types VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)',
    [1, -5, '9007199254740993', '12.50', 0.25, true, 'ünïcødé', '2024-02-29', '2024-02-29 23:59:58.5']);
  const { rows } = await client.query('SELECT * FROM node_types');
  const row = rows[0];
  assert.equal(row.small, -5);
  assert.equal(row.big, '9007199254740993');
  assert.equal(row.price, '12.50');
  assert.equal(row.ratio, 0.25);
  assert.equal(row.flag, true);
  assert.equal(row.note, 'ünïcødé');
  assert.equal(row.day.toISOString(), '2024-02-29T00:00:00.000Z');
  assert.equal(row.at.toISOString(), '2024-02-29T23:59:58.500Z');
  // A JavaScript Date binds as a timestamp.
  const at = await client.query('SELECT count(*)::int AS n FROM node_types WHERE at < $1', [new Date('2025-01-01T00:00:00Z')]);
  assert.equal(at.rows[0].n, 1);
  const bytes = await client.query("SELECT decode('00ff', 'hex') AS b");
  assert.deepEqual(bytes.rows[0].b, Buffer.from([0, 255]));
}));

async function main() {
  let failed = 0;
  for (const { name, fn } of checks) {
    try {
      await fn();
      console.log(`ok   ${name}`);
    } catch (error) {
      failed += 1;
      console.log(`FAIL ${name}\n${error.stack}`);
    }
  }
  console.log(`${checks.length - failed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

main();
