-- A write through a view (SPEC 3.9) has no xmin for occ.written_here: this finds the row of table
-- `tab` whose key columns hold the values in `key` (column -> value, as the view shows them) and
-- asks about its xmin. Called only when the version differs from the one expected, on the row
-- version being written, which the current transaction sees; another writer's row would make the
-- write wait for it, as in occ.written_here.
-- SECURITY DEFINER: the session may have rights on the view only. It learns nothing it could not
-- know: whether its own transaction wrote the row it is writing.
CREATE OR REPLACE FUNCTION occ.written_here_in(tab regclass, key jsonb, cur anyelement) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
-- A SECURITY DEFINER function must not resolve names through the caller's search_path.
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  condition text;
  writer xid;
BEGIN
  SELECT string_agg(format('t.%1$I = k.%1$I', col), ' AND ') INTO condition FROM jsonb_object_keys(key) col;
  EXECUTE format('SELECT t.xmin FROM %s t, jsonb_populate_record(NULL::%s, $1) k WHERE %s', tab, tab, condition)
    INTO writer USING key;
  RETURN writer IS NOT NULL AND occ.written_here(writer, cur);
END
$fn$;
