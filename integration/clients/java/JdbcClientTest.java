// pgjdbc (the PostgreSQL JDBC driver) against a running Borealis cluster.
//
// Goal: a Java application written for PostgreSQL with pgjdbc runs
// unmodified. Method: connect with prepareThreshold=1, so that every
// PreparedStatement becomes a named server-side statement from its first
// execution (and its results may come back in binary), then one check per
// feature applications use: batches, prepared queries of each common type,
// transactions, reading in chunks with a fetch size, SQLStates, and the DatabaseMetaData calls that tools and
// ORMs make (getTables, getColumns, getPrimaryKeys, getIndexInfo,
// getImportedKeys), answered as PostgreSQL answers them. Connection parameters
// come from the libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD,
// PGDATABASE). Every check runs; the program exits 1 if any failed.
// integration/tests/drivers.rs compiles it with javac and runs it against a
// fresh cluster.

import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.Date;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.sql.Types;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;

public class JdbcClientTest {
    interface Check {
        void run() throws Exception;
    }

    static Connection connect() throws SQLException {
        String url = String.format("jdbc:postgresql://%s:%s/%s", env("PGHOST"), env("PGPORT"),
                System.getenv().getOrDefault("PGDATABASE", "postgres"));
        Properties properties = new Properties();
        properties.setProperty("user", env("PGUSER"));
        properties.setProperty("password", env("PGPASSWORD"));
        properties.setProperty("prepareThreshold", "1");
        properties.setProperty("connectTimeout", "10");
        properties.setProperty("socketTimeout", "60");
        return DriverManager.getConnection(url, properties);
    }

    static String env(String name) {
        String value = System.getenv(name);
        if (value == null) {
            throw new IllegalStateException(name + " is not set");
        }
        return value;
    }

    static void check(boolean condition, String message) {
        if (!condition) {
            throw new AssertionError(message);
        }
    }

    static void equal(Object actual, Object expected) {
        if (actual == null ? expected != null : !actual.equals(expected)) {
            throw new AssertionError("expected <" + expected + "> but was <" + actual + ">");
        }
    }

    static void expectState(String sqlState, Check body) throws Exception {
        try {
            body.run();
        } catch (SQLException e) {
            equal(e.getSQLState(), sqlState);
            return;
        }
        throw new AssertionError("expected SQLState " + sqlState + ", got no error");
    }

    static void connectsAndReportsServer() throws Exception {
        try (Connection conn = connect(); Statement st = conn.createStatement()) {
            DatabaseMetaData meta = conn.getMetaData();
            equal(meta.getDatabaseProductName(), "PostgreSQL");
            check(meta.getDatabaseMajorVersion() >= 16, "server version " + meta.getDatabaseProductVersion());
            try (ResultSet rs = st.executeQuery("SELECT 1 AS one, current_database()")) {
                check(rs.next(), "one row");
                equal(rs.getInt("one"), 1);
                // An integer literal is int4, as in PostgreSQL.
                equal(rs.getMetaData().getColumnTypeName(1), "int4");
                equal(rs.getString(2), "postgres");
            }
        }
    }

    static void preparedStatementBatches() throws Exception {
        try (Connection conn = connect(); Statement st = conn.createStatement()) {
            st.execute("CREATE TABLE jdbc_items (id int PRIMARY KEY, name varchar(40) NOT NULL, qty bigint)");
            try (PreparedStatement insert = conn.prepareStatement("INSERT INTO jdbc_items VALUES (?, ?, ?)")) {
                for (int i = 1; i <= 250; i++) {
                    insert.setInt(1, i);
                    insert.setString(2, "item " + i);
                    if (i % 10 == 0) {
                        insert.setNull(3, Types.BIGINT);
                    } else {
                        insert.setLong(3, i * 1000L);
                    }
                    insert.addBatch();
                }
                int[] counts = insert.executeBatch();
                equal(counts.length, 250);
                check(Arrays.stream(counts).allMatch(c -> c == 1), "every batch row counted 1: " + Arrays.toString(counts));
            }
            // Statement batches too.
            st.addBatch("UPDATE jdbc_items SET qty = 0 WHERE id <= 5");
            st.addBatch("DELETE FROM jdbc_items WHERE id > 240");
            equal(Arrays.toString(st.executeBatch()), "[5, 10]");
            try (ResultSet rs = st.executeQuery("SELECT count(*), count(qty), sum(qty) FROM jdbc_items")) {
                check(rs.next(), "one row");
                equal(rs.getLong(1), 240L);
                equal(rs.getLong(2), 216L);
            }
        }
    }

    static void serverSidePreparedQueries() throws Exception {
        try (Connection conn = connect(); Statement st = conn.createStatement()) {
            st.execute("CREATE TABLE jdbc_prepared (id int PRIMARY KEY, v text)");
            st.execute("INSERT INTO jdbc_prepared VALUES (1, 'one'), (2, 'two'), (3, 'three')");
            try (PreparedStatement select = conn.prepareStatement("SELECT v FROM jdbc_prepared WHERE id = ?")) {
                // Executions after the threshold reuse the named statement (S_1).
                for (int round = 0; round < 5; round++) {
                    for (int id = 1; id <= 3; id++) {
                        select.setInt(1, id);
                        try (ResultSet rs = select.executeQuery()) {
                            check(rs.next(), "row " + id);
                            equal(rs.getString(1), new String[] {"one", "two", "three"}[id - 1]);
                            check(!rs.next(), "one row for " + id);
                        }
                    }
                }
                check(select.unwrap(org.postgresql.PGStatement.class).isUseServerPrepare(),
                        "the statement is prepared on the server");
            }
            try (PreparedStatement count = conn.prepareStatement("SELECT count(*) FROM jdbc_prepared WHERE id > ? AND v <> ?")) {
                count.setLong(1, 1);
                count.setString(2, "three");
                try (ResultSet rs = count.executeQuery()) {
                    check(rs.next(), "one row");
                    equal(rs.getInt(1), 1);
                }
            }
        }
    }

    static void typesRoundTrip() throws Exception {
        try (Connection conn = connect(); Statement st = conn.createStatement()) {
            st.execute("CREATE TABLE jdbc_types (id int PRIMARY KEY, small smallint, big bigint, price numeric(12,4),"
                    + " ratio double precision, real_ real, flag boolean, note text, day date, at timestamp)");
            Date day = Date.valueOf("2024-02-29");
            Timestamp at = Timestamp.valueOf("2024-02-29 23:59:58.123456");
            try (PreparedStatement insert = conn.prepareStatement("INSERT INTO jdbc_types VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")) {
                insert.setInt(1, 1);
                insert.setShort(2, (short) -32768);
                insert.setLong(3, Long.MAX_VALUE);
                insert.setBigDecimal(4, new BigDecimal("12345678.1234"));
                insert.setDouble(5, 0.125);
                insert.setFloat(6, 1.5f);
                insert.setBoolean(7, true);
                insert.setString(8, "ünïcødé ✓");
                insert.setDate(9, day);
                insert.setTimestamp(10, at);
                equal(insert.executeUpdate(), 1);
                insert.setInt(1, 2);
                for (int i = 2; i <= 10; i++) {
                    insert.setNull(i, Types.NULL);
                }
                equal(insert.executeUpdate(), 1);
            }
            try (PreparedStatement select = conn.prepareStatement("SELECT * FROM jdbc_types WHERE id = ?")) {
                // Twice: the second execution of a named statement may fetch binary results.
                for (int round = 0; round < 2; round++) {
                    select.setInt(1, 1);
                    try (ResultSet rs = select.executeQuery()) {
                        check(rs.next(), "row 1");
                        equal(rs.getShort("small"), (short) -32768);
                        equal(rs.getLong("big"), Long.MAX_VALUE);
                        equal(rs.getBigDecimal("price").compareTo(new BigDecimal("12345678.1234")), 0);
                        equal(rs.getDouble("ratio"), 0.125);
                        equal(rs.getFloat("real_"), 1.5f);
                        equal(rs.getBoolean("flag"), true);
                        equal(rs.getString("note"), "ünïcødé ✓");
                        equal(rs.getDate("day"), day);
                        equal(rs.getTimestamp("at"), at);
                        equal(rs.getMetaData().getColumnType(3), Types.BIGINT);
                        equal(rs.getMetaData().getColumnTypeName(10), "timestamp");
                    }
                    select.setInt(1, 2);
                    try (ResultSet rs = select.executeQuery()) {
                        check(rs.next(), "row 2");
                        rs.getLong("big");
                        check(rs.wasNull(), "big is NULL");
                        check(rs.getTimestamp("at") == null, "at is NULL");
                    }
                }
            }
        }
    }

    static void transactions() throws Exception {
        try (Connection conn = connect(); Connection other = connect(); Statement st = conn.createStatement()) {
            st.execute("CREATE TABLE jdbc_tx (id int PRIMARY KEY, v text)");
            conn.setAutoCommit(false);
            try (PreparedStatement insert = conn.prepareStatement("INSERT INTO jdbc_tx VALUES (?, ?)")) {
                insert.setInt(1, 1);
                insert.setString(2, "kept");
                insert.executeUpdate();
                conn.commit();
                insert.setInt(1, 2);
                insert.setString(2, "dropped");
                insert.executeUpdate();
                try (Statement otherSt = other.createStatement();
                        ResultSet rs = otherSt.executeQuery("SELECT count(*) FROM jdbc_tx")) {
                    check(rs.next(), "one row");
                    equal(rs.getInt(1), 1);
                }
                conn.rollback();
                // A failed statement aborts the transaction until rollback.
                insert.setInt(1, 1);
                insert.setString(2, "duplicate");
                expectState("23505", insert::executeUpdate);
                expectState("25P02", () -> st.executeQuery("SELECT 1").close());
                conn.rollback();
            }
            conn.setAutoCommit(true);
            try (ResultSet rs = st.executeQuery("SELECT id FROM jdbc_tx ORDER BY id")) {
                List<Integer> ids = new ArrayList<>();
                while (rs.next()) {
                    ids.add(rs.getInt(1));
                }
                equal(ids, List.of(1));
            }
        }
    }

    // With autocommit off and a fetch size, pgjdbc reads a query through a
    // named portal in chunks (Execute with a row limit, then PortalSuspended).
    static void fetchSizeStreamsRows() throws Exception {
        try (Connection conn = connect(); Statement st = conn.createStatement()) {
            st.execute("CREATE TABLE jdbc_fetch (id int PRIMARY KEY)");
            st.execute("INSERT INTO jdbc_fetch SELECT x FROM generate_series(1, 120) AS g(x)");
            conn.setAutoCommit(false);
            for (String sql : new String[] {"SELECT id FROM jdbc_fetch ORDER BY id", "SELECT id FROM jdbc_fetch WHERE id > ? ORDER BY id"}) {
                try (PreparedStatement select = conn.prepareStatement(sql)) {
                    select.setFetchSize(25);
                    if (sql.contains("?")) {
                        select.setInt(1, 0);
                    }
                    List<Integer> ids = new ArrayList<>();
                    try (ResultSet rs = select.executeQuery()) {
                        while (rs.next()) {
                            ids.add(rs.getInt(1));
                        }
                    }
                    equal(ids.size(), 120);
                    for (int i = 0; i < ids.size(); i++) {
                        equal(ids.get(i), i + 1);
                    }
                }
            }
            conn.commit();
            conn.setAutoCommit(true);
        }
    }

    static void sqlStates() throws Exception {
        try (Connection conn = connect(); Statement st = conn.createStatement()) {
            st.execute("CREATE TABLE jdbc_err (id int PRIMARY KEY, name text NOT NULL)");
            st.execute("INSERT INTO jdbc_err VALUES (1, 'a')");
            try (PreparedStatement insert = conn.prepareStatement("INSERT INTO jdbc_err VALUES (?, ?)")) {
                insert.setInt(1, 1);
                insert.setString(2, "b");
                expectState("23505", insert::executeUpdate);
                insert.setInt(1, 2);
                insert.setNull(2, Types.VARCHAR);
                expectState("23502", insert::executeUpdate);
            }
            expectState("42P01", () -> st.executeQuery("SELECT * FROM jdbc_missing").close());
            expectState("42P01", () -> {
                try (PreparedStatement missing = conn.prepareStatement("SELECT * FROM jdbc_missing WHERE id = ?")) {
                    missing.setInt(1, 1);
                    missing.executeQuery().close();
                }
            });
            expectState("42703", () -> st.executeQuery("SELECT nope FROM jdbc_err").close());
            expectState("42601", () -> st.execute("SELEC 1"));
            expectState("22012", () -> st.executeQuery("SELECT 1 / 0").close());
            // A batch stops at its first failing row, which carries the SQLState.
            // (PostgreSQL also rolls back the rows before it, which ran in the
            // same implicit transaction up to Sync; Borealis commits each
            // Execute on its own, so the row count is not checked.)
            try (PreparedStatement insert = conn.prepareStatement("INSERT INTO jdbc_err VALUES (?, ?)")) {
                for (int id : new int[] {10, 1, 11}) {
                    insert.setInt(1, id);
                    insert.setString(2, "batch");
                    insert.addBatch();
                }
                expectState("23505", insert::executeBatch);
            }
        }
    }

    static void databaseMetaData() throws Exception {
        try (Connection conn = connect(); Statement st = conn.createStatement()) {
            st.execute("CREATE TABLE jdbc_meta (id bigint, part int, name varchar(20) NOT NULL UNIQUE,"
                    + " price numeric(8,2), PRIMARY KEY (id, part))");
            st.execute("CREATE INDEX jdbc_meta_price ON jdbc_meta (price, name)");
            DatabaseMetaData meta = conn.getMetaData();
            List<String> tables = new ArrayList<>();
            try (ResultSet rs = meta.getTables(null, "public", "jdbc_%", new String[] {"TABLE"})) {
                while (rs.next()) {
                    equal(rs.getString("TABLE_SCHEM"), "public");
                    equal(rs.getString("TABLE_TYPE"), "TABLE");
                    tables.add(rs.getString("TABLE_NAME"));
                }
            }
            check(tables.contains("jdbc_meta") && tables.contains("jdbc_items"), "tables: " + tables);
            List<String> columns = new ArrayList<>();
            try (ResultSet rs = meta.getColumns(null, "public", "jdbc_meta", null)) {
                while (rs.next()) {
                    columns.add(rs.getString("COLUMN_NAME") + ":" + rs.getInt("DATA_TYPE") + ":" + rs.getString("TYPE_NAME")
                            + ":" + rs.getInt("COLUMN_SIZE") + ":" + rs.getString("IS_NULLABLE") + ":"
                            + rs.getInt("ORDINAL_POSITION"));
                }
            }
            equal(columns, List.of(
                    "id:" + Types.BIGINT + ":int8:19:NO:1",
                    "part:" + Types.INTEGER + ":int4:10:NO:2",
                    "name:" + Types.VARCHAR + ":varchar:20:NO:3",
                    "price:" + Types.NUMERIC + ":numeric:8:YES:4"));
            List<String> keys = new ArrayList<>();
            try (ResultSet rs = meta.getPrimaryKeys(null, "public", "jdbc_meta")) {
                while (rs.next()) {
                    keys.add(rs.getString("COLUMN_NAME") + ":" + rs.getInt("KEY_SEQ") + ":" + rs.getString("PK_NAME"));
                }
            }
            equal(keys, List.of("id:1:jdbc_meta_pkey", "part:2:jdbc_meta_pkey"));
            // PostgreSQL's order: unique first, then by index name and position.
            List<String> indexes = new ArrayList<>();
            try (ResultSet rs = meta.getIndexInfo(null, "public", "jdbc_meta", false, false)) {
                while (rs.next()) {
                    indexes.add(rs.getString("INDEX_NAME") + ":" + rs.getBoolean("NON_UNIQUE") + ":"
                            + rs.getInt("ORDINAL_POSITION") + ":" + rs.getString("COLUMN_NAME") + ":"
                            + rs.getString("ASC_OR_DESC"));
                }
            }
            equal(indexes, List.of("jdbc_meta_name_key:false:1:name:A", "jdbc_meta_pkey:false:1:id:A",
                    "jdbc_meta_pkey:false:2:part:A", "jdbc_meta_price:true:1:price:A",
                    "jdbc_meta_price:true:2:name:A"));
            int unique = 0;
            try (ResultSet rs = meta.getIndexInfo(null, "public", "jdbc_meta", true, false)) {
                while (rs.next()) {
                    unique++;
                }
            }
            equal(unique, 3);
            // A two-column foreign key, seen from both ends.
            st.execute("CREATE TABLE jdbc_lines (id int PRIMARY KEY, meta_id bigint, meta_part int,"
                    + " FOREIGN KEY (meta_id, meta_part) REFERENCES jdbc_meta ON DELETE CASCADE)");
            List<String> imported = new ArrayList<>();
            try (ResultSet rs = meta.getImportedKeys(null, "public", "jdbc_lines")) {
                while (rs.next()) {
                    imported.add(rs.getString("PKTABLE_NAME") + "." + rs.getString("PKCOLUMN_NAME") + "<-"
                            + rs.getString("FKTABLE_NAME") + "." + rs.getString("FKCOLUMN_NAME") + ":"
                            + rs.getInt("KEY_SEQ") + ":" + rs.getInt("UPDATE_RULE") + ":" + rs.getInt("DELETE_RULE")
                            + ":" + rs.getString("FK_NAME") + ":" + rs.getString("PK_NAME"));
                }
            }
            String fk = ":" + DatabaseMetaData.importedKeyNoAction + ":" + DatabaseMetaData.importedKeyCascade
                    + ":jdbc_lines_meta_id_meta_part_fkey:jdbc_meta_pkey";
            equal(imported, List.of("jdbc_meta.id<-jdbc_lines.meta_id:1" + fk,
                    "jdbc_meta.part<-jdbc_lines.meta_part:2" + fk));
            List<String> exported = new ArrayList<>();
            try (ResultSet rs = meta.getExportedKeys(null, "public", "jdbc_meta")) {
                while (rs.next()) {
                    exported.add(rs.getString("FKTABLE_NAME") + "." + rs.getString("FKCOLUMN_NAME"));
                }
            }
            equal(exported, List.of("jdbc_lines.meta_id", "jdbc_lines.meta_part"));
            try (ResultSet rs = meta.getImportedKeys(null, "public", "jdbc_meta")) {
                check(!rs.next(), "jdbc_meta references nothing");
            }
            // ResultSetMetaData of a query names the base table and column.
            try (ResultSet rs = st.executeQuery("SELECT name, price FROM jdbc_meta")) {
                equal(rs.getMetaData().getColumnType(2), Types.NUMERIC);
                equal(rs.getMetaData().getColumnName(1), "name");
            }
        }
    }

    public static void main(String[] args) {
        String[] names = {"connectsAndReportsServer", "preparedStatementBatches", "serverSidePreparedQueries",
                "typesRoundTrip", "transactions", "fetchSizeStreamsRows", "sqlStates", "databaseMetaData"};
        Check[] checks = {JdbcClientTest::connectsAndReportsServer, JdbcClientTest::preparedStatementBatches,
                JdbcClientTest::serverSidePreparedQueries, JdbcClientTest::typesRoundTrip, JdbcClientTest::transactions,
                JdbcClientTest::fetchSizeStreamsRows, JdbcClientTest::sqlStates, JdbcClientTest::databaseMetaData};
        int failed = 0;
        for (int i = 0; i < checks.length; i++) {
            try {
                checks[i].run();
                System.out.println("ok   " + names[i]);
            } catch (Throwable e) {
                failed++;
                System.out.println("FAIL " + names[i]);
                e.printStackTrace(System.out);
            }
        }
        System.out.println((checks.length - failed) + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }
}
