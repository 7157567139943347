-- occ.auth_lookup: a role's password verifier for auth.mode terminate, readable without superuser rights.
--
-- auth.query calls it on admin_dsn; SECURITY DEFINER, so the role in admin_dsn needs no superuser rights.
-- pg_authid is readable by superusers only, so run `occproxy migrate` as a superuser: the function
-- belongs to the role that creates it and reads with its rights. If the proxy's admin_dsn uses another
-- role, grant it the call:  GRANT EXECUTE ON FUNCTION occ.auth_lookup(text) TO occproxy_admin;

-- A role whose password has expired (VALID UNTIL in the past) gets a NULL verifier, as PostgreSQL refuses
-- its password too; an unknown role gets no row: either way the client's login fails with 28P01. A
-- NOLOGIN role is returned all the same, so that the server itself refuses it after authentication,
-- with its own message.
CREATE OR REPLACE FUNCTION occ.auth_lookup(role text) RETURNS TABLE (rolname text, rolpassword text)
LANGUAGE sql STABLE SECURITY DEFINER
-- A SECURITY DEFINER function must not resolve names through the caller's search_path.
SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT a.rolname::text,
         CASE WHEN a.rolvaliduntil IS NULL OR a.rolvaliduntil > pg_catalog.now() THEN a.rolpassword END
  FROM pg_catalog.pg_authid AS a
  WHERE a.rolname = role
$fn$;

REVOKE ALL ON FUNCTION occ.auth_lookup(text) FROM PUBLIC;
