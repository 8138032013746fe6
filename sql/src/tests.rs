//! End-to-end tests of the engine over the in-memory volume: statements in,
//! tags, rows and SQLSTATEs out. Each test states its goal in its name.

use crate::testing::MemoryVolume;
use crate::{Engine, QueryOutput, Session, TransactionStatus};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::common::ScalarValue;
use std::sync::Arc;

mod free_space;

async fn writer() -> (MemoryVolume, Arc<Engine>) {
    let volume = MemoryVolume::new();
    let engine = Engine::open(Arc::new(volume.clone()), false).await.expect("open writer");
    (volume, engine)
}

/// Rows of a result as strings ("NULL" for nulls).
fn rows(output: &QueryOutput) -> Vec<Vec<String>> {
    let (QueryOutput::Rows { batches, .. } | QueryOutput::Returning { batches, .. }) = output else {
        panic!("expected rows, got {output:?}")
    };
    let mut out = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            out.push(
                batch
                    .columns()
                    .iter()
                    .map(|c| if c.is_null(row) { "NULL".into() } else { array_value_to_string(c, row).unwrap() })
                    .collect(),
            );
        }
    }
    out
}

fn tag(output: &QueryOutput) -> String {
    match output {
        QueryOutput::Command { tag } => tag.clone(),
        other => panic!("expected a command, got {other:?}"),
    }
}

async fn one(session: &mut Session, sql: &str) -> QueryOutput {
    let mut outputs = session.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(outputs.len(), 1, "{sql}");
    outputs.remove(0)
}

async fn query(session: &mut Session, sql: &str) -> Vec<Vec<String>> {
    rows(&one(session, sql).await)
}

async fn sqlstate(session: &mut Session, sql: &str) -> &'static str {
    match session.execute(sql).await {
        Ok(out) => panic!("{sql} succeeded: {out:?}"),
        Err(e) => e.sqlstate(),
    }
}

fn strings(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect()
}

#[tokio::test]
async fn create_insert_select_update_delete_drop() {
    let (_volume, engine) = writer().await;
    let mut s = engine.session();
    assert_eq!(tag(&one(&mut s, "CREATE TABLE t (id int PRIMARY KEY, name text, score float8)").await), "CREATE TABLE");
    assert_eq!(
        tag(&one(&mut s, "INSERT INTO t VALUES (1, 'a', 1.5), (2, 'b', NULL), (3, 'c', 3.0)").await),
        "INSERT 0 3"
    );
    assert_eq!(tag(&one(&mut s, "INSERT INTO t (name, id) VALUES ('d', 4)").await), "INSERT 0 1");
    assert_eq!(
        query(&mut s, "SELECT id, name, score FROM t ORDER BY id").await,
        strings(&[&["1", "a", "1.5"], &["2", "b", "NULL"], &["3", "c", "3.0"], &["4", "d", "NULL"]])
    );
    assert_eq!(tag(&one(&mut s, "UPDATE t SET score = score * 2, name = upper(name) WHERE id >= 3").await), "UPDATE 2");
    assert_eq!(tag(&one(&mut s, "DELETE FROM t WHERE id = 2").await), "DELETE 1");
    assert_eq!(
        query(&mut s, "SELECT id, name, score FROM t ORDER BY id").await,
        strings(&[&["1", "a", "1.5"], &["3", "C", "6.0"], &["4", "D", "NULL"]])
    );
    assert_eq!(query(&mut s, "SELECT count(*), sum(id) FROM t WHERE name <> 'x'").await, strings(&[&["3", "8"]]));
    assert_eq!(tag(&one(&mut s, "INSERT INTO t SELECT id + 10, name, score FROM t").await), "INSERT 0 3");
    assert_eq!(query(&mut s, "SELECT count(*) FROM t").await, strings(&[&["6"]]));
    assert_eq!(tag(&one(&mut s, "DROP TABLE t").await), "DROP TABLE");
    assert_eq!(sqlstate(&mut s, "SELECT * FROM t").await, "42P01");
}

#[tokio::test]
async fn all_types_round_trip_through_sql() {
    let (_volume, engine) = writer().await;
    let mut s = engine.session();
    one(
        &mut s,
        "CREATE TABLE t (a smallint, b int4, c bigint, d real, e double precision, f boolean, \
                 g varchar(5), h numeric(10,2), i numeric, j date, k timestamp, l text NOT NULL)",
    )
    .await;
    one(
        &mut s,
        "INSERT INTO t VALUES (1, 2, 3, 4.5, 6.25, true, 'abc', 12.5, 7, '2024-02-29', \
                 '2024-02-29 12:34:56', 'x'), (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '')",
    )
    .await;
    assert_eq!(
        query(&mut s, "SELECT * FROM t ORDER BY a NULLS LAST").await,
        strings(&[
            &[
                "1",
                "2",
                "3",
                "4.5",
                "6.25",
                "true",
                "abc",
                "12.50",
                "7.0000000000",
                "2024-02-29",
                "2024-02-29T12:34:56",
                "x"
            ],
            &["NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", ""],
        ])
    );
}

#[tokio::test]
async fn catalog_and_rows_survive_restart_and_readers_see_them() {
    let (volume, engine) = writer().await;
    let mut s = engine.session();
    one(&mut s, "CREATE TABLE kept (id bigint PRIMARY KEY, v text)").await;
    one(&mut s, "INSERT INTO kept VALUES (1, 'one'), (2, 'two')").await;
    drop(s);
    drop(engine);

    let reopened = Engine::open(Arc::new(volume.clone()), false).await.unwrap();
    let mut s = reopened.session();
    assert_eq!(query(&mut s, "SELECT v FROM kept ORDER BY id").await, strings(&[&["one"], &["two"]]));
    assert_eq!(sqlstate(&mut s, "INSERT INTO kept VALUES (2, 'dup')").await, "23505");

    let reader = Engine::open(Arc::new(volume.reader()), true).await.unwrap();
    let mut r = reader.session();
    assert_eq!(query(&mut r, "SELECT count(*) FROM kept").await, strings(&[&["2"]]));
    // DDL on the writer reaches the reader through the catalog version.
    one(&mut s, "CREATE TABLE later (x int)").await;
    one(&mut s, "INSERT INTO later VALUES (42)").await;
    assert_eq!(query(&mut r, "SELECT x FROM later").await, strings(&[&["42"]]));
}

#[tokio::test]
async fn reader_refuses_writes_with_25006() {
    let (volume, _engine) = writer().await;
    let reader = Engine::open(Arc::new(volume.reader()), true).await.unwrap();
    let mut r = reader.session();
    let error = r.execute("INSERT INTO t VALUES (1)").await.unwrap_err();
    assert_eq!(error.sqlstate(), "25006");
    assert_eq!(error.message(), "cannot execute INSERT in a read-only transaction");
    assert_eq!(sqlstate(&mut r, "CREATE TABLE t (a int)").await, "25006");
    assert_eq!(query(&mut r, "SELECT 1 + 1").await, strings(&[&["2"]]));
}

#[tokio::test]
async fn transaction_sees_its_writes_others_do_not_and_rollback_drops_them() {
    let (_volume, engine) = writer().await;
    let mut a = engine.session();
    let mut b = engine.session();
    one(&mut a, "CREATE TABLE t (id int)").await;
    assert_eq!(tag(&one(&mut a, "BEGIN").await), "BEGIN");
    assert_eq!(a.transaction_status(), TransactionStatus::InBlock);
    one(&mut a, "INSERT INTO t VALUES (1), (2)").await;
    one(&mut a, "UPDATE t SET id = id + 10 WHERE id = 2").await;
    assert_eq!(query(&mut a, "SELECT id FROM t ORDER BY id").await, strings(&[&["1"], &["12"]]));
    assert_eq!(query(&mut b, "SELECT count(*) FROM t").await, strings(&[&["0"]]));
    assert_eq!(tag(&one(&mut a, "ROLLBACK").await), "ROLLBACK");
    assert_eq!(query(&mut a, "SELECT count(*) FROM t").await, strings(&[&["0"]]));

    let outputs = a.execute("BEGIN; INSERT INTO t VALUES (7); COMMIT").await.unwrap();
    assert_eq!(outputs.iter().map(tag).collect::<Vec<_>>(), ["BEGIN", "INSERT 0 1", "COMMIT"]);
    assert_eq!(query(&mut b, "SELECT id FROM t").await, strings(&[&["7"]]));
    assert_eq!(a.transaction_status(), TransactionStatus::Idle);
}

#[tokio::test]
async fn ddl_in_a_block_is_private_until_commit() {
    let (_volume, engine) = writer().await;
    let mut a = engine.session();
    let mut b = engine.session();
    one(&mut a, "BEGIN").await;
    one(&mut a, "CREATE TABLE fresh (x int)").await;
    one(&mut a, "INSERT INTO fresh VALUES (1)").await;
    assert_eq!(query(&mut a, "SELECT x FROM fresh").await, strings(&[&["1"]]));
    assert_eq!(sqlstate(&mut b, "SELECT x FROM fresh").await, "42P01");
    one(&mut a, "ROLLBACK").await;
    assert_eq!(sqlstate(&mut a, "SELECT x FROM fresh").await, "42P01");
    a.execute("BEGIN; CREATE TABLE fresh (y text); COMMIT").await.unwrap();
    assert_eq!(query(&mut b, "SELECT count(*) FROM fresh").await, strings(&[&["0"]]));
}

#[tokio::test]
async fn failed_block_refuses_until_rollback_and_commit_rolls_back() {
    let (_volume, engine) = writer().await;
    let mut s = engine.session();
    one(&mut s, "CREATE TABLE t (id int PRIMARY KEY)").await;
    one(&mut s, "BEGIN").await;
    one(&mut s, "INSERT INTO t VALUES (1)").await;
    assert_eq!(sqlstate(&mut s, "SELECT 1/0").await, "22012");
    assert_eq!(s.transaction_status(), TransactionStatus::Failed);
    assert_eq!(sqlstate(&mut s, "SELECT 1").await, "25P02");
    assert_eq!(tag(&one(&mut s, "COMMIT").await), "ROLLBACK");
    assert_eq!(s.transaction_status(), TransactionStatus::Idle);
    assert_eq!(query(&mut s, "SELECT count(*) FROM t").await, strings(&[&["0"]]));
    // Its locks were released: another session can write the same key.
    let mut other = engine.session();
    one(&mut other, "INSERT INTO t VALUES (1)").await;
}

#[tokio::test]
async fn errors_carry_sqlstates_and_leave_the_session_usable() {
    let (_volume, engine) = writer().await;
    let mut s = engine.session();
    one(&mut s, "CREATE TABLE t (id int PRIMARY KEY, name varchar(3) NOT NULL, n int)").await;
    let cases = [
        ("SELEC 1", "42601"),
        ("SELECT * FROM missing", "42P01"),
        ("SELECT nope FROM t", "42703"),
        ("SELECT 1/0", "22012"),
        ("CREATE TABLE t (x int)", "42P07"),
        ("CREATE TABLE u (x money)", "0A000"),
        ("CREATE TABLE u (x int, x int)", "42701"),
        ("INSERT INTO t VALUES (1, NULL, 1)", "23502"),
        ("INSERT INTO t VALUES (NULL, 'a', 1)", "23502"),
        ("INSERT INTO t VALUES (1, 'toolong', 1)", "22001"),
        ("INSERT INTO t VALUES (1, 'a', 1), (1, 'b', 2)", "23505"),
        ("INSERT INTO t VALUES ('x', 'a', 1)", "22P02"),
        ("DROP TABLE missing", "42P01"),
        ("UPDATE missing SET a = 1", "42P01"),
        ("UPDATE t SET nope = 1", "42703"),
        ("SAVEPOINT s", "25P01"),
    ];
    for (sql, want) in cases {
        assert_eq!(sqlstate(&mut s, sql).await, want, "{sql}");
        assert_eq!(query(&mut s, "SELECT count(*) FROM t").await, strings(&[&["0"]]), "after {sql}");
    }
    one(&mut s, "INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2)").await;
    assert_eq!(sqlstate(&mut s, "UPDATE t SET id = 2 WHERE id = 1").await, "23505");
    assert_eq!(sqlstate(&mut s, "UPDATE t SET n = n / 0").await, "22012");
    assert_eq!(tag(&one(&mut s, "UPDATE t SET id = id + 10").await), "UPDATE 2");
    assert_eq!(tag(&one(&mut s, "DROP TABLE IF EXISTS missing").await), "DROP TABLE");
    assert_eq!(tag(&one(&mut s, "CREATE TABLE IF NOT EXISTS t (x int)").await), "CREATE TABLE");
}

#[tokio::test]
async fn subquery_and_false_filters_touch_only_matching_rows() {
    let (_volume, engine) = writer().await;
    let mut s = engine.session();
    one(&mut s, "CREATE TABLE m (id int, v text)").await;
    one(&mut s, "INSERT INTO m VALUES (1, 'a'), (2, 'b'), (3, 'c')").await;
    assert_eq!(tag(&one(&mut s, "DELETE FROM m WHERE false").await), "DELETE 0");
    assert_eq!(tag(&one(&mut s, "UPDATE m SET v = 'ALL?' WHERE id IN (SELECT 99)").await), "UPDATE 0");
    assert_eq!(tag(&one(&mut s, "DELETE FROM m WHERE id IN (SELECT id FROM m WHERE v > 'a')").await), "DELETE 2");
    assert_eq!(query(&mut s, "SELECT id, v FROM m").await, strings(&[&["1", "a"]]));
    assert_eq!(tag(&one(&mut s, "UPDATE m AS x SET v = x.v || '!' WHERE x.id = 1").await), "UPDATE 1");
    assert_eq!(query(&mut s, "SELECT v FROM m").await, strings(&[&["a!"]]));
}

#[tokio::test]
async fn tables_span_many_pages_and_rows_grow() {
    let (_volume, engine) = writer().await;
    let mut s = engine.session();
    one(&mut s, "CREATE TABLE big (id int PRIMARY KEY, pad text)").await;
    one(&mut s, "INSERT INTO big SELECT value, repeat('x', 100) FROM generate_series(1, 3000)").await;
    assert_eq!(query(&mut s, "SELECT count(*), sum(id) FROM big").await, strings(&[&["3000", "4501500"]]));
    // Growing every row forces moves to new pages.
    assert_eq!(tag(&one(&mut s, "UPDATE big SET pad = repeat('y', 400) WHERE id % 2 = 0").await), "UPDATE 1500");
    assert_eq!(
        query(&mut s, "SELECT count(*), sum(length(pad)) FROM big").await,
        strings(&[&["3000", &(1500 * 100 + 1500 * 400).to_string()]])
    );
    assert_eq!(query(&mut s, "SELECT id FROM big ORDER BY id DESC LIMIT 2").await, strings(&[&["3000"], &["2999"]]));
    let mut other = engine.session();
    one(&mut other, "CREATE TABLE small (a int)").await;
    one(&mut other, "INSERT INTO small VALUES (1)").await;
    assert_eq!(query(&mut s, "SELECT count(*) FROM big b JOIN small s ON b.id = s.a").await, strings(&[&["1"]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_scans_return_every_row_once_and_small_tables_in_order() {
    let (_volume, engine) = writer().await;
    let mut s = engine.session();
    one(&mut s, "CREATE TABLE big (id int, pad text)").await;
    // Several loads, so the chain is long and not one run of page ids.
    for chunk in 0..4 {
        let (from, to) = (chunk * 10_000 + 1, (chunk + 1) * 10_000);
        one(&mut s, &format!("INSERT INTO big SELECT value, repeat('x', 50) FROM generate_series({from}, {to})")).await;
        one(&mut s, &format!("CREATE TABLE spacer{chunk} (a int)")).await;
        one(&mut s, &format!("INSERT INTO spacer{chunk} VALUES (1)")).await;
    }
    let expected = strings(&[&["40000", "40000", "800020000", "1", "40000"]]);
    let sql = "SELECT count(*), count(DISTINCT id), sum(id), min(id), max(id) FROM big";
    for _ in 0..3 {
        assert_eq!(query(&mut s, sql).await, expected);
    }
    let plan = query(&mut s, "EXPLAIN SELECT count(*) FROM big").await;
    let text = plan.iter().map(|row| row.join(" ")).collect::<Vec<_>>().join("\n");
    assert!(text.contains("PageScan"), "{text}");
    // A LIMIT stops the scan early and still answers.
    assert_eq!(query(&mut s, "SELECT count(*) FROM (SELECT id FROM big LIMIT 10)").await, strings(&[&["10"]]));
    // Up to a batch of rows, a scan returns rows in chain order.
    one(&mut s, "CREATE TABLE small (id int)").await;
    one(&mut s, "INSERT INTO small SELECT value FROM generate_series(1, 5000)").await;
    let ids: Vec<i64> = query(&mut s, "SELECT id FROM small").await.iter().map(|row| row[0].parse().unwrap()).collect();
    assert_eq!(ids, (1..=5000).collect::<Vec<i64>>());
}

#[tokio::test]
async fn describe_infers_parameter_types_and_execute_binds_them() {
    let (_volume, engine) = writer().await;
    let mut s = engine.session();
    one(&mut s, "CREATE TABLE t (id int PRIMARY KEY, name text, amount numeric(10,2))").await;
    let insert = "INSERT INTO t VALUES ($1, $2, $3)";
    let described = s.describe(insert).await.unwrap();
    assert_eq!(described.param_types, [DataType::Int32, DataType::Utf8, DataType::Decimal128(10, 2)]);
    assert!(described.schema.is_none());
    let params = vec![
        ScalarValue::Int32(Some(1)),
        ScalarValue::Utf8(Some("a".into())),
        ScalarValue::Decimal128(Some(1234), 10, 2),
    ];
    assert_eq!(tag(&s.execute_with_params(insert, params).await.unwrap()), "INSERT 0 1");

    let select = "SELECT name, amount FROM t WHERE id = $1";
    let described = s.describe(select).await.unwrap();
    assert_eq!(described.param_types, [DataType::Int32]);
    let schema = described.schema.unwrap();
    assert_eq!(schema.field(0).name(), "name");
    let out = s.execute_with_params(select, vec![ScalarValue::Int32(Some(1))]).await.unwrap();
    assert_eq!(rows(&out), strings(&[&["a", "12.34"]]));

    let update = "UPDATE t SET name = $1 WHERE id = $2";
    let described = s.describe(update).await.unwrap();
    assert_eq!(described.param_types, [DataType::Utf8, DataType::Int32]);
    let out =
        s.execute_with_params(update, vec![ScalarValue::Utf8(Some("b".into())), ScalarValue::Int32(Some(1))]).await;
    assert_eq!(tag(&out.unwrap()), "UPDATE 1");
    assert_eq!(s.describe("SELECT $1").await.unwrap().param_types, [DataType::Utf8]);
    let error = s.execute_with_params(select, vec![]).await.unwrap_err();
    assert_eq!(error.sqlstate(), "08P01");
    let explained = one(&mut s, "EXPLAIN SELECT * FROM t WHERE id = 1").await;
    let text = rows(&explained).concat().join("\n");
    assert!(text.contains("IndexScan: table=t, index=t_pkey"), "{text}");
}

#[tokio::test]
async fn declared_parameter_types_type_bare_parameters_in_the_result() {
    let (_volume, engine) = writer().await;
    let mut s = engine.session();
    one(&mut s, "CREATE TABLE t (id int PRIMARY KEY, name text)").await;
    let described = s.describe_typed("SELECT $1, $2", &[Some(DataType::Int16), None]).await.unwrap();
    assert_eq!(described.param_types, [DataType::Utf8, DataType::Utf8], "inference is unchanged");
    let schema = described.schema.unwrap();
    assert_eq!((schema.field(0).data_type(), schema.field(1).data_type()), (&DataType::Int16, &DataType::Utf8));
    let described =
        s.describe_typed("SELECT name, $1 AS d FROM t WHERE id = $2", &[Some(DataType::Date32), None]).await.unwrap();
    assert_eq!(described.param_types[1], DataType::Int32);
    let schema = described.schema.unwrap();
    assert_eq!((schema.field(0).name().as_str(), schema.field(1).data_type()), ("name", &DataType::Date32));
    // Execute gives the value the declared type, matching the description.
    let out = s.execute_with_params("SELECT $1", vec![ScalarValue::Int16(Some(-7))]).await.unwrap();
    let QueryOutput::Rows { schema, .. } = &out else { panic!("{out:?}") };
    assert_eq!(schema.field(0).data_type(), &DataType::Int16);
    assert_eq!(rows(&out), strings(&[&["-7"]]));
}

#[tokio::test]
async fn failed_commit_reports_unknown_outcome_and_keeps_the_session_usable() {
    let (volume, engine) = writer().await;
    let mut s = engine.session();
    one(&mut s, "CREATE TABLE t (id int)").await;
    volume.fail_next_commits(1);
    assert_eq!(sqlstate(&mut s, "INSERT INTO t VALUES (1)").await, "08007");
    one(&mut s, "INSERT INTO t VALUES (2)").await;
    assert_eq!(query(&mut s, "SELECT id FROM t").await, strings(&[&["2"]]));
}

#[tokio::test]
async fn session_futures_are_send_for_the_server() {
    fn assert_send<T: Send>(_: &T) {}
    let (_volume, engine) = writer().await;
    let mut s = engine.session();
    let future = s.execute("SELECT 1");
    assert_send(&future);
    future.await.unwrap();
    let future = s.describe("SELECT 1");
    assert_send(&future);
    future.await.unwrap();
    let future = s.execute_with_params("SELECT $1", vec![ScalarValue::Int32(Some(1))]);
    assert_send(&future);
    future.await.unwrap();
}

/// A volume whose page reads yield once, so a statement can be dropped mid-way.
struct YieldingVolume(MemoryVolume);

#[async_trait::async_trait]
impl crate::Volume for YieldingVolume {
    async fn read_page(
        &self,
        page: borealis_storage::ids::PageId,
        read_point: borealis_storage::ids::Lsn,
    ) -> Result<Arc<borealis_storage::page::Page>, crate::VolumeError> {
        tokio::task::yield_now().await;
        self.0.read_page(page, read_point).await
    }
    async fn read_point(&self) -> Result<borealis_storage::ids::Lsn, crate::VolumeError> {
        self.0.read_point().await
    }
    async fn commit(
        &self,
        bodies: Vec<borealis_storage::redo::RedoBody>,
    ) -> Result<borealis_storage::ids::Lsn, crate::VolumeError> {
        self.0.commit(bodies).await
    }
}

#[tokio::test]
async fn a_dropped_statement_fails_its_block() {
    use futures::FutureExt;
    let volume = MemoryVolume::new();
    let engine = Engine::open(Arc::new(YieldingVolume(volume.clone())), false).await.unwrap();
    let mut s = engine.session();
    one(&mut s, "CREATE TABLE t (id int)").await;
    one(&mut s, "BEGIN").await;
    one(&mut s, "INSERT INTO t VALUES (1)").await;
    assert!(s.execute("INSERT INTO t VALUES (2)").now_or_never().is_none(), "statement should be pending");
    assert_eq!(s.transaction_status(), TransactionStatus::Failed);
    assert_eq!(sqlstate(&mut s, "SELECT 1").await, "25P02");
    assert_eq!(tag(&one(&mut s, "COMMIT").await), "ROLLBACK");
    assert_eq!(query(&mut s, "SELECT count(*) FROM t").await, strings(&[&["0"]]));
    // The dropped transaction released its locks.
    one(&mut s, "INSERT INTO t VALUES (3)").await;
    // A dropped implicit transaction rolls back and leaves no block behind.
    assert!(s.execute("INSERT INTO t VALUES (4); INSERT INTO t VALUES (5)").now_or_never().is_none());
    assert_eq!(s.transaction_status(), TransactionStatus::Idle);
    assert_eq!(query(&mut s, "SELECT id FROM t").await, strings(&[&["3"]]));
}

#[tokio::test]
async fn several_statements_form_one_implicit_transaction() {
    let (_volume, engine) = writer().await;
    let mut s = engine.session();
    let outputs =
        s.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1); SELECT count(*) FROM t").await;
    let outputs = outputs.unwrap();
    assert_eq!(rows(&outputs[2]), strings(&[&["1"]]));
    assert_eq!(s.transaction_status(), TransactionStatus::Idle);
    let error = s.execute("INSERT INTO t VALUES (2); INSERT INTO t VALUES (1)").await.unwrap_err();
    assert_eq!(error.sqlstate(), "23505");
    assert_eq!(s.transaction_status(), TransactionStatus::Idle);
    assert_eq!(query(&mut s, "SELECT id FROM t").await, strings(&[&["1"]]));
    // An explicit BEGIN inside the string keeps the block open after it.
    s.execute("BEGIN; INSERT INTO t VALUES (5)").await.unwrap();
    assert_eq!(s.transaction_status(), TransactionStatus::InBlock);
    one(&mut s, "ROLLBACK").await;
    assert_eq!(query(&mut s, "SELECT count(*) FROM t").await, strings(&[&["1"]]));
}

#[tokio::test]
async fn postgres_identity_functions() {
    let (_volume, engine) = writer().await;
    let mut s = engine.session();
    let out = query(&mut s, "SELECT version(), current_schema(), current_database()").await;
    assert!(out[0][0].starts_with("PostgreSQL 16.6 (Borealis"), "{out:?}");
    assert_eq!(out[0][1..], ["public".to_string(), "postgres".to_string()]);
}

#[tokio::test]
async fn result_columns_carry_postgres_names() {
    let (_volume, engine) = writer().await;
    let mut s = engine.session();
    one(&mut s, "CREATE TABLE t (id int4, name text)").await;
    one(&mut s, "INSERT INTO t VALUES (1, 'a'), (2, 'b')").await;
    let output =
        one(&mut s, "SELECT count(*), max(t.name), id + 1, 1, 2, name AS label FROM t GROUP BY id, name").await;
    let QueryOutput::Rows { schema, batches } = &output else { panic!("expected rows") };
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["count", "max", "?column?", "?column?", "?column?", "label"]);
    assert_eq!(batches[0].schema(), *schema);
    let described = s.describe("SELECT count(*) FROM t WHERE id = $1").await.unwrap();
    assert_eq!(described.schema.unwrap().field(0).name(), "count");
}

#[tokio::test]
async fn a_batch_reports_statements_before_its_error_and_rolls_them_back() {
    let (_volume, engine) = writer().await;
    let mut s = engine.session();
    one(&mut s, "CREATE TABLE t (id int4)").await;
    let (outputs, error) = s.execute_batch("INSERT INTO t VALUES (1); SELECT 1 / 0; INSERT INTO t VALUES (2)").await;
    assert_eq!(outputs.len(), 1);
    assert_eq!(tag(&outputs[0]), "INSERT 0 1");
    assert_eq!(error.map(|e| e.sqlstate()), Some("22012"));
    assert_eq!(s.transaction_status(), TransactionStatus::Idle);
    assert_eq!(query(&mut s, "SELECT count(*) FROM t").await, strings(&[&["0"]]));
}

#[tokio::test]
async fn current_timestamp_works_in_inserts_and_queries() {
    let (_volume, engine) = writer().await;
    let mut s = engine.session();
    one(&mut s, "CREATE TABLE h (id int4, at timestamp)").await;
    one(&mut s, "INSERT INTO h VALUES (1, CURRENT_TIMESTAMP), (2, now())").await;
    let out = query(&mut s, "SELECT count(*) FROM h WHERE at <= now() AND at > now() - INTERVAL '1 minute'").await;
    assert_eq!(out, strings(&[&["2"]]));
}

#[tokio::test]
async fn explain_shows_the_index_scan_and_point_dml_uses_it() {
    let (_volume, engine) = writer().await;
    let mut session = engine.session();
    one(&mut session, "CREATE TABLE t (id bigint PRIMARY KEY, v int)").await;
    one(&mut session, "INSERT INTO t SELECT v, v * 1 FROM generate_series(1, 100) AS g(v)").await;
    let plan = |rows: Vec<Vec<String>>| rows.iter().map(|r| r.join(" ")).collect::<Vec<_>>().join("\n");
    let point = plan(query(&mut session, "EXPLAIN SELECT v FROM t WHERE id = 7").await);
    assert!(point.contains("IndexScan: table=t, index=t_pkey, ranges=1"), "{point}");
    let full = plan(query(&mut session, "EXPLAIN SELECT v FROM t WHERE v = 7").await);
    assert!(full.contains("PageScan: table=t") && !full.contains("IndexScan"), "{full}");
    // UPDATE and DELETE read the row-address variant, named by table id (t is the first table).
    let update = plan(query(&mut session, "EXPLAIN SELECT * FROM __borealis_rows.\"1\" WHERE id = 7").await);
    assert!(update.contains("IndexScan"), "{update}");
    assert_eq!(tag(&one(&mut session, "UPDATE t SET v = 70 WHERE id = 7").await), "UPDATE 1");
    assert_eq!(tag(&one(&mut session, "DELETE FROM t WHERE id = 8").await), "DELETE 1");
    let described = session.describe("SELECT v FROM t WHERE id = $1").await.unwrap();
    assert_eq!(described.param_types, vec![DataType::Int64]);
    let output = session.execute_with_params("SELECT v FROM t WHERE id = $1", vec![ScalarValue::Int64(Some(7))]).await;
    assert_eq!(rows(&output.unwrap()), strings(&[&["70"]]));
}

#[tokio::test]
async fn copy_from_stdin_streams_rows_checks_them_and_is_atomic() {
    let (volume, engine) = writer().await;
    let mut session = engine.session();
    one(&mut session, "CREATE TABLE t (id int PRIMARY KEY, name text, code char(3), amount numeric(8,2))").await;
    let started = one(&mut session, "COPY t (id, name, amount) FROM STDIN").await;
    assert!(matches!(started, QueryOutput::CopyIn { columns: 3 }), "{started:?}");
    // Rows split anywhere across CopyData messages.
    session.copy_data(b"1\tann\t1.50\n2\t\\N\t").await;
    session.copy_data(b"2\n3\tcy\t\\N\n").await;
    assert_eq!(tag(&session.copy_done().await.unwrap()), "COPY 3");
    assert_eq!(
        query(&mut session, "SELECT id, name, code, amount FROM t ORDER BY id").await,
        strings(&[&["1", "ann", "NULL", "1.50"], &["2", "NULL", "NULL", "2.00"], &["3", "cy", "NULL", "NULL"]])
    );
    // CSV with a header; a duplicate key fails the whole COPY.
    one(&mut session, "COPY t FROM STDIN WITH (FORMAT csv, HEADER true)").await;
    session.copy_data(b"id,name,code,amount\n4,\"d, e\",ab,1\n1,dup,x,1\n").await;
    assert_eq!(session.copy_done().await.unwrap_err().sqlstate(), "23505");
    assert_eq!(query(&mut session, "SELECT count(*) FROM t").await, strings(&[&["3"]]));
    // Bad values and wrong field counts are 22P02 / 22P04; a client abort is 57014.
    one(&mut session, "COPY t FROM STDIN").await;
    session.copy_data(b"5\tx\tabc\tnot-a-number\n").await;
    assert_eq!(session.copy_done().await.unwrap_err().sqlstate(), "22P02");
    one(&mut session, "CREATE TABLE days (day date, at timestamp)").await;
    one(&mut session, "COPY days FROM STDIN").await;
    session.copy_data(b"2024-01-01\tnot-a-timestamp\n").await;
    assert_eq!(session.copy_done().await.unwrap_err().sqlstate(), "22007", "as PostgreSQL's timestamp input");
    one(&mut session, "COPY t FROM STDIN").await;
    session.copy_data(b"5\tx\n").await;
    assert_eq!(session.copy_done().await.unwrap_err().sqlstate(), "22P04");
    one(&mut session, "COPY t FROM STDIN").await;
    session.copy_data(b"5\tx\tabc\t1\n").await;
    assert_eq!(session.copy_fail("client gave up").sqlstate(), "57014");
    // Inside a block the rows are the block's: gone with ROLLBACK.
    one(&mut session, "BEGIN").await;
    one(&mut session, "COPY t FROM STDIN").await;
    session.copy_data(b"6\tf\tabc\t6\n").await;
    assert_eq!(tag(&session.copy_done().await.unwrap()), "COPY 1");
    assert_eq!(query(&mut session, "SELECT code || '|' FROM t WHERE id = 6").await, strings(&[&["abc|"]]));
    one(&mut session, "ROLLBACK").await;
    assert_eq!(query(&mut session, "SELECT count(*) FROM t").await, strings(&[&["3"]]));
    // Committed rows are on the volume: a reader sees them.
    let reader = Engine::open(Arc::new(volume.reader()), true).await.unwrap();
    assert_eq!(query(&mut reader.session(), "SELECT count(*) FROM t WHERE id = 2").await, strings(&[&["1"]]));
    assert_eq!(sqlstate(&mut reader.session(), "COPY t FROM STDIN").await, "25006");
}

#[tokio::test]
async fn returning_gives_the_written_rows_with_dml_tags() {
    let (_volume, engine) = writer().await;
    let mut session = engine.session();
    one(&mut session, "CREATE TABLE t (id int PRIMARY KEY, name text, score float8)").await;
    let inserted = one(&mut session, "INSERT INTO t VALUES (1, 'a', 1.5), (2, 'b', NULL) RETURNING *").await;
    assert!(matches!(inserted, QueryOutput::Returning { command: "INSERT 0", .. }), "{inserted:?}");
    assert_eq!(rows(&inserted), strings(&[&["1", "a", "1.5"], &["2", "b", "NULL"]]));
    let QueryOutput::Returning { schema, .. } = &inserted else { unreachable!() };
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["id", "name", "score"]);
    let updated =
        one(&mut session, "UPDATE t AS x SET score = 9 WHERE id = 2 RETURNING x.id, upper(name), score * 2 AS doubled")
            .await;
    assert_eq!(rows(&updated), strings(&[&["2", "B", "18.0"]]));
    let QueryOutput::Returning { schema, .. } = &updated else { panic!("{updated:?}") };
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["id", "upper", "doubled"]);
    let deleted = one(&mut session, "DELETE FROM t WHERE id = 1 RETURNING name").await;
    assert!(matches!(deleted, QueryOutput::Returning { command: "DELETE", .. }));
    assert_eq!(rows(&deleted), strings(&[&["a"]]));
    assert_eq!(tag(&one(&mut session, "DELETE FROM t WHERE id = 7").await), "DELETE 0");
    // Extended protocol: Describe reports the RETURNING columns.
    let described = session.describe("INSERT INTO t (id, name) VALUES ($1, $2) RETURNING id, name").await.unwrap();
    assert_eq!(described.param_types, vec![DataType::Int32, DataType::Utf8]);
    let fields: Vec<String> = described.schema.unwrap().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(fields, ["id", "name"]);
    let out = session
        .execute_with_params(
            "INSERT INTO t (id, name) VALUES ($1, $2) RETURNING id, name",
            vec![ScalarValue::Int32(Some(5)), ScalarValue::Utf8(Some("e".into()))],
        )
        .await
        .unwrap();
    assert_eq!(rows(&out), strings(&[&["5", "e"]]));
    assert_eq!(query(&mut session, "SELECT count(*) FROM t").await, strings(&[&["2"]]));
}

/// The types of the columns of `sql`'s result.
async fn column_types(session: &mut Session, sql: &str) -> Vec<DataType> {
    let QueryOutput::Rows { schema, .. } = one(session, sql).await else { panic!("{sql}: no rows") };
    schema.fields().iter().map(|f| f.data_type().clone()).collect()
}

#[tokio::test]
async fn integer_literals_are_int4_when_they_fit_and_arithmetic_is_checked() {
    let (_volume, engine) = writer().await;
    let mut session = engine.session();
    one(&mut session, "CREATE TABLE nums (id int8 PRIMARY KEY, small int2, mid int4)").await;
    one(&mut session, "INSERT INTO nums VALUES (1, 2, 3), (9000000000, 4, 2147483647)").await;
    use DataType::{Int32, Int64};
    assert_eq!(column_types(&mut session, "SELECT 1, -5, 2147483648, 1 + 2").await, [Int32, Int32, Int64, Int32]);
    assert_eq!(
        column_types(&mut session, "SELECT id + 1, mid - 1, small + 1, count(*) + 1 FROM nums GROUP BY id, mid, small")
            .await,
        [Int64, Int32, Int32, Int64]
    );
    assert_eq!(query(&mut session, "SELECT id FROM nums WHERE id = 1 + 0 ORDER BY 1 LIMIT 1 OFFSET 0").await, [["1"]]);
    assert_eq!(query(&mut session, "SELECT id FROM nums WHERE id > 2147483647").await, [["9000000000"]]);
    assert_eq!(query(&mut session, "SELECT 2147483647 + 1::int8, 7 * 6 - 2").await, [["2147483648", "40"]]);
    // PostgreSQL: 22003 integer out of range, whatever the operator.
    for sql in [
        "SELECT 2147483647 + 1",
        "SELECT -2147483647 - 2",
        "SELECT 65536 * 65536",
        "SELECT mid + 1 FROM nums WHERE id = 9000000000",
        "SELECT 9223372036854775807 + id FROM nums",
        "SELECT small * CAST(20000 AS smallint) FROM nums",
    ] {
        assert_eq!(sqlstate(&mut session, sql).await, "22003", "{sql}");
    }
    let error = session.execute("SELECT 2147483647 + 1").await.unwrap_err();
    assert_eq!(error.message(), "integer out of range");
}

#[tokio::test]
async fn described_integer_literals_have_the_executed_type() {
    let (_volume, engine) = writer().await;
    let mut session = engine.session();
    let described = session.describe("SELECT 1 AS one, 2147483648 AS big, 1 + 1 AS two").await.unwrap();
    let types: Vec<DataType> =
        described.schema.expect("a query has a schema").fields().iter().map(|f| f.data_type().clone()).collect();
    assert_eq!(types, [DataType::Int32, DataType::Int64, DataType::Int32]);
}

#[tokio::test]
async fn sequence_values_are_never_repeated_across_sessions_rollbacks_and_restarts() {
    let (volume, engine) = writer().await;
    let mut a = engine.session();
    let mut b = engine.session();
    one(&mut a, "CREATE SEQUENCE s").await;
    one(&mut a, "CREATE TABLE t (v bigint PRIMARY KEY)").await;
    let mut seen = std::collections::HashSet::new();
    let mut take = |values: Vec<Vec<String>>| {
        for row in values {
            let value: i64 = row[0].parse().expect("a number");
            assert!(seen.insert(value), "value {value} handed out twice");
        }
    };
    // Interleaved sessions, more values than one high-water step.
    for _ in 0..20 {
        take(query(&mut a, "SELECT nextval('s') FROM generate_series(1, 3)").await);
        take(query(&mut b, "SELECT nextval('s')").await);
    }
    // Values taken inside a write transaction that rolls back: their mark is
    // written in a commit of its own while the transaction is open.
    one(&mut a, "BEGIN").await;
    one(&mut a, "INSERT INTO t SELECT nextval('s') FROM generate_series(1, 100)").await;
    take(query(&mut a, "SELECT v FROM t").await);
    one(&mut a, "ROLLBACK").await;
    drop((a, b));
    // A new engine on the volume (a restart or a new writer) continues above every value.
    let engine = Engine::open(Arc::new(volume.clone()), false).await.expect("reopen");
    let mut c = engine.session();
    take(query(&mut c, "SELECT nextval('s') FROM generate_series(1, 50)").await);
    assert_eq!(sqlstate(&mut c, "SELECT currval('nope')").await, "42P01");
    // Concurrent sessions on tasks.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut session = engine.session();
        tasks.push(tokio::spawn(async move {
            let mut values = Vec::new();
            for _ in 0..40 {
                values.extend(query(&mut session, "SELECT nextval('s')").await);
            }
            values
        }));
    }
    for task in tasks {
        take(task.await.expect("task"));
    }
    // A reader refuses nextval and setval.
    let reader = Engine::open(Arc::new(volume.clone()), true).await.expect("open reader");
    let mut r = reader.session();
    assert_eq!(sqlstate(&mut r, "SELECT nextval('s')").await, "25006");
    assert_eq!(sqlstate(&mut r, "SELECT setval('s', 5)").await, "25006");
}

#[tokio::test]
async fn prepared_insert_returning_gives_serial_values() {
    let (_volume, engine) = writer().await;
    let mut session = engine.session();
    one(&mut session, "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL)").await;
    let sql = "INSERT INTO users (name) VALUES ($1) RETURNING id";
    let described = session.describe(sql).await.expect("describe");
    assert_eq!(described.param_types, vec![DataType::Utf8]);
    for (name, id) in [("ann", "1"), ("bob", "2")] {
        let output =
            session.execute_with_params(sql, vec![ScalarValue::Utf8(Some(name.into()))]).await.expect("insert");
        assert_eq!(rows(&output), strings(&[&[id]]));
    }
}

#[tokio::test]
async fn prepared_upsert_binds_parameters_of_do_update() {
    let (_volume, engine) = writer().await;
    let mut session = engine.session();
    one(&mut session, "CREATE TABLE counters (name text PRIMARY KEY, hits int NOT NULL)").await;
    // $3 appears only in DO UPDATE: Describe types it from the column it is assigned to.
    let sql = "INSERT INTO counters VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET hits = counters.hits + $3 \
               RETURNING hits";
    let described = session.describe(sql).await.expect("describe");
    assert_eq!(described.param_types, vec![DataType::Utf8, DataType::Int32, DataType::Int32]);
    for expected in ["1", "6", "11"] {
        let params =
            vec![ScalarValue::Utf8(Some("home".into())), ScalarValue::Int32(Some(1)), ScalarValue::Int32(Some(5))];
        let output = session.execute_with_params(sql, params).await.expect("upsert");
        assert_eq!(rows(&output), strings(&[&[expected]]));
    }
}

#[tokio::test]
async fn prepared_queries_reuse_their_plan_until_the_catalog_or_settings_change() {
    let (_volume, engine) = writer().await;
    let mut session = engine.session();
    one(&mut session, "CREATE TABLE accounts (id int PRIMARY KEY, balance int)").await;
    one(&mut session, "INSERT INTO accounts SELECT n, n * 10 FROM generate_series(1, 50) AS s(n)").await;
    async fn execute(session: &mut Session, id: ScalarValue) -> Vec<Vec<String>> {
        let sql = "SELECT balance FROM accounts WHERE id = $1";
        rows(&session.execute_with_params(sql, vec![id]).await.expect("execute"))
    }
    // Each execution binds its own value (also one of another integer width).
    assert_eq!(execute(&mut session, ScalarValue::Int32(Some(7))).await, strings(&[&["70"]]));
    assert_eq!(execute(&mut session, ScalarValue::Int32(Some(42))).await, strings(&[&["420"]]));
    assert_eq!(execute(&mut session, ScalarValue::Int64(Some(3))).await, strings(&[&["30"]]));
    assert_eq!(execute(&mut session, ScalarValue::Int32(Some(99))).await, Vec::<Vec<String>>::new());
    // Rows written since are seen (the plan holds no snapshot).
    one(&mut session, "UPDATE accounts SET balance = -1 WHERE id = 7").await;
    assert_eq!(execute(&mut session, ScalarValue::Int32(Some(7))).await, strings(&[&["-1"]]));
    // A new catalog version plans again: the table is now another one.
    one(&mut session, "DROP TABLE accounts").await;
    one(&mut session, "CREATE TABLE accounts (id int PRIMARY KEY, balance text)").await;
    one(&mut session, "INSERT INTO accounts VALUES (7, 'seven')").await;
    assert_eq!(execute(&mut session, ScalarValue::Int32(Some(7))).await, strings(&[&["seven"]]));
    // So does a setting: the same text names another schema's table.
    one(&mut session, "CREATE SCHEMA other").await;
    one(&mut session, "CREATE TABLE other.accounts (id int, balance text)").await;
    one(&mut session, "INSERT INTO other.accounts VALUES (7, 'other')").await;
    one(&mut session, "SET search_path = other").await;
    assert_eq!(execute(&mut session, ScalarValue::Int32(Some(7))).await, strings(&[&["other"]]));
    // A stable function is evaluated per execution, never kept in a plan.
    let now = "SELECT now()::text, $1::int";
    let first = rows(&session.execute_with_params(now, vec![ScalarValue::Int32(Some(1))]).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = rows(&session.execute_with_params(now, vec![ScalarValue::Int32(Some(1))]).await.unwrap());
    assert_ne!(first, second);
}

#[tokio::test]
async fn prepared_writes_reuse_their_plan() {
    let (_volume, engine) = writer().await;
    let mut session = engine.session();
    one(&mut session, "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)").await;
    let insert = "INSERT INTO accounts VALUES ($1, $2)";
    let update = "UPDATE accounts SET balance = balance + $1 WHERE id = $2";
    let delete = "DELETE FROM accounts WHERE id = $1";
    for id in 1..=20 {
        let values = vec![ScalarValue::Int32(Some(id)), ScalarValue::Int32(Some(id * 100))];
        assert_eq!(tag(&session.execute_with_params(insert, values).await.unwrap()), "INSERT 0 1");
    }
    for (amount, id) in [(5, 3), (7, 3), (-1, 20), (1, 99)] {
        let values = vec![ScalarValue::Int32(Some(amount)), ScalarValue::Int64(Some(id))];
        let expected = if id == 99 { "UPDATE 0" } else { "UPDATE 1" };
        assert_eq!(tag(&session.execute_with_params(update, values).await.unwrap()), expected);
    }
    for (id, expected) in [(4, "DELETE 1"), (5, "DELETE 1"), (4, "DELETE 0")] {
        let output = session.execute_with_params(delete, vec![ScalarValue::Int32(Some(id))]).await.unwrap();
        assert_eq!(tag(&output), expected);
    }
    assert_eq!(
        query(&mut session, "SELECT id, balance FROM accounts WHERE id IN (3, 4, 5, 20) ORDER BY id").await,
        strings(&[&["3", "312"], &["20", "1999"]])
    );
    // A violated constraint still fails the execution that violates it.
    let values = vec![ScalarValue::Int32(Some(3)), ScalarValue::Int32(Some(0))];
    assert_eq!(session.execute_with_params(insert, values).await.unwrap_err().sqlstate(), "23505");
    assert_eq!(query(&mut session, "SELECT count(*) FROM accounts").await, strings(&[&["18"]]));
}

#[tokio::test]
async fn copy_fills_columns_it_omits_with_their_defaults() {
    let (_volume, engine) = writer().await;
    let mut session = engine.session();
    one(&mut session, "CREATE TABLE t (id serial PRIMARY KEY, name text, n int DEFAULT 7, m int)").await;
    one(&mut session, "INSERT INTO t (name) VALUES ('first')").await;
    one(&mut session, "COPY t (name, m) FROM STDIN").await;
    session.copy_data(b"ann\t1\nbob\t\\N\n").await;
    assert_eq!(tag(&session.copy_done().await.unwrap()), "COPY 2");
    // Given columns keep their values, NULL included.
    one(&mut session, "COPY t (id, name, n) FROM STDIN").await;
    session.copy_data(b"100\tcy\t\\N\n").await;
    assert_eq!(tag(&session.copy_done().await.unwrap()), "COPY 1");
    assert_eq!(
        query(&mut session, "SELECT id, name, n, m FROM t ORDER BY id").await,
        strings(&[
            &["1", "first", "7", "NULL"],
            &["2", "ann", "7", "1"],
            &["3", "bob", "7", "NULL"],
            &["100", "cy", "NULL", "NULL"]
        ])
    );
    assert_eq!(query(&mut session, "SELECT nextval('t_id_seq')").await, strings(&[&["4"]]));
}

#[tokio::test]
async fn copy_from_stdin_enforces_check_and_foreign_key_constraints() {
    let (_volume, engine) = writer().await;
    let mut session = engine.session();
    one(&mut session, "CREATE TABLE p (id int PRIMARY KEY)").await;
    one(&mut session, "CREATE TABLE c (id int CHECK (id > 0), p_id int REFERENCES p)").await;
    one(&mut session, "INSERT INTO p VALUES (1), (2)").await;
    one(&mut session, "COPY c FROM STDIN").await;
    session.copy_data(b"1\t1\n2\t\\N\n3\t2\n").await;
    assert_eq!(tag(&session.copy_done().await.unwrap()), "COPY 3");
    one(&mut session, "COPY c FROM STDIN").await;
    session.copy_data(b"4\t1\n-5\t1\n").await;
    let error = session.copy_done().await.unwrap_err();
    assert_eq!(error.sqlstate(), "23514");
    assert_eq!(error.message(), "new row for relation \"c\" violates check constraint \"c_id_check\"");
    assert_eq!(error.detail(), Some("Failing row contains (-5, 1)."));
    one(&mut session, "COPY c FROM STDIN WITH (FORMAT csv)").await;
    session.copy_data(b"6,1\n7,5\n").await;
    let error = session.copy_done().await.unwrap_err();
    assert_eq!(error.sqlstate(), "23503");
    assert_eq!(error.message(), "insert or update on table \"c\" violates foreign key constraint \"c_p_id_fkey\"");
    assert_eq!(error.detail(), Some("Key (p_id)=(5) is not present in table \"p\"."));
    assert_eq!(query(&mut session, "SELECT count(*) FROM c").await, strings(&[&["3"]]));
    let error = session.execute("DELETE FROM p WHERE id = 2").await.unwrap_err();
    assert_eq!(
        error.message(),
        "update or delete on table \"p\" violates foreign key constraint \"c_p_id_fkey\" on table \"c\""
    );
    assert_eq!(error.detail(), Some("Key (id)=(2) is still referenced from table \"c\"."));
}

/// Rewrites the volume's meta with `format_version`, as an older (or newer) build left it.
async fn set_format_version(volume: &MemoryVolume, format_version: u32) {
    use crate::volume::Volume;
    let read_point = volume.read_point().await.unwrap();
    let mut writes = crate::heap::WriteSet::new(Arc::new(volume.clone()), read_point, Default::default());
    let mut meta = writes.meta().await.unwrap();
    meta.format_version = format_version;
    writes.set_meta(&meta).await.unwrap();
    volume.commit(writes.into_parts().0).await.unwrap();
}

#[tokio::test]
async fn a_format_3_volume_opens_and_its_first_constraint_raises_its_format() {
    let (volume, engine) = writer().await;
    let mut session = engine.session();
    one(&mut session, "CREATE TABLE p (id int PRIMARY KEY)").await;
    drop(session);
    set_format_version(&volume, 3).await;
    let engine = Engine::open(Arc::new(volume.clone()), false).await.expect("a format-3 volume opens");
    let mut session = engine.session();
    one(&mut session, "INSERT INTO p VALUES (1)").await;
    one(&mut session, "CREATE TABLE c (p_id int REFERENCES p)").await;
    let read_point = crate::volume::Volume::read_point(&volume).await.unwrap();
    let writes = crate::heap::WriteSet::new(Arc::new(volume.clone()), read_point, Default::default());
    assert_eq!(writes.meta().await.unwrap().format_version, crate::catalog::FORMAT_VERSION);
    // A volume of a format this build does not know is refused with a clear error.
    let newer = crate::catalog::FORMAT_VERSION + 1;
    set_format_version(&volume, newer).await;
    let Err(error) = Engine::open(Arc::new(volume.clone()), false).await else { panic!("opened a newer volume") };
    assert_eq!(error.sqlstate(), "0A000");
    assert!(error.message().contains(&format!("volume format {newer} is not supported")), "{error}");
}

#[tokio::test]
async fn a_format_5_volume_keeps_its_tables_in_public_and_its_first_schema_raises_its_format() {
    let (volume, engine) = writer().await;
    let mut session = engine.session();
    one(&mut session, "CREATE TABLE t (id int PRIMARY KEY)").await;
    one(&mut session, "INSERT INTO t VALUES (1)").await;
    drop(session);
    set_format_version(&volume, 5).await;
    let engine = Engine::open(Arc::new(volume.clone()), false).await.expect("a format-5 volume opens");
    let mut session = engine.session();
    assert_eq!(query(&mut session, "SELECT id FROM public.t").await, strings(&[&["1"]]));
    one(&mut session, "CREATE SCHEMA app").await;
    one(&mut session, "CREATE TABLE app.t (id int PRIMARY KEY, w text)").await;
    one(&mut session, "INSERT INTO app.t VALUES (2, 'two')").await;
    let read_point = crate::volume::Volume::read_point(&volume).await.unwrap();
    let writes = crate::heap::WriteSet::new(Arc::new(volume.clone()), read_point, Default::default());
    assert_eq!(writes.meta().await.unwrap().format_version, crate::catalog::FORMAT_VERSION);
    drop(session);
    // After a restart the schema, its table and the placement are read back from the volume.
    let engine = Engine::open(Arc::new(volume.clone()), false).await.expect("reopen");
    let mut session = engine.session();
    assert_eq!(query(&mut session, "SELECT id FROM t").await, strings(&[&["1"]]));
    assert_eq!(query(&mut session, "SELECT id, w FROM app.t").await, strings(&[&["2", "two"]]));
    one(&mut session, "SET search_path = app").await;
    assert_eq!(query(&mut session, "SELECT id FROM t").await, strings(&[&["2"]]));
    assert_eq!(
        query(&mut session, "SELECT nspname FROM pg_namespace WHERE nspname = 'app'").await,
        strings(&[&["app"]])
    );
    let error = session.execute("DROP SCHEMA app").await.unwrap_err();
    assert_eq!(error.sqlstate(), "2BP01");
    assert_eq!(error.message(), "cannot drop schema app because other objects depend on it");
    one(&mut session, "DROP SCHEMA app CASCADE").await;
    drop(session);
    let engine = Engine::open(Arc::new(volume.clone()), false).await.expect("reopen");
    let mut session = engine.session();
    let error = session.execute("SELECT * FROM app.t").await.unwrap_err();
    assert_eq!((error.sqlstate(), error.message()), ("42P01", "relation \"app.t\" does not exist"));
    let error = session.execute("CREATE TABLE app.u (a int)").await.unwrap_err();
    assert_eq!((error.sqlstate(), error.message()), ("3F000", "schema \"app\" does not exist"));
    assert_eq!(query(&mut session, "SELECT id FROM t").await, strings(&[&["1"]]));
}

#[tokio::test]
async fn copy_takes_qualified_names_and_follows_search_path() {
    let (_volume, engine) = writer().await;
    let mut session = engine.session();
    one(&mut session, "CREATE SCHEMA app").await;
    one(&mut session, "CREATE TABLE t (a int)").await;
    one(&mut session, "CREATE TABLE app.t (a int, b text)").await;
    one(&mut session, "COPY app.t FROM STDIN").await;
    session.copy_data(b"1\tone\n2\ttwo\n").await;
    assert_eq!(tag(&session.copy_done().await.unwrap()), "COPY 2");
    one(&mut session, "SET search_path = app").await;
    one(&mut session, "COPY t (a) FROM STDIN WITH (FORMAT csv)").await;
    session.copy_data(b"3\n").await;
    assert_eq!(tag(&session.copy_done().await.unwrap()), "COPY 1");
    one(&mut session, "RESET search_path").await;
    assert_eq!(query(&mut session, "SELECT count(*) FROM t").await, strings(&[&["0"]]));
    assert_eq!(
        query(&mut session, "SELECT a, b FROM app.t ORDER BY a").await,
        strings(&[&["1", "one"], &["2", "two"], &["3", "NULL"]])
    );
    let outputs = session.execute("COPY app.t TO STDOUT").await.unwrap();
    assert!(matches!(outputs.last(), Some(QueryOutput::CopyOut { .. })), "{outputs:?}");
    // As PostgreSQL: a missing schema is named before the relation.
    let error = session.execute("COPY nowhere.t FROM STDIN").await.unwrap_err();
    assert_eq!((error.sqlstate(), error.message()), ("3F000", "schema \"nowhere\" does not exist"));
    let error = session.execute("COPY nowhere.t TO STDOUT").await.unwrap_err();
    assert_eq!(error.sqlstate(), "3F000");
    let error = session.execute("COPY app.missing FROM STDIN").await.unwrap_err();
    assert_eq!((error.sqlstate(), error.message()), ("42P01", "relation \"app.missing\" does not exist"));
}

#[tokio::test]
async fn alter_table_if_exists_forms_skip_with_postgres_notices() {
    let (_volume, engine) = writer().await;
    let mut session = engine.session();
    one(&mut session, "CREATE TABLE t (a int)").await;
    one(&mut session, "ALTER TABLE t ADD COLUMN IF NOT EXISTS a text").await;
    one(&mut session, "ALTER TABLE t DROP COLUMN IF EXISTS b").await;
    one(&mut session, "ALTER TABLE IF EXISTS missing ADD COLUMN b int").await;
    assert_eq!(
        session.take_notices(),
        [
            "column \"a\" of relation \"t\" already exists, skipping",
            "column \"b\" of relation \"t\" does not exist, skipping",
            "relation \"missing\" does not exist, skipping",
        ]
    );
    one(&mut session, "CREATE TABLE p (id int PRIMARY KEY)").await;
    one(&mut session, "CREATE TABLE c (pid int REFERENCES p (id))").await;
    let error = session.execute("ALTER TABLE p DROP COLUMN id").await.unwrap_err();
    assert_eq!(
        (error.sqlstate(), error.message()),
        ("2BP01", "cannot drop column id of table p because other objects depend on it")
    );
    one(&mut session, "ALTER TABLE p ADD COLUMN v int, DROP COLUMN id CASCADE").await;
    assert_eq!(session.take_notices(), ["drop cascades to constraint c_pid_fkey on table c"]);
    let error = session.execute("ALTER TABLE c ADD COLUMN pid int").await.unwrap_err();
    assert_eq!((error.sqlstate(), error.message()), ("42701", "column \"pid\" of relation \"c\" already exists"));
}

#[tokio::test]
async fn a_format_6_volume_takes_added_columns_as_is_and_its_first_dropped_column_raises_its_format() {
    let (volume, engine) = writer().await;
    let mut session = engine.session();
    one(&mut session, "CREATE TABLE t (a int PRIMARY KEY, b text, c int)").await;
    one(&mut session, "INSERT INTO t VALUES (1, 'one', 10)").await;
    drop(session);
    set_format_version(&volume, 6).await;
    let engine = Engine::open(Arc::new(volume.clone()), false).await.expect("a format-6 volume opens");
    let mut session = engine.session();
    let format = || async {
        let read_point = crate::volume::Volume::read_point(&volume).await.unwrap();
        let writes = crate::heap::WriteSet::new(Arc::new(volume.clone()), read_point, Default::default());
        writes.meta().await.unwrap().format_version
    };
    one(&mut session, "ALTER TABLE t ADD COLUMN d int DEFAULT 4, RENAME COLUMN b TO bb").await;
    assert_eq!(format().await, 6, "a table without dropped columns is a row format 6 reads");
    one(&mut session, "ALTER TABLE t DROP COLUMN bb").await;
    assert_eq!(format().await, crate::catalog::FORMAT_VERSION);
    drop(session);
    let engine = Engine::open(Arc::new(volume.clone()), false).await.expect("reopen");
    let mut session = engine.session();
    one(&mut session, "ALTER TABLE t ADD COLUMN e int").await;
    assert_eq!(
        query(&mut session, "SELECT attname, attnum FROM pg_attribute WHERE attrelid = 't'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum").await,
        strings(&[&["a", "1"], &["c", "3"], &["d", "4"], &["e", "5"]])
    );
    assert_eq!(query(&mut session, "SELECT a, c, d, e FROM t").await, strings(&[&["1", "10", "4", "NULL"]]));
}

#[tokio::test]
async fn transactions_changing_the_same_pages_commit_one_on_top_of_the_other() {
    let (_volume, engine) = writer().await;
    let (mut a, mut b) = (engine.session(), engine.session());
    one(&mut a, "CREATE TABLE t (id int PRIMARY KEY, v text)").await;
    one(&mut a, "INSERT INTO t SELECT g, 'x' FROM generate_series(1, 10) AS g").await;
    one(&mut a, "BEGIN").await;
    one(&mut b, "BEGIN").await;
    // Both append to the chain's last page and split the same index leaves.
    one(&mut a, "INSERT INTO t SELECT g, repeat('a', 200) FROM generate_series(100, 199) AS g").await;
    one(&mut a, "UPDATE t SET v = 'a' WHERE id = 1").await;
    one(&mut b, "INSERT INTO t SELECT g, repeat('b', 200) FROM generate_series(200, 299) AS g").await;
    one(&mut b, "DELETE FROM t WHERE id = 2").await;
    one(&mut a, "COMMIT").await;
    // READ COMMITTED: b's next statement reads a's commit and its own rows.
    assert_eq!(query(&mut b, "SELECT count(*) FROM t").await, strings(&[&["209"]]));
    one(&mut b, "UPDATE t SET v = 'b' WHERE id = 150").await;
    one(&mut b, "COMMIT").await;
    let mut s = engine.session();
    assert_eq!(query(&mut s, "SELECT count(*) FROM t").await, strings(&[&["209"]]));
    for (id, v) in [(1, "a"), (3, "x"), (150, "b"), (199, "aaa"), (200, "bbb"), (299, "bbb")] {
        let found = query(&mut s, &format!("SELECT left(v, 3) FROM t WHERE id = {id}")).await;
        assert_eq!(found, strings(&[&[v]]), "row {id} by its key");
    }
    assert_eq!(query(&mut s, "SELECT count(*) FROM t WHERE id = 2").await, strings(&[&["0"]]));
    // The index has one entry per row: a unique key is refused, a free one taken.
    assert_eq!(sqlstate(&mut s, "INSERT INTO t VALUES (250, 'again')").await, "23505");
    one(&mut s, "INSERT INTO t VALUES (2, 'again')").await;
}
