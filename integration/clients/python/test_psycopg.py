"""psycopg 3 against a running Borealis cluster.

Goal: an application written for PostgreSQL with psycopg 3 runs unmodified.
Method: connect with the libpq environment (PGHOST, PGPORT, PGUSER,
PGPASSWORD, PGDATABASE), then run one check per feature an application
leans on: simple and parameterised queries, executemany, named prepared
statements, client-side binding, transactions, SQLSTATEs of errors, COPY
FROM STDIN and type round trips. Every check runs even if an earlier one
failed; the script exits 1 if any failed. integration/tests/drivers.rs runs
it against a fresh cluster.
"""

import datetime
import decimal
import sys

import psycopg
from psycopg import errors, sql

from checks import check, run


def connect(**kwargs):
    # libpq takes host, port, user, password and dbname from PG* variables.
    return psycopg.connect(connect_timeout=10, **kwargs)


def expect_error(error_class, sqlstate, function):
    try:
        function()
    except error_class as error:
        assert error.sqlstate == sqlstate, f"SQLSTATE {error.sqlstate}, expected {sqlstate}: {error}"
        return error
    raise AssertionError(f"expected {error_class.__name__} ({sqlstate}), got no error")


@check
def connects_and_reports_server():
    with connect() as conn:
        assert conn.info.server_version >= 160000, conn.info.server_version
        assert conn.info.parameter_status("client_encoding") == "UTF8"
        assert conn.execute("SELECT 1").fetchone() == (1,)
        version = conn.execute("SELECT version()").fetchone()[0]
        assert version.startswith("PostgreSQL"), version
        assert conn.execute("SELECT current_database(), current_user").fetchone() == ("postgres", "postgres")


@check
def simple_and_parameterised_queries():
    with connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE pg3_items (id int PRIMARY KEY, name text NOT NULL, qty bigint)")
        conn.execute("INSERT INTO pg3_items VALUES (1, 'one', 10), (2, 'two', 20)")
        cur = conn.execute("INSERT INTO pg3_items (id, name, qty) VALUES (%s, %s, %s)", (3, "three", 30))
        assert cur.rowcount == 1, cur.rowcount
        cur = conn.execute("SELECT name, qty FROM pg3_items WHERE id = %s", (2,))
        assert cur.fetchall() == [("two", 20)]
        assert [d.name for d in cur.description] == ["name", "qty"]
        cur = conn.execute("SELECT id FROM pg3_items WHERE name = %(name)s OR qty > %(qty)s ORDER BY id",
                           {"name": "one", "qty": 25})
        assert cur.fetchall() == [(1,), (3,)]
        cur = conn.execute("UPDATE pg3_items SET qty = qty + %s WHERE id <= %s", (5, 2))
        assert cur.rowcount == 2, cur.rowcount
        cur = conn.execute("DELETE FROM pg3_items WHERE id = %s RETURNING name", (3,))
        assert cur.fetchall() == [("three",)]
        assert conn.execute("SELECT sum(qty) FROM pg3_items").fetchone()[0] == 40
        # None binds as NULL, and a query may return no rows.
        assert conn.execute("SELECT id FROM pg3_items WHERE qty = %s", (None,)).fetchall() == []
        # Composed identifiers and literals, as applications quote them.
        query = sql.SQL("SELECT count(*) FROM {} WHERE name <> {}").format(sql.Identifier("pg3_items"),
                                                                         sql.Literal("x"))
        assert conn.execute(query).fetchone() == (2,)


@check
def executemany_inserts_every_row():
    with connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE pg3_many (id int PRIMARY KEY, label text)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO pg3_many VALUES (%s, %s)", [(i, f"label {i}") for i in range(200)])
            assert cur.rowcount == 200, cur.rowcount
            cur.executemany("SELECT label FROM pg3_many WHERE id = %s", [(5,), (7,)], returning=True)
            labels = []
            while True:
                labels.append(cur.fetchone()[0])
                if not cur.nextset():
                    break
            assert labels == ["label 5", "label 7"], labels
        assert conn.execute("SELECT count(*), min(label) FROM pg3_many").fetchone() == (200, "label 0")


@check
def server_side_prepared_statements():
    with connect(autocommit=True) as conn:
        conn.prepare_threshold = 0  # prepare named statements from the first execution
        conn.execute("CREATE TABLE pg3_prepared (id int PRIMARY KEY, v text)")
        for i in range(10):
            conn.execute("INSERT INTO pg3_prepared VALUES (%s, %s)", (i, str(i * i)))
        for i in range(10):
            assert conn.execute("SELECT v FROM pg3_prepared WHERE id = %s", (i,)).fetchone() == (str(i * i),)
        # prepare=True forces a named statement whatever the threshold.
        assert conn.execute("SELECT count(*) FROM pg3_prepared WHERE id > %s", (4,), prepare=True).fetchone() == (5,)
        # Binary results of a prepared statement.
        cur = conn.cursor(binary=True)
        row = cur.execute("SELECT id, v FROM pg3_prepared WHERE id = %s", (3,), prepare=True).fetchone()
        assert row == (3, "9"), row


@check
def client_side_binding():
    with connect(autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        conn.execute("CREATE TABLE pg3_client (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO pg3_client VALUES (%s, %s)", (1, "it's quoted"))
        assert conn.execute("SELECT note FROM pg3_client WHERE id = %s", (1,)).fetchone() == ("it's quoted",)


@check
def transactions_commit_and_roll_back():
    with connect() as conn:
        conn.execute("CREATE TABLE pg3_tx (id int PRIMARY KEY, v text)")
        conn.commit()
        conn.execute("INSERT INTO pg3_tx VALUES (1, 'kept')")
        conn.commit()
        conn.execute("INSERT INTO pg3_tx VALUES (2, 'dropped')")
        conn.rollback()
        assert conn.execute("SELECT id FROM pg3_tx ORDER BY id").fetchall() == [(1,)]
        conn.rollback()

    with connect(autocommit=True) as conn:
        with conn.transaction():
            conn.execute("INSERT INTO pg3_tx VALUES (%s, %s)", (3, "in block"))
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        try:
            with conn.transaction():
                conn.execute("INSERT INTO pg3_tx VALUES (4, 'rolled back')")
                raise KeyError("application error")
        except KeyError:
            pass
        # A failed statement fails the block; the context manager rolls it back.
        try:
            with conn.transaction():
                conn.execute("INSERT INTO pg3_tx VALUES (5, 'rolled back too')")
                conn.execute("INSERT INTO pg3_tx VALUES (1, 'duplicate')")
        except errors.UniqueViolation:
            pass
        # An explicit rollback of the transaction object.
        with conn.transaction() as tx:
            conn.execute("INSERT INTO pg3_tx VALUES (6, 'rolled back by tx')")
            raise psycopg.Rollback(tx)
        assert conn.execute("SELECT id FROM pg3_tx ORDER BY id").fetchall() == [(1,), (3,)]

    # Another connection does not see uncommitted rows, then sees committed ones.
    with connect() as writer, connect(autocommit=True) as observer:
        writer.execute("INSERT INTO pg3_tx VALUES (7, 'later')")
        assert observer.execute("SELECT count(*) FROM pg3_tx WHERE id = 7").fetchone() == (0,)
        writer.commit()
        assert observer.execute("SELECT count(*) FROM pg3_tx WHERE id = 7").fetchone() == (1,)


@check
def errors_carry_sqlstate():
    with connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE pg3_err (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO pg3_err VALUES (1, 'a')")
        expect_error(errors.UniqueViolation, "23505",
                     lambda: conn.execute("INSERT INTO pg3_err VALUES (%s, %s)", (1, "again")))
        expect_error(errors.NotNullViolation, "23502",
                     lambda: conn.execute("INSERT INTO pg3_err VALUES (%s, %s)", (2, None)))
        expect_error(errors.UndefinedTable, "42P01", lambda: conn.execute("SELECT * FROM pg3_missing"))
        expect_error(errors.UndefinedColumn, "42703", lambda: conn.execute("SELECT nope FROM pg3_err"))
        expect_error(errors.SyntaxError, "42601", lambda: conn.execute("SELEC 1"))
        expect_error(errors.DivisionByZero, "22012", lambda: conn.execute("SELECT 1 / 0"))
        expect_error(errors.DuplicateTable, "42P07", lambda: conn.execute("CREATE TABLE pg3_err (id int)"))
        # The connection is still usable after every error.
        assert conn.execute("SELECT count(*) FROM pg3_err").fetchone() == (1,)

    with connect() as conn:
        conn.execute("INSERT INTO pg3_err VALUES (3, 'c')")
        expect_error(errors.UniqueViolation, "23505", lambda: conn.execute("INSERT INTO pg3_err VALUES (1, 'x')"))
        expect_error(errors.InFailedSqlTransaction, "25P02", lambda: conn.execute("SELECT 1"))
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM pg3_err").fetchone() == (1,)


@check
def copy_from_stdin():
    with connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE pg3_copy (id int PRIMARY KEY, name text, amount numeric(10,2), day date)")
        with conn.cursor() as cur:
            with cur.copy("COPY pg3_copy (id, name, amount, day) FROM STDIN") as copy:
                for i in range(1000):
                    copy.write_row((i, f"name {i}", decimal.Decimal(i) / 4, datetime.date(2024, 1, 1 + i % 28)))
            assert cur.rowcount == 1000, cur.rowcount
            # Raw text blocks, with NULLs and escapes.
            with cur.copy("COPY pg3_copy FROM STDIN") as copy:
                copy.write("5000\ttab\\there\t\\N\t2024-02-29\n5001\t\\N\t1.5\t\\N\n")
            # CSV with a header.
            with cur.copy("COPY pg3_copy FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
                copy.write('id,name,amount,day\n6000,"comma, inside",2.25,2024-03-01\n')
        row = conn.execute("SELECT count(*), sum(amount) FROM pg3_copy").fetchone()
        assert row == (1003, decimal.Decimal("124878.75")), row
        assert conn.execute("SELECT name, amount FROM pg3_copy WHERE id = 5000").fetchone() == ("tab\there", None)
        assert conn.execute("SELECT name FROM pg3_copy WHERE id = 6000").fetchone() == ("comma, inside",)
        # A bad row fails the whole COPY with the right SQLSTATE and writes nothing.
        def bad_copy():
            with conn.cursor() as cur, cur.copy("COPY pg3_copy FROM STDIN") as copy:
                copy.write("7000\tok\t1\t2024-01-01\n7001\tbad\t1\tnot-a-date\n")
        expect_error(errors.InvalidDatetimeFormat, "22007", bad_copy)
        assert conn.execute("SELECT count(*) FROM pg3_copy WHERE id >= 7000").fetchone() == (0,)


@check
def types_round_trip():
    with connect(autocommit=True) as conn:
        conn.execute("""CREATE TABLE pg3_types (
            id int PRIMARY KEY, small smallint, big bigint, price numeric(12,4), ratio double precision,
            flag boolean, note text, code varchar(8), day date, at timestamp)""")
        values = (1, -32768, 9_007_199_254_740_993, decimal.Decimal("12345678.1234"), 0.125, True,
                  "ünïcødé ✓", "abc", datetime.date(1999, 12, 31), datetime.datetime(2024, 2, 29, 23, 59, 58, 123456))
        conn.execute("INSERT INTO pg3_types VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", values)
        conn.execute("INSERT INTO pg3_types (id) VALUES (2)")
        for binary in (False, True):
            cur = conn.cursor(binary=binary)
            row = cur.execute("SELECT * FROM pg3_types WHERE id = %s", (1,)).fetchone()
            assert row == values, (binary, row)
            row = cur.execute("SELECT * FROM pg3_types WHERE id = 2").fetchone()
            assert row == (2,) + (None,) * 9, (binary, row)
        # Literal values computed by the server, and their types.
        row = conn.execute("SELECT 1::int2, 2::int4, 3::int8, 1.5::numeric, true, 'x'::text, "
                           "DATE '2020-01-02', TIMESTAMP '2020-01-02 03:04:05'").fetchone()
        assert row == (1, 2, 3, decimal.Decimal("1.5"), True, "x", datetime.date(2020, 1, 2),
                       datetime.datetime(2020, 1, 2, 3, 4, 5)), row
        # Parameters of every type come back as they were sent.
        for value in values[1:]:
            got = conn.execute("SELECT %s", (value,)).fetchone()[0]
            assert got == value, (value, got)
        # bytea: computed values and parameters (no bytea columns yet).
        assert conn.execute("SELECT %s::bytea", (b"\x00\x01\xfe\xff",)).fetchone()[0] == b"\x00\x01\xfe\xff"
        assert conn.execute("SELECT decode('00ff', 'hex')").fetchone()[0] == b"\x00\xff"


@check
def json_timestamptz_and_floats():
    # jsonb is sent as oid 3802 (binary: a version byte, then the text) and
    # loaded as Python values; timestamptz is UTC; floats keep their value.
    with connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE pg3_json (id int PRIMARY KEY, body jsonb, raw json, at timestamptz, x float8)")
        conn.execute("INSERT INTO pg3_json VALUES (1, %s::jsonb, %s::json, %s, 1e20)",
                     ('{"b": [1, 2], "a": "x"}', '{"z": 1}', datetime.datetime(2024, 1, 1, 10, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))))
        for binary in (False, True):
            cur = conn.cursor(binary=binary)
            row = cur.execute("SELECT body, raw, at, x, body -> 'b', body ->> 'a' FROM pg3_json").fetchone()
            want = ({"a": "x", "b": [1, 2]}, {"z": 1}, datetime.datetime(2024, 1, 1, 9, 0, tzinfo=datetime.timezone.utc),
                    1e20, [1, 2], "x")
            assert row == want, (binary, row)
            assert [d.type_code for d in cur.description[:3]] == [3802, 114, 1184], cur.description
        text = conn.execute("SELECT body::text, x::text FROM pg3_json").fetchone()
        assert text == ('{"a": "x", "b": [1, 2]}', "1e+20"), text
        expect_error(errors.InvalidTextRepresentation, "22P02", lambda: conn.execute("SELECT '{a'::jsonb"))


if __name__ == "__main__":
    sys.exit(run())
