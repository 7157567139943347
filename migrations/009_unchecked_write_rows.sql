-- An unchecked write (007) now names the row it wrote and the version it left, so the session that
-- made it takes that version as read: its own later write of the row, in this transaction or a
-- later one, is not a conflict with its own change (SPEC 3.9). The bump triggers that `migrate`
-- installs call this form; the three-argument one stays for triggers not yet updated.
CREATE OR REPLACE FUNCTION occ.unchecked_write(schema_name text, table_name text, refuse boolean,
                                               row_key text[], row_version text) RETURNS void
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
                                      'statement', left(current_query(), 10000),
                                      'key', to_jsonb(row_key), 'version', row_version));
END
$fn$;

CREATE OR REPLACE FUNCTION occ.unchecked_write(schema_name text, table_name text, refuse boolean) RETURNS void
LANGUAGE sql AS $fn$
  SELECT occ.unchecked_write(schema_name, table_name, refuse, NULL, NULL);
$fn$;
