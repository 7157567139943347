-- occ.conflict with the session's read as JSON text. A pinned write passes its read as a text Bind
-- parameter or literal, which the server takes as it is; as jsonb it would parse the whole row on
-- every execution, though only a conflict ever reads it.
CREATE OR REPLACE FUNCTION occ.conflict(cur anycompatible, expected anycompatible, next anycompatible,
                                        cur_row jsonb, meta text, base text) RETURNS anycompatible
LANGUAGE plpgsql AS $fn$
BEGIN
  RETURN occ.conflict(conflict.cur, conflict.expected, conflict.next, cur_row, meta, base::jsonb);
END
$fn$;
