// An agent and billing on node-postgres, no version in any SQL, the table set to on_conflict: merge or
// reject: prints what the agent saw as JSON.
'use strict';

const { Client } = require('pg');

async function main() {
  const agent = new Client({ application_name: 'agent' });
  const billing = new Client({ application_name: 'billing' });
  await agent.connect();
  await billing.connect();
  const out = {};
  const read = await agent.query({ text: 'SELECT * FROM subscriptions WHERE id = $1', values: [42], rowMode: 'array' });
  out.read = read.rows;
  const paused = await billing.query({ text: 'UPDATE subscriptions SET status = $1 WHERE id = $2', values: ['paused', 42] });
  out.billing = `${paused.command} ${paused.rowCount}`;
  try {
    const write = await agent.query({ text: 'UPDATE subscriptions SET notes = $1 WHERE id = $2', values: ['agent note', 42] });
    out.agent = `${write.command} ${write.rowCount}`;
  } catch (err) {
    out.agent = { code: err.code, message: err.message, detail: err.detail };
  }
  out.after = (await billing.query({ text: 'SELECT status, notes, version FROM subscriptions WHERE id = 42', rowMode: 'array' }))
    .rows;
  await agent.end();
  await billing.end();
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  process.stderr.write(`merge: ${err.stack}\n`);
  process.exit(1);
});
