// Retrying an occproxy version conflict with node-postgres: re-read, re-apply, at most 3 attempts.
//
// Usage: node retry_node.js CONNECTION_URL ACCOUNT_ID AMOUNT [THINK_SECONDS]
// Adds AMOUNT to accounts.balance of ACCOUNT_ID through occproxy. THINK_SECONDS stands for the
// time a user spends between seeing a value and saving a change (default 0).
'use strict';
const { Client } = require('pg');

const ATTEMPTS = 3;
const BASE_DELAY_MS = 50; // doubles at each retry
const MAX_DELAY_MS = 1000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Exponential backoff with full jitter: a random wait in [0, BASE_DELAY_MS * 2^(attempt-1)].
const backoff = (attempt) => sleep(Math.random() * Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** (attempt - 1)));

// One attempt: read the row, decide, write, in one transaction.
async function deposit(client, accountId, amount, thinkMs) {
  await client.query('BEGIN');
  try {
    const { rows } = await client.query('SELECT balance FROM accounts WHERE id = $1', [accountId]);
    const balance = rows[0].balance;
    console.log(`read balance ${balance}`);
    await sleep(thinkMs);
    await client.query('UPDATE accounts SET balance = $1 WHERE id = $2', [balance + amount, accountId]);
    await client.query('COMMIT');
    return balance + amount;
  } catch (e) {
    await client.query('ROLLBACK');
    throw e;
  }
}

async function main() {
  const [url, accountId, amount] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
  const thinkMs = 1000 * Number(process.argv[5] || 0);
  const client = new Client({ connectionString: url });
  await client.connect();
  let last;
  try {
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      console.log(`attempt ${attempt}`);
      try {
        const balance = await deposit(client, accountId, amount, thinkMs);
        console.log(`saved: balance is now ${balance}`);
        return 0;
      } catch (e) {
        // occproxy reports a stale write as serialization_failure (SQLSTATE 40001, conflict_sqlstate).
        if (e.code !== '40001') throw e;
        last = e;
        console.log(`conflict: ${e.detail}`);
        if (attempt < ATTEMPTS) await backoff(attempt);
      }
    }
  } finally {
    await client.end();
  }
  // Out of retries: say what happened and that nothing was saved; the DBA finds the diff in the
  // proxy's GET /conflicts (and its audit log).
  console.error(`Your deposit of ${amount} to account ${accountId} was not saved: the account was changed ` +
                `by someone else ${ATTEMPTS} times while we were saving it. ${last.detail} ` +
                'Please look at the current balance and try again.');
  return 1;
}

main().then((status) => { process.exitCode = status; }, (e) => { console.error(e); process.exitCode = 2; });
