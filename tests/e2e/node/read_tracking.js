// An agent and billing on node-postgres named statements, no version in any SQL: prints what the agent saw as JSON.
'use strict';

const { Client } = require('pg');

const READ = { name: 'read_subscription', text: 'SELECT * FROM subscriptions WHERE id = $1', rowMode: 'array' };
const READ_STATUS = {
  name: 'read_status', text: 'SELECT status, notes FROM subscriptions WHERE id = $1', rowMode: 'array',
};
const WRITE = { name: 'write_notes', text: 'UPDATE subscriptions SET notes = $1 WHERE id = $2' };
const SET_STATUS = { name: 'set_status', text: 'UPDATE subscriptions SET status = $1 WHERE id = $2' };

function shape(result) {
  return {
    fields: result.fields.map((f) => `${f.name}:${f.dataTypeID}`),
    rows: result.rows.map((row) => row.length),
  };
}

async function main() {
  const rounds = Number(process.argv[2]);
  const agent = new Client({ application_name: 'agent' });
  const billing = new Client({ application_name: 'billing' });
  await agent.connect();
  await billing.connect();
  const out = { rounds: [], shapes: {} };
  // Rows 101.. succeed: billing's changes land before the agent's read, or the agent reads again after them.
  for (let i = 1; i <= rounds; i++) {
    const id = 100 + i;
    const read = await agent.query({ ...READ, values: [id] });
    out.shapes.star = shape(read);
    if (i % 2 === 0) {
      await billing.query({ ...SET_STATUS, values: [`billed ${i}`, id] });
      const again = await agent.query({ ...READ_STATUS, values: [id] });
      out.shapes.status = shape(again);
    }
    const write = await agent.query({ ...WRITE, values: [`note ${i}`, id] });
    out.rounds.push(`${write.command} ${write.rowCount}`);
  }
  // The lost update: billing changes row 42 between the agent's read and its write.
  const read = await agent.query({ ...READ, values: [42] });
  out.read42 = read.rows;
  const paused = await billing.query({ ...SET_STATUS, values: ['paused', 42] });
  out.billing = `${paused.command} ${paused.rowCount}`;
  try {
    const write = await agent.query({ ...WRITE, values: ['agent note', 42] });
    out.stale = `${write.command} ${write.rowCount}`;
  } catch (err) {
    out.stale = {
      code: err.code, message: err.message, detail: err.detail, hint: err.hint,
      schema: err.schema, table: err.table, constraint: err.constraint,
    };
  }
  out.after = (await billing.query({ text: 'SELECT status, notes FROM subscriptions WHERE id = 42', rowMode: 'array' }))
    .rows;
  // The session goes on: the retry the hint asks for.
  const reread = await agent.query({ ...READ, values: [42] });
  out.reread42 = reread.rows;
  const retry = await agent.query({ ...WRITE, values: ['agent note', 42] });
  out.retry = `${retry.command} ${retry.rowCount}`;
  await agent.end();
  await billing.end();
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  process.stderr.write(`read_tracking: ${err.stack}\n`);
  process.exit(1);
});
