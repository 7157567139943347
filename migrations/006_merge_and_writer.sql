-- Column-level merge (on_conflict: merge), conflict ids, every changed column in the record, and
-- who wrote the conflicting change (track_writer): SPEC 3.7 and 3.10.

-- A conflict's id, named in the error's DETAIL and served at GET /conflicts/{id}: random, so that
-- one database's ids never collide with another's behind the same proxy.
CREATE OR REPLACE FUNCTION occ.new_conflict_id() RETURNS text
LANGUAGE sql VOLATILE AS $fn$
  SELECT substr(replace(gen_random_uuid()::text, '-', ''), 1, 16)
$fn$;

-- `vals` (column -> value as text, as the server printed it) typed through the table's row type and
-- back to jsonb, so that it compares with to_jsonb(row) and with typed values whatever the column
-- types; only the columns of `vals`. json and jsonb values are parsed: jsonb_populate_record would
-- keep the printed text as a JSON string.
CREATE OR REPLACE FUNCTION occ.typed(vals jsonb, meta jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
  typed jsonb;
BEGIN
  IF jsonb_typeof(vals) IS DISTINCT FROM 'object' THEN
    RETURN NULL;
  END IF;
  BEGIN
    EXECUTE format('SELECT to_jsonb(jsonb_populate_record(NULL::%I.%I, $1))', meta ->> 'schema', meta ->> 'table')
      INTO typed USING vals;
  EXCEPTION WHEN OTHERS THEN
    RETURN vals;
  END;
  RETURN (
    SELECT coalesce(jsonb_object_agg(k.col,
             CASE WHEN a.atttypid IN ('json'::regtype, 'jsonb'::regtype) AND vals ->> k.col IS NOT NULL
                  THEN (vals ->> k.col)::jsonb
                  ELSE typed -> k.col END), '{}'::jsonb)
    FROM jsonb_object_keys(vals) AS k(col)
    LEFT JOIN pg_attribute a
      ON a.attrelid = format('%I.%I', meta ->> 'schema', meta ->> 'table')::regclass
     AND a.attname = k.col AND a.attnum > 0 AND NOT a.attisdropped);
END
$fn$;

-- The columns whose current value differs from the read (typed_base), in table order; neither the
-- version column nor track_writer's bookkeeping columns, which change with every write.
CREATE OR REPLACE FUNCTION occ.changed_since_read(cur_row jsonb, meta jsonb, typed_base jsonb) RETURNS text[]
LANGUAGE sql STABLE AS $fn$
  SELECT coalesce(ARRAY(
    SELECT a.attname::text
    FROM pg_attribute a
    WHERE a.attrelid = format('%I.%I', meta ->> 'schema', meta ->> 'table')::regclass
      AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attname::text NOT IN (meta ->> 'version_column', 'occ_modified_by', 'occ_modified_at')
      AND typed_base ? a.attname::text
      AND typed_base -> a.attname::text IS DISTINCT FROM cur_row -> a.attname::text
    ORDER BY a.attnum), '{}')
$fn$;

-- track_writer: who last wrote the row and when, from its bookkeeping columns; NULL otherwise.
CREATE OR REPLACE FUNCTION occ.writer(cur_row jsonb, meta jsonb) RETURNS jsonb
LANGUAGE sql STABLE AS $fn$
  SELECT CASE WHEN (meta ->> 'track_writer')::boolean AND cur_row ->> 'occ_modified_by' IS NOT NULL THEN
    jsonb_build_object(
      'by', cur_row ->> 'occ_modified_by',
      'at', to_char((cur_row ->> 'occ_modified_at')::timestamptz AT TIME ZONE 'UTC',
                    'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
  END
$fn$;

-- The conflict itself: one event for the proxy's audit (with its id, every column changed since the
-- read and the writer), then, in enforce mode, the error. `both_changed`: the columns a merge found changed
-- on both sides (DETAIL then names exactly those); NULL for a whole-row check.
CREATE OR REPLACE FUNCTION occ.raise_conflict(cur text, expected text, cur_row jsonb, m jsonb, both_changed text[])
RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
  shadow boolean := m ->> 'mode' = 'shadow';
  id text := occ.new_conflict_id();
  has_base boolean := jsonb_typeof(m -> 'base') = 'object';
  changed text[] := '{}';
  writer jsonb := occ.writer(cur_row, m);
  current_text text := format('Current version is %s', coalesce(cur, 'NULL'));
  detail text;
BEGIN
  IF has_base THEN
    changed := occ.changed_since_read(cur_row, m, occ.typed(m -> 'base', m));
  END IF;
  PERFORM occ.emit(jsonb_build_object(
    'event', CASE WHEN shadow THEN 'shadow_conflict' ELSE 'conflict' END,
    'id', id,
    'schema', m -> 'schema',
    'table', m -> 'table',
    'key', occ.key_json(cur_row, m -> 'key'),
    'expected', expected,
    'current', cur,
    'current_row', occ.redacted(cur_row, m -> 'redact'),
    'op', m -> 'op',
    'base', m -> 'base',
    'changed', to_jsonb(changed),
    'both_changed', to_jsonb(both_changed),
    'writer', writer));
  IF shadow THEN
    RETURN;
  END IF;
  IF writer IS NOT NULL THEN
    current_text := current_text || format(', written by %s at %s', writer ->> 'by', writer ->> 'at');
  END IF;
  IF both_changed IS NOT NULL THEN
    detail := format('%s. Changed both by this write and since your read: %s.', current_text,
                     array_to_string(both_changed, ', '));
  ELSIF has_base AND cardinality(changed) = 0 THEN
    detail := current_text || '. No column differs from your read.';
  ELSIF has_base THEN
    detail := format('%s. Changed since your read: %s.', current_text, array_to_string(changed, ', '));
  ELSE
    detail := format('%s; the row was changed after version %s.', current_text, coalesce(expected, 'NULL'));
  END IF;
  RAISE EXCEPTION USING
    ERRCODE = m ->> 'sqlstate',
    MESSAGE = format('occ: version conflict on %s.%s %s: expected version %s, current version %s',
                     m ->> 'schema', m ->> 'table', occ.key_text(cur_row, m -> 'key'),
                     coalesce(expected, 'NULL'), coalesce(cur, 'NULL')),
    DETAIL = format('%s Conflict id: %s.', detail, id),
    HINT = 'Re-read the row and retry the transaction. A role listed in force.allowed_roles can override with /*occ:force*/.',
    SCHEMA = m ->> 'schema',
    TABLE = m ->> 'table',
    CONSTRAINT = 'occ_version';
END
$fn$;

-- 001's whole-row conflict, now through occ.raise_conflict (every overload ends here).
CREATE OR REPLACE FUNCTION occ.conflict(cur anycompatible, expected anycompatible, next anycompatible,
                                        cur_row jsonb, meta text) RETURNS anycompatible
LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM occ.raise_conflict(cur::text, expected::text, cur_row, meta::jsonb, NULL);
  RETURN conflict.next;
END
$fn$;

-- on_conflict: merge, for a row whose version is not the one read (called once per written row,
-- on the row version being written). `base`: the session's read of the row (JSON text, column ->
-- value as text); `mine`: the values the write sets, typed as their columns. A column changed by
-- this write (mine <> base) and by another (theirs <> base, theirs <> mine) is a conflict, DETAIL
-- naming exactly those columns; without one the row is merged: the SET list keeps the current value
-- of every column the other writer changed (occ.theirs_changed), and the version advances to `next`.
-- An unknown base (never read, binary read, redacted column) is the whole-row check of occ.conflict.
-- shadow: the would-be merge or conflict is reported and the write goes through as written.
CREATE OR REPLACE FUNCTION occ.merge(cur anycompatible, expected anycompatible, next anycompatible,
                                     cur_row jsonb, meta text, base text, mine jsonb) RETURNS anycompatible
LANGUAGE plpgsql AS $fn$
DECLARE
  m jsonb := meta::jsonb;
  read jsonb;
  typed_base jsonb;
  both_changed text[];
BEGIN
  IF base IS NOT NULL THEN
    read := base::jsonb - ARRAY(SELECT jsonb_array_elements_text(coalesce(m -> 'redact', '[]'::jsonb)));
  END IF;
  IF jsonb_typeof(read) IS DISTINCT FROM 'object' OR read = '{}'::jsonb
     OR EXISTS (SELECT 1 FROM jsonb_object_keys(mine) AS k(col) WHERE NOT read ? k.col) THEN
    RETURN occ.conflict(merge.cur, merge.expected, merge.next, cur_row, meta, read);
  END IF;
  m := m || jsonb_build_object('base', read);
  typed_base := occ.typed(read, m);
  both_changed := ARRAY(
    SELECT k.col
    FROM jsonb_object_keys(mine) AS k(col)
    JOIN pg_attribute a
      ON a.attrelid = format('%I.%I', m ->> 'schema', m ->> 'table')::regclass AND a.attname = k.col
    WHERE k.col NOT IN ('occ_modified_by', 'occ_modified_at')
      AND mine -> k.col IS DISTINCT FROM typed_base -> k.col
      AND cur_row -> k.col IS DISTINCT FROM typed_base -> k.col
      AND mine -> k.col IS DISTINCT FROM cur_row -> k.col
    ORDER BY a.attnum);
  IF cardinality(both_changed) > 0 THEN
    PERFORM occ.raise_conflict(cur::text, expected::text, cur_row, m, both_changed);
    RETURN merge.next;
  END IF;
  PERFORM occ.emit(jsonb_build_object(
    'event', CASE WHEN m ->> 'mode' = 'shadow' THEN 'shadow_merged' ELSE 'merged' END,
    'id', occ.new_conflict_id(),
    'schema', m -> 'schema',
    'table', m -> 'table',
    'key', occ.key_json(cur_row, m -> 'key'),
    'expected', expected::text,
    'current', cur::text,
    'current_row', occ.redacted(cur_row, m -> 'redact'),
    'op', m -> 'op',
    'base', read,
    'changed', to_jsonb(occ.changed_since_read(cur_row, m, typed_base)),
    'writer', occ.writer(cur_row, m)));
  RETURN merge.next;
END
$fn$;

-- on_conflict: merge, per column the write sets, on a row whose version is not the one read:
-- whether another writer changed `col` since the read, so that the merged row keeps its value (a
-- column changed on both sides never gets here: occ.merge refuses the whole write).
CREATE OR REPLACE FUNCTION occ.theirs_changed(cur_row jsonb, base text, col text, meta text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
  read jsonb := base::jsonb;
BEGIN
  IF jsonb_typeof(read) IS DISTINCT FROM 'object' OR NOT read ? col THEN
    RETURN false;
  END IF;
  RETURN occ.typed(jsonb_build_object(col, read -> col), meta::jsonb) -> col IS DISTINCT FROM cur_row -> col;
END
$fn$;
