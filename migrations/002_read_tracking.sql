-- Read tracking (SPEC 3.2 item 3): conflicts that know what the session read, and writes to rows it never read.

-- occ.conflict with the session's read of the row (`base`: column -> value as text). The read is
-- merged into meta here, on the conflict path only, so a statement that checks many rows without
-- a conflict never builds it. Redacted columns are left out of it (the event reaches the server
-- log). An empty read (the session learnt only key and version) says nothing about the columns:
-- DETAIL then names the version it expected instead.
CREATE OR REPLACE FUNCTION occ.conflict(cur anycompatible, expected anycompatible, next anycompatible,
                                        cur_row jsonb, meta text, base jsonb) RETURNS anycompatible
LANGUAGE plpgsql AS $fn$
DECLARE
  m jsonb := meta::jsonb;
  read jsonb;
BEGIN
  IF jsonb_typeof(base) = 'object' THEN
    read := base - ARRAY(SELECT jsonb_array_elements_text(coalesce(m -> 'redact', '[]'::jsonb)));
  END IF;
  IF read IS NULL OR read = '{}'::jsonb THEN
    RETURN occ.conflict(conflict.cur, conflict.expected, conflict.next, cur_row, meta);
  END IF;
  RETURN occ.conflict(conflict.cur, conflict.expected, conflict.next, cur_row,
                      (m || jsonb_build_object('base', read))::text);
END
$fn$;

-- Called in place of the new version of a row the session has no version for, when the table's
-- on_unknown_version is reject. enforce: refuses the write (not a conflict: the row may well be
-- current, the session just never read it); shadow: reports it and lets the write through.
CREATE OR REPLACE FUNCTION occ.unknown_version(cur anycompatible, next anycompatible, cur_row jsonb, meta text)
RETURNS anycompatible
LANGUAGE plpgsql AS $fn$
DECLARE
  m jsonb := meta::jsonb;
BEGIN
  IF m ->> 'mode' = 'shadow' THEN
    PERFORM occ.emit(jsonb_build_object(
      'event', 'shadow_unknown_version',
      'schema', m -> 'schema',
      'table', m -> 'table',
      'key', occ.key_json(cur_row, m -> 'key'),
      'expected', NULL,
      'current', cur::text,
      'current_row', occ.redacted(cur_row, m -> 'redact'),
      'op', m -> 'op',
      'base', NULL));
    RETURN unknown_version.next;
  END IF;
  RAISE EXCEPTION USING
    ERRCODE = '55000',
    MESSAGE = format('occ: %s.%s %s was not read by this session: on_unknown_version is reject',
                     m ->> 'schema', m ->> 'table', occ.key_text(cur_row, m -> 'key')),
    DETAIL = format('The proxy has no version of this row that this session read (never read through the proxy, '
                    'or longer ago than read_ttl); current version is %s. Nothing was written.', cur),
    HINT = format('Read the row through the proxy and retry, or name the version you expect in the statement '
                  '(AND %I = ...).', m ->> 'version_column'),
    SCHEMA = m ->> 'schema',
    TABLE = m ->> 'table';
END
$fn$;
