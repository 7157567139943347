-- Writes the proxy cannot see into (SPEC 3.9): an UPDATE of a protected table run from inside a
-- function, procedure, DO block or trigger, in a session reached through the proxy. The version
-- trigger calls this for them (migrate.cpp); `refuse` is the table's on_unsupported: reject.
CREATE OR REPLACE FUNCTION occ.unchecked_write(schema_name text, table_name text, refuse boolean) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
  IF refuse THEN
    RAISE EXCEPTION USING
      ERRCODE = '0A000',
      MESSAGE = format('occ: a write to %I.%I from inside a function, procedure, DO block or trigger cannot be checked '
                       'against the version this session read (on_unsupported: reject)', schema_name, table_name),
      DETAIL = 'Nothing was written.',
      HINT = 'Write the row with an UPDATE sent through the proxy, or set on_unsupported: passthrough for this table.',
      SCHEMA = schema_name,
      TABLE = table_name;
  END IF;
  PERFORM occ.emit(jsonb_build_object('event', 'unchecked_write', 'schema', schema_name, 'table', table_name,
                                      'statement', left(current_query(), 10000)));
END
$fn$;
