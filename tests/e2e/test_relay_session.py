# Relay: nothing about the session is faked: startup parameters, ParameterStatus, backend PID, disconnects.
import time

import psycopg
import psycopg2
import psycopg2.errors
import pytest

REPORTED_PARAMETERS = [
    "application_name", "client_encoding", "DateStyle", "default_transaction_read_only",
    "in_hot_standby", "integer_datetimes", "IntervalStyle", "is_superuser", "server_encoding",
    "server_version", "session_authorization", "standard_conforming_strings", "TimeZone",
]


def session_view(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        status = {name: conn.info.parameter_status(name) for name in REPORTED_PARAMETERS}
        settings = conn.execute(
            "SELECT current_setting('statement_timeout'), current_setting('search_path'), "
            "current_setting('application_name'), current_setting('client_encoding'), "
            "current_setting('work_mem'), current_setting('DateStyle')").fetchone()
        try:
            conn.execute("SELECT pg_sleep(2)")
            timeout = None
        except psycopg.errors.QueryCanceled as e:
            timeout = (e.sqlstate, str(e))
        conn.execute("SET application_name = 'renamed in session'")
        renamed = conn.info.parameter_status("application_name")
        pid_matches = conn.info.backend_pid == conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    return status, settings, timeout, renamed, pid_matches


def test_startup_parameters_and_parameter_status_unchanged(pg, db, start_proxy):
    proxy = start_proxy(db)
    extra = (" application_name='relay check' client_encoding=LATIN1"
             " options='-c statement_timeout=500 -c search_path=app,public -c work_mem=8MB -c DateStyle=German'")
    direct = session_view(pg.dsn(db) + extra)
    proxied = session_view(proxy.dsn(db) + extra)
    assert proxied == direct
    status, settings, timeout, renamed, pid_matches = direct
    assert status["application_name"] == "relay check"
    assert status["client_encoding"] == "LATIN1"
    assert status["DateStyle"] == "German, DMY"
    assert status["server_version"].startswith("15.")
    assert settings == ("500ms", "app,public", "relay check", "LATIN1", "8MB", "German, DMY")
    assert timeout == ("57014", "canceling statement due to statement timeout")
    assert renamed == "renamed in session"
    assert pid_matches


def test_terminate_backend_by_the_pid_the_client_was_given(db, start_proxy):
    proxy = start_proxy(db)
    victim = psycopg2.connect(proxy.dsn(db))
    killer = psycopg2.connect(proxy.dsn(db))
    killer.autocommit = True
    try:
        with killer.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (victim.get_backend_pid(),))
            assert cur.fetchone() == (True,)
        # Whether libpq still reads the server's 57P01 before the close is a race, directly too.
        with pytest.raises(psycopg2.OperationalError):
            with victim.cursor() as cur:
                cur.execute("SELECT 1")
    finally:
        victim.close()
        killer.close()


def test_client_close_frees_the_server_session_at_once(pg, start_proxy):
    pg.psql("DROP DATABASE IF EXISTS relay_short_lived; CREATE DATABASE relay_short_lived")
    proxy = start_proxy("relay_short_lived")
    for _ in range(3):
        conn = psycopg2.connect(proxy.dsn("relay_short_lived"))
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        conn.close()
        started = time.monotonic()
        # No FORCE: this fails if the proxy still holds the server connection after the server's
        # own few seconds of grace.
        pg.psql("DROP DATABASE relay_short_lived")
        assert time.monotonic() - started < 2
        pg.psql("CREATE DATABASE relay_short_lived")
    pg.psql("DROP DATABASE relay_short_lived")
