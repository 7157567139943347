# Relay: COPY FROM STDIN and COPY TO STDOUT of 100,000 rows are byte-identical through the proxy.
import hashlib
import io

import psycopg2
import psycopg2.errors
import pytest

ROWS = 100_000


def copy_data():
    """Text-format COPY data exercising escapes, NULLs, multi-byte text and long lines."""
    lines = []
    for i in range(1, ROWS + 1):
        name = f"name {i} \\t tab\\\\slash ✓" if i % 7 == 0 else f"name {i}"
        amount = r"\N" if i % 11 == 0 else f"{i * 3 // 2}.{i % 100:02d}"
        note = "x" * (i % 300) if i % 1000 else "long " + "y" * 20000
        lines.append(f"{i}\t{name}\t{amount}\t{note}\n")
    return "".join(lines).encode()


def copy_out(dsn, sql):
    buffer = io.BytesIO()
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.copy_expert(sql, buffer)
    conn.close()
    return buffer.getvalue()


def copy_in(dsn, table, data):
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.copy_expert(f"COPY {table} FROM STDIN", io.BytesIO(data))
        rowcount = cur.rowcount
    conn.close()
    return rowcount


@pytest.mark.slow
def test_copy_100k_rows_round_trip(pg, db, start_proxy):
    pg.psql("CREATE TABLE via_proxy (id int PRIMARY KEY, name text, amount numeric, note text);"
            "CREATE TABLE via_direct (LIKE via_proxy INCLUDING ALL);", dbname=db)
    proxy = start_proxy(db)
    data = copy_data()

    assert copy_in(proxy.dsn(db), "via_proxy", data) == ROWS
    assert copy_in(pg.dsn(db), "via_direct", data) == ROWS

    for fmt in ("", " WITH (FORMAT binary)", " WITH (FORMAT csv, HEADER)"):
        outputs = {
            (table, name): copy_out(dsn, f"COPY (SELECT * FROM {table} ORDER BY id) TO STDOUT{fmt}")
            for table in ("via_proxy", "via_direct")
            for name, dsn in (("proxy", proxy.dsn(db)), ("direct", pg.dsn(db)))
        }
        digests = {key: hashlib.sha256(value).hexdigest() for key, value in outputs.items()}
        assert len(set(digests.values())) == 1, digests
        if not fmt:
            assert outputs["via_proxy", "proxy"] == data


def test_copy_error_mid_stream_matches_direct(pg, db, start_proxy):
    pg.psql("CREATE TABLE target (id int PRIMARY KEY, name text, amount numeric, note text)", dbname=db)
    proxy = start_proxy(db)
    lines = copy_data().splitlines(keepends=True)
    lines[49_999] = b"50000\tbroken\tnot a number\t\n"
    data = b"".join(lines)

    errors = []
    for dsn in (pg.dsn(db), proxy.dsn(db)):
        with pytest.raises(psycopg2.errors.InvalidTextRepresentation) as info:
            copy_in(dsn, "target", data)
        errors.append((info.value.pgcode, info.value.pgerror))
    assert errors[0] == errors[1]
    assert errors[0][0] == "22P02"
    assert 'invalid input syntax for type numeric: "not a number"' in errors[0][1]
    assert "COPY target, line 50000, column amount" in errors[0][1]
    assert pg.psql("SELECT count(*) FROM target", dbname=db) == "0\n"
