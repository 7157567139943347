-- A session's own writes are never a conflict (SPEC 3.3): a row version written by the current
-- transaction (its own earlier statement of a batch or pipeline, a function or DO block it ran, in
-- any savepoint) was not made by another writer, whatever version the proxy expected. Called only
-- when the version differs from the expected one, on the row version being written: that version
-- is either committed or the current transaction's (a row another open transaction wrote makes the
-- write wait for it), so "in progress" means "ours".
-- The xid is widened with the current transaction's epoch; live xids are within 2^31 of each other.
CREATE OR REPLACE FUNCTION occ.written_here(writer xid, cur anyelement) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
  top bigint := pg_current_xact_id()::text::bigint;
  full_xid bigint := (top >> 32 << 32) | writer::text::bigint;
BEGIN
  IF full_xid > top + 2147483648 THEN
    full_xid := full_xid - 4294967296;
  ELSIF full_xid < top - 2147483648 THEN
    full_xid := full_xid + 4294967296;
  END IF;
  IF full_xid < 0 OR pg_xact_status(full_xid::text::xid8) IS DISTINCT FROM 'in progress' THEN
    RETURN false;
  END IF;
  -- The proxy learns the version this write started from (its command tag alone would not say).
  PERFORM occ.emit(jsonb_build_object('event', 'own_write', 'current', cur::text));
  RETURN true;
END
$fn$;
