-- The occ helper schema: the conflict log and the functions that rewritten statements call.
CREATE SCHEMA IF NOT EXISTS occ;

-- Application roles call these functions from inside their own statements.
GRANT USAGE ON SCHEMA occ TO PUBLIC;

CREATE TABLE IF NOT EXISTS occ.conflict_log (
  id bigserial PRIMARY KEY,
  at timestamptz DEFAULT now(),
  kind text,
  table_name text,
  key jsonb,
  expected text,
  current text,
  username text,
  application_name text,
  client_addr text,
  fingerprint text,
  diff jsonb,
  record jsonb
);

-- The row's key as the audit wants it: {"id": 42}.
CREATE OR REPLACE FUNCTION occ.key_json(cur_row jsonb, key_columns jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $fn$
  SELECT coalesce(jsonb_object_agg(k.col, cur_row -> k.col), '{}'::jsonb)
  FROM jsonb_array_elements_text(key_columns) AS k(col)
$fn$;

-- The row's key the way PostgreSQL prints one in its own messages: (a, b)=(1, x).
CREATE OR REPLACE FUNCTION occ.key_text(cur_row jsonb, key_columns jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $fn$
  SELECT coalesce('(' || string_agg(quote_ident(k.col), ', ' ORDER BY k.ord) || ')=('
                  || string_agg(coalesce(cur_row ->> k.col, 'null'), ', ' ORDER BY k.ord) || ')', '()')
  FROM jsonb_array_elements_text(key_columns) WITH ORDINALITY AS k(col, ord)
$fn$;

-- The row with the columns listed in meta "redact" blanked: events also reach the server log.
CREATE OR REPLACE FUNCTION occ.redacted(cur_row jsonb, columns jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $fn$
  SELECT cur_row || coalesce((SELECT jsonb_object_agg(c, '<redacted>')
                              FROM jsonb_array_elements_text(coalesce(columns, '[]'::jsonb)) AS c
                              WHERE cur_row ? c), '{}'::jsonb)
$fn$;

-- Hands one event to the proxy as a WARNING with SQLSTATE OC000; the proxy audits it and never
-- shows it to the client.
CREATE OR REPLACE FUNCTION occ.emit(event jsonb) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
  level text := current_setting('client_min_messages');
BEGIN
  -- A client that silenced warnings must not silence the audit: lift the level for this one
  -- message only (transaction-local, restored at once).
  IF level = 'error' THEN
    PERFORM set_config('client_min_messages', 'warning', true);
  END IF;
  RAISE WARNING USING ERRCODE = 'OC000', MESSAGE = event::text;
  IF level = 'error' THEN
    PERFORM set_config('client_min_messages', level, true);
  END IF;
END
$fn$;

-- The columns of the current row whose value differs from what the writer read (meta base),
-- in table order. The base values arrive as text; they are typed through the table's row type
-- so that they compare with to_jsonb(row) whatever the column types.
CREATE OR REPLACE FUNCTION occ.changed_columns(cur_row jsonb, meta jsonb) RETURNS text[]
LANGUAGE plpgsql AS $fn$
DECLARE
  base jsonb := meta -> 'base';
  typed jsonb;
BEGIN
  BEGIN
    EXECUTE format('SELECT to_jsonb(jsonb_populate_record(NULL::%I.%I, $1))', meta ->> 'schema', meta ->> 'table')
      INTO typed USING base;
  EXCEPTION WHEN OTHERS THEN
    typed := base;
  END;
  RETURN ARRAY(
    SELECT a.attname::text
    FROM pg_attribute a
    WHERE a.attrelid = format('%I.%I', meta ->> 'schema', meta ->> 'table')::regclass
      AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attname::text <> meta ->> 'version_column'
      AND base ? a.attname::text
      AND typed -> a.attname::text IS DISTINCT FROM cur_row -> a.attname::text
    ORDER BY a.attnum);
END
$fn$;

-- Called in place of the new version when the row's version is not the expected one.
-- meta: {"schema", "table", "key": [columns], "version_column", "sqlstate", "mode", "op", "base"},
-- and "redact": [columns] when the table has any.
-- enforce: raises the conflict error; shadow: lets the write through with `next`.
CREATE OR REPLACE FUNCTION occ.conflict(cur anycompatible, expected anycompatible, next anycompatible,
                                        cur_row jsonb, meta text) RETURNS anycompatible
LANGUAGE plpgsql AS $fn$
DECLARE
  m jsonb := meta::jsonb;
  shadow boolean := m ->> 'mode' = 'shadow';
  changed text[];
  detail text;
BEGIN
  PERFORM occ.emit(jsonb_build_object(
    'event', CASE WHEN shadow THEN 'shadow_conflict' ELSE 'conflict' END,
    'schema', m -> 'schema',
    'table', m -> 'table',
    'key', occ.key_json(cur_row, m -> 'key'),
    'expected', expected::text,
    'current', cur::text,
    'current_row', occ.redacted(cur_row, m -> 'redact'),
    'op', m -> 'op',
    'base', m -> 'base'));
  IF shadow THEN
    RETURN conflict.next;
  END IF;
  IF jsonb_typeof(m -> 'base') = 'object' THEN
    changed := occ.changed_columns(cur_row, m);
    IF cardinality(changed) = 0 THEN
      detail := format('Current version is %s. No column differs from your read.', cur);
    ELSE
      detail := format('Current version is %s. Changed since your read: %s.', cur, array_to_string(changed, ', '));
    END IF;
  ELSE
    detail := format('Current version is %s; the row was changed after version %s.', cur,
                     coalesce(expected::text, 'NULL'));
  END IF;
  RAISE EXCEPTION USING
    ERRCODE = m ->> 'sqlstate',
    MESSAGE = format('occ: version conflict on %s.%s %s: expected version %s, current version %s',
                     m ->> 'schema', m ->> 'table', occ.key_text(cur_row, m -> 'key'),
                     coalesce(expected::text, 'NULL'), coalesce(cur::text, 'NULL')),
    DETAIL = detail,
    HINT = 'Re-read the row and retry the transaction. A role listed in force.allowed_roles can override with /*occ:force*/.',
    SCHEMA = m ->> 'schema',
    TABLE = m ->> 'table',
    CONSTRAINT = 'occ_version';
END
$fn$;

-- A forced write (/*occ:force*/ from an allowed role): reports the version it overwrites.
CREATE OR REPLACE FUNCTION occ.forced_event(cur text, cur_row jsonb, meta text) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
  m jsonb := meta::jsonb;
BEGIN
  PERFORM occ.emit(jsonb_build_object(
    'event', 'forced_write',
    'schema', m -> 'schema',
    'table', m -> 'table',
    'key', occ.key_json(cur_row, m -> 'key'),
    'expected', NULL,
    'current', cur,
    'current_row', occ.redacted(cur_row, m -> 'redact'),
    'op', m -> 'op',
    'base', m -> 'base'));
END
$fn$;

-- version_bump: trigger: the version stays as it is and the bump trigger advances it.
CREATE OR REPLACE FUNCTION occ.forced(cur anyelement, cur_row jsonb, meta text) RETURNS anyelement
LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM occ.forced_event(cur::text, cur_row, meta);
  RETURN cur;
END
$fn$;

-- version_bump: proxy, or a statement that sets the version itself: the row gets `next`.
CREATE OR REPLACE FUNCTION occ.forced(cur anycompatible, cur_row jsonb, meta text, next anycompatible)
RETURNS anycompatible
LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM occ.forced_event(cur::text, cur_row, meta);
  RETURN forced.next;
END
$fn$;

-- Raises the error the proxy refused a statement with, at that statement's place in the message.
CREATE OR REPLACE FUNCTION occ.reject(sqlstate text, message text, detail text, hint text, schema_name text,
                                      table_name text) RETURNS boolean
LANGUAGE plpgsql AS $fn$
BEGIN
  RAISE EXCEPTION USING
    ERRCODE = reject.sqlstate,
    MESSAGE = reject.message,
    DETAIL = coalesce(reject.detail, ''),
    HINT = coalesce(reject.hint, ''),
    SCHEMA = coalesce(reject.schema_name, ''),
    TABLE = coalesce(reject.table_name, '');
END
$fn$;
