//! sqlx (Rust, PostgreSQL driver over tokio) against a running cluster.
//!
//! Goal: a Rust application written with sqlx for PostgreSQL works
//! unmodified. Method: a small pool through the cluster endpoint, then what
//! applications do with it: DDL, prepared statements with bound parameters
//! (sqlx prepares every query and caches it per connection, so repeating a
//! query reuses the named statement), rows into tuples and into a struct
//! with `query_as`, NULLs as `Option`, streaming a larger result,
//! transactions committed and rolled back, and the SQLSTATE of errors.

use borealis_integration::{Cluster, PASSWORD};
use futures::TryStreamExt;
use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::{FromRow, Row};

/// A row of `people`, read with `query_as` (sqlx's derive is a macro
/// feature, kept off to keep the build small; this is what it generates).
#[derive(Debug, PartialEq)]
struct Person {
    id: i64,
    name: String,
    nickname: Option<String>,
    score: f64,
    active: bool,
}

impl<'r> FromRow<'r, PgRow> for Person {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        Ok(Person {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            nickname: row.try_get("nickname")?,
            score: row.try_get("score")?,
            active: row.try_get("active")?,
        })
    }
}

fn code(error: &sqlx::Error) -> Option<String> {
    error.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_pool_queries_transactions_and_errors() -> anyhow::Result<()> {
    let cluster = Cluster::start_new(0)?;
    let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres", cluster.ports.cluster);
    let pool = PgPoolOptions::new().max_connections(2).connect(&url).await?;

    sqlx::query(
        "CREATE TABLE people (id int8 PRIMARY KEY, name text NOT NULL, nickname text, score float8 NOT NULL, \
         active bool NOT NULL)",
    )
    .execute(&pool)
    .await?;

    // One prepared INSERT, executed with different parameters.
    let people = [
        (1_i64, "ada", Some("countess"), 9.5_f64, true),
        (2, "brian", None, 3.25, false),
        (3, "cleo", None, 7.0, true),
    ];
    for (id, name, nickname, score, active) in people {
        let done = sqlx::query("INSERT INTO people (id, name, nickname, score, active) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(name)
            .bind(nickname)
            .bind(score)
            .bind(active)
            .execute(&pool)
            .await?;
        assert_eq!(done.rows_affected(), 1);
    }

    // query_as into a struct and into a tuple; query_scalar.
    let ada: Person = sqlx::query_as("SELECT id, name, nickname, score, active FROM people WHERE id = $1")
        .bind(1_i64)
        .fetch_one(&pool)
        .await?;
    assert_eq!(ada, Person { id: 1, name: "ada".into(), nickname: Some("countess".into()), score: 9.5, active: true });
    let active: Vec<(i64, String, Option<String>)> =
        sqlx::query_as("SELECT id, name, nickname FROM people WHERE active = $1 ORDER BY id")
            .bind(true)
            .fetch_all(&pool)
            .await?;
    assert_eq!(active, vec![(1, "ada".to_string(), Some("countess".to_string())), (3, "cleo".to_string(), None)]);
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM people WHERE score > $1").bind(5.0_f64).fetch_one(&pool).await?;
    assert_eq!(count, 2);
    let missing: Option<Person> = sqlx::query_as("SELECT id, name, nickname, score, active FROM people WHERE id = $1")
        .bind(99_i64)
        .fetch_optional(&pool)
        .await?;
    assert_eq!(missing, None);

    // Streaming a larger result row by row.
    let mut rows = sqlx::query("SELECT x FROM generate_series(1, 5000) AS g(x)").fetch(&pool);
    let mut sum = 0_i64;
    while let Some(row) = rows.try_next().await? {
        sum += row.try_get::<i64, _>(0)?;
    }
    drop(rows);
    assert_eq!(sum, 5000 * 5001 / 2);

    // Transactions: a rolled back insert leaves nothing; a committed one stays.
    let mut transaction = pool.begin().await?;
    sqlx::query("INSERT INTO people VALUES ($1, $2, NULL, 1.0, true)")
        .bind(4_i64)
        .bind("dan")
        .execute(&mut *transaction)
        .await?;
    let inside: i64 = sqlx::query_scalar("SELECT count(*) FROM people").fetch_one(&mut *transaction).await?;
    assert_eq!(inside, 4);
    transaction.rollback().await?;
    let mut transaction = pool.begin().await?;
    sqlx::query("INSERT INTO people VALUES ($1, $2, NULL, 1.0, true)")
        .bind(5_i64)
        .bind("eve")
        .execute(&mut *transaction)
        .await?;
    transaction.commit().await?;
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM people ORDER BY id").fetch_all(&pool).await?;
    assert_eq!(ids, [1, 2, 3, 5]);

    // Errors carry their SQLSTATE, and the pool's connections stay usable.
    let duplicate = sqlx::query("INSERT INTO people VALUES (1, 'again', NULL, 0, false)").execute(&pool).await;
    assert_eq!(duplicate.as_ref().err().and_then(code).as_deref(), Some("23505"), "{duplicate:?}");
    let undefined = sqlx::query("SELECT * FROM nowhere").fetch_all(&pool).await;
    assert_eq!(undefined.as_ref().err().and_then(code).as_deref(), Some("42P01"), "{undefined:?}");
    let mut transaction = pool.begin().await?;
    let failed = sqlx::query("SELECT 1 / $1").bind(0_i32).fetch_one(&mut *transaction).await;
    assert_eq!(failed.as_ref().err().and_then(code).as_deref(), Some("22012"), "{failed:?}");
    let aborted = sqlx::query("SELECT 1").fetch_one(&mut *transaction).await;
    assert_eq!(aborted.as_ref().err().and_then(code).as_deref(), Some("25P02"), "{aborted:?}");
    transaction.rollback().await?;
    for _ in 0..3 {
        let name: String =
            sqlx::query_scalar("SELECT name FROM people WHERE id = $1").bind(3_i64).fetch_one(&pool).await?;
        assert_eq!(name, "cleo");
    }
    pool.close().await;
    Ok(())
}
