//! Transaction isolation and row locking with several real sessions on a
//! real cluster (tokio-postgres against `borealis up`).
//!
//! Goal: what PostgreSQL users rely on holds under concurrency: no lost
//! update at READ COMMITTED, a second writer of a row waits and then sees
//! the committed value, REPEATABLE READ keeps its snapshot and fails with
//! 40001 on a row changed after it, SERIALIZABLE refuses write skew,
//! FOR UPDATE blocks writers until COMMIT, NOWAIT and lock_timeout give
//! 55P03, statement_timeout still cancels a wait, locking reads fail on a
//! reader, and a rolled-back transaction leaves no trace on the writer, on a
//! reader or after a writer restart.
//!
//! Row locks: writers of different rows do not wait for each other; a
//! locking read of one table locks just its rows (SKIP LOCKED hands queue
//! workers distinct jobs, FOR SHARE readers share a row); a
//! deadlock fails one transaction with 40P01; a second insert of a key
//! waits for the first; a child and the delete of its parent wait for each
//! other; concurrent transfers keep the totals and the indexes right.
//!
//! Method: sessions run statements in turn; a statement expected to wait
//! runs in a task, which must still be running after a short sleep (the
//! only evidence of waiting the server offers) and must finish once the
//! holder commits. Every wait is bounded.

use borealis_integration::{Cluster, sqlstate};
use std::time::{Duration, Instant};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

/// How long a statement that must wait is watched before it is released.
const STILL_WAITING: Duration = Duration::from_millis(300);
/// Bound on anything expected to finish (a loaded 2-core machine).
const FINISHES_WITHIN: Duration = Duration::from_secs(30);

async fn int(client: &Client, sql: &str) -> anyhow::Result<i64> {
    Ok(client.query_one(sql, &[]).await?.get(0))
}

/// The SQLSTATE and message `sql` fails with.
async fn failure(client: &Client, sql: &str) -> anyhow::Result<(String, String)> {
    match client.batch_execute(sql).await {
        Ok(()) => anyhow::bail!("{sql} succeeded"),
        Err(error) => {
            let message = error.as_db_error().map(|e| e.message().to_string()).unwrap_or_default();
            Ok((sqlstate(&error).unwrap_or_default(), message))
        }
    }
}

/// Runs `sql` on `client` in a task; the task gives the client back.
fn spawn_batch(
    client: Client,
    sql: &'static str,
) -> tokio::task::JoinHandle<(Client, Result<(), tokio_postgres::Error>)> {
    tokio::spawn(async move {
        let result = client.batch_execute(sql).await;
        (client, result)
    })
}

/// Asserts that `task` is still waiting after [`STILL_WAITING`].
async fn assert_waiting<T>(task: &tokio::task::JoinHandle<T>, what: &str) {
    tokio::time::sleep(STILL_WAITING).await;
    assert!(!task.is_finished(), "{what} did not wait");
}

async fn finished<T>(task: tokio::task::JoinHandle<T>) -> anyhow::Result<T> {
    Ok(tokio::time::timeout(FINISHES_WITHIN, task).await??)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_levels_and_row_locks_behave_as_in_postgres() -> anyhow::Result<()> {
    let cluster = Cluster::start_new(1)?;
    let setup = cluster.connect(cluster.ports.writer).await?;
    setup
        .batch_execute(
            "CREATE TABLE counter (id int PRIMARY KEY, x int8 NOT NULL);
             INSERT INTO counter VALUES (1, 0);
             CREATE TABLE other (id int);
             CREATE TABLE doctors (name text PRIMARY KEY, on_call bool NOT NULL);
             INSERT INTO doctors VALUES ('alice', true), ('bob', true)",
        )
        .await?;

    // READ COMMITTED: concurrent increments wait for each other's row lock
    // and are never lost. REPEATABLE READ and SERIALIZABLE ones that waited
    // for a transaction that changed the row fail with 40001, as in
    // PostgreSQL; retried as applications do, none is lost either.
    const SESSIONS: i64 = 4;
    const INCREMENTS: i64 = 25;
    let rounds = [
        ("UPDATE counter SET x = x + 1 WHERE id = 1", "BEGIN; UPDATE counter SET x = x + 1 WHERE id = 1; COMMIT"),
        (
            "BEGIN ISOLATION LEVEL SERIALIZABLE; UPDATE counter SET x = x + 1 WHERE id = 1; COMMIT",
            "BEGIN ISOLATION LEVEL REPEATABLE READ; UPDATE counter SET x = x + 1 WHERE id = 1; COMMIT",
        ),
    ];
    for (round, (even, odd)) in rounds.into_iter().enumerate() {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for session in 0..SESSIONS {
            let client = cluster.connect(cluster.ports.writer).await?;
            tasks.push(tokio::spawn(async move {
                let mut retries = 0;
                for i in 0..INCREMENTS {
                    let sql = if (session + i) % 2 == 0 { even } else { odd };
                    loop {
                        match client.batch_execute(sql).await {
                            Ok(()) => break,
                            Err(error) if error.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE) => {
                                client.batch_execute("ROLLBACK").await?;
                                retries += 1;
                            }
                            Err(error) => return Err(error.into()),
                        }
                    }
                }
                anyhow::Ok(retries)
            }));
        }
        let mut retries = 0;
        for task in tasks {
            retries += finished(task).await??;
        }
        if round == 0 {
            assert_eq!(retries, 0, "READ COMMITTED increments never fail");
        }
        eprintln!("round {round}: {retries} serialization failures retried");
        let increments = SESSIONS * INCREMENTS;
        eprintln!("{increments} increments from {SESSIONS} sessions (round {round}) in {:?}", started.elapsed());
        let expected = increments * (round as i64 + 1);
        assert_eq!(int(&setup, "SELECT x FROM counter WHERE id = 1").await?, expected);
    }

    // A second UPDATE of the row waits for the first and builds on its committed value.
    let (a, b) = (cluster.connect(cluster.ports.writer).await?, cluster.connect(cluster.ports.writer).await?);
    a.batch_execute("BEGIN; UPDATE counter SET x = 10 WHERE id = 1").await?;
    let second = spawn_batch(b, "UPDATE counter SET x = x * 2 WHERE id = 1");
    assert_waiting(&second, "a second UPDATE of the row").await;
    a.batch_execute("COMMIT").await?;
    let (b, result) = finished(second).await?;
    result?;
    assert_eq!(int(&a, "SELECT x FROM counter WHERE id = 1").await?, 20);

    // REPEATABLE READ: the snapshot of the first statement holds, and a row
    // changed after it cannot be updated (40001).
    a.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").await?;
    assert_eq!(int(&a, "SELECT x FROM counter WHERE id = 1").await?, 20);
    b.batch_execute("UPDATE counter SET x = 21 WHERE id = 1; INSERT INTO counter VALUES (2, 0)").await?;
    assert_eq!(int(&a, "SELECT x FROM counter WHERE id = 1").await?, 20);
    assert_eq!(int(&a, "SELECT count(*) FROM counter").await?, 1);
    let (state, message) = failure(&a, "UPDATE counter SET x = x + 1 WHERE id = 1").await?;
    assert_eq!((state.as_str(), message.as_str()), ("40001", "could not serialize access due to concurrent update"));
    a.batch_execute("ROLLBACK").await?;
    // ... while a write to rows nobody changed since the snapshot commits
    // (row 2 shares its page with row 1), and the block keeps reading its
    // snapshot after it.
    a.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").await?;
    assert_eq!(int(&a, "SELECT count(*) FROM other").await?, 0);
    b.batch_execute("UPDATE counter SET x = 22 WHERE id = 1").await?;
    a.batch_execute("UPDATE counter SET x = x + 5 WHERE id = 2; INSERT INTO other VALUES (1)").await?;
    assert_eq!(int(&a, "SELECT x FROM counter WHERE id = 1").await?, 21);
    assert_eq!(int(&a, "SELECT sum(x)::int8 FROM counter").await?, 26);
    assert_eq!(int(&a, "SELECT count(*) FROM other").await?, 1);
    a.batch_execute("COMMIT").await?;
    assert_eq!(int(&b, "SELECT count(*) FROM other").await?, 1);
    assert_eq!(int(&b, "SELECT sum(x)::int8 FROM counter").await?, 27);

    // SERIALIZABLE: write skew (each reads both doctors on call, then takes
    // one off call) fails for the second to write; a read-only block never fails.
    let c = cluster.connect(cluster.ports.writer).await?;
    c.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY").await?;
    assert_eq!(int(&c, "SELECT count(*) FROM doctors WHERE on_call").await?, 2);
    for client in [&a, &b] {
        client.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE").await?;
        assert_eq!(int(client, "SELECT count(*) FROM doctors WHERE on_call").await?, 2);
    }
    a.batch_execute("UPDATE doctors SET on_call = false WHERE name = 'alice'; COMMIT").await?;
    let (state, _) = failure(&b, "UPDATE doctors SET on_call = false WHERE name = 'bob'").await?;
    assert_eq!(state, "40001");
    b.batch_execute("ROLLBACK").await?;
    assert_eq!(int(&c, "SELECT count(*) FROM doctors WHERE on_call").await?, 2);
    c.batch_execute("COMMIT").await?;
    assert_eq!(int(&b, "SELECT count(*) FROM doctors WHERE on_call").await?, 1);

    // FOR UPDATE blocks a concurrent UPDATE until COMMIT; NOWAIT and
    // lock_timeout give 55P03; statement_timeout still cancels the wait.
    a.batch_execute("BEGIN").await?;
    assert_eq!(int(&a, "SELECT x FROM counter WHERE id = 1 FOR UPDATE").await?, 22);
    let (state, message) = failure(&c, "SELECT x FROM counter WHERE id = 1 FOR UPDATE NOWAIT").await?;
    assert_eq!((state.as_str(), message.as_str()), ("55P03", "could not obtain lock on row in relation \"counter\""));
    c.batch_execute("SET lock_timeout = '100ms'").await?;
    let started = Instant::now();
    let (state, message) = failure(&c, "UPDATE counter SET x = 0 WHERE id = 1").await?;
    assert_eq!((state.as_str(), message.as_str()), ("55P03", "canceling statement due to lock timeout"));
    assert!(started.elapsed() >= Duration::from_millis(100), "lock_timeout fired after {:?}", started.elapsed());
    eprintln!("lock_timeout = 100ms fired after {:?}", started.elapsed());
    c.batch_execute("SET lock_timeout = 0; SET statement_timeout = '100ms'").await?;
    let (state, _) = failure(&c, "UPDATE counter SET x = 0 WHERE id = 1").await?;
    assert_eq!(state, "57014");
    c.batch_execute("RESET statement_timeout").await?;
    let blocked = spawn_batch(b, "UPDATE counter SET x = x + 1 WHERE id = 1");
    assert_waiting(&blocked, "an UPDATE of a row locked FOR UPDATE").await;
    a.batch_execute("UPDATE counter SET x = 100 WHERE id = 1; COMMIT").await?;
    let released = Instant::now();
    let (b, result) = finished(blocked).await?;
    eprintln!("blocked UPDATE finished {:?} after the holder's COMMIT returned", released.elapsed());
    result?;
    assert_eq!(int(&b, "SELECT x FROM counter WHERE id = 1").await?, 101);

    // A reader refuses locking reads, as a PostgreSQL standby does.
    let reader = cluster.connect(cluster.ports.readers[0]).await?;
    let (state, message) = failure(&reader, "SELECT * FROM counter FOR UPDATE").await?;
    assert_eq!(
        (state.as_str(), message.as_str()),
        ("25006", "cannot execute SELECT FOR UPDATE in a read-only transaction")
    );

    // ROLLBACK leaves no trace: on the writer, on a reader, after a writer restart.
    a.batch_execute(
        "BEGIN; INSERT INTO counter VALUES (99, 99); UPDATE counter SET x = -1 WHERE id = 1;
         DELETE FROM doctors; ROLLBACK",
    )
    .await?;
    b.batch_execute("INSERT INTO other VALUES (2)").await?;
    let deadline = Instant::now() + FINISHES_WITHIN;
    while int(&reader, "SELECT count(*) FROM other").await? != 2 {
        anyhow::ensure!(Instant::now() < deadline, "reader never saw the later commit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let untouched = "SELECT (SELECT count(*) FROM counter WHERE id = 99) * 1000000 \
                     + (SELECT x FROM counter WHERE id = 1) * 1000 + (SELECT count(*) FROM doctors)";
    let expected = 101 * 1000 + 2;
    assert_eq!(int(&b, untouched).await?, expected, "writer");
    assert_eq!(int(&reader, untouched).await?, expected, "reader");
    assert!(cluster.kill9_process("writer"), "writer not found");
    let client = cluster.reconnect(cluster.ports.writer).await?;
    assert_eq!(int(&client, untouched).await?, expected, "writer after restart");
    Ok(())
}

/// The SQLSTATE a spawned statement ended with ("" for success).
fn outcome(result: Result<(), tokio_postgres::Error>) -> String {
    match result {
        Ok(()) => String::new(),
        Err(error) => sqlstate(&error).unwrap_or_else(|| error.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_locks_let_writers_of_different_rows_run_together_and_break_deadlocks() -> anyhow::Result<()> {
    let cluster = Cluster::start_new(1)?;
    let setup = cluster.connect(cluster.ports.writer).await?;
    setup
        .batch_execute(
            "CREATE TABLE accounts (id int PRIMARY KEY, balance int8 NOT NULL);
             INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 4) AS g;
             CREATE TABLE parent (id int PRIMARY KEY);
             INSERT INTO parent VALUES (1), (2);
             CREATE TABLE child (id int, parent_id int REFERENCES parent (id))",
        )
        .await?;
    let (a, b) = (cluster.connect(cluster.ports.writer).await?, cluster.connect(cluster.ports.writer).await?);

    // Writers of different rows, and inserters, do not wait for each other.
    a.batch_execute("BEGIN; UPDATE accounts SET balance = balance + 1 WHERE id = 1").await?;
    let other_row =
        spawn_batch(b, "UPDATE accounts SET balance = balance + 1 WHERE id = 2; INSERT INTO accounts VALUES (5, 100)");
    let (b, result) = finished(other_row).await?;
    result?;
    assert_eq!(int(&a, "SELECT balance FROM accounts WHERE id = 2").await?, 101, "READ COMMITTED sees the commit");
    a.batch_execute("COMMIT").await?;
    assert_eq!(int(&b, "SELECT sum(balance)::int8 FROM accounts").await?, 502);

    // A deadlock: each holds a row the other wants. The transaction whose
    // wait closes the cycle fails with 40P01 at once; the other goes on.
    a.batch_execute("BEGIN; UPDATE accounts SET balance = balance - 10 WHERE id = 1").await?;
    b.batch_execute("BEGIN; UPDATE accounts SET balance = balance - 20 WHERE id = 2").await?;
    let first = spawn_batch(a, "UPDATE accounts SET balance = balance + 10 WHERE id = 2");
    assert_waiting(&first, "an UPDATE of a row another transaction changed").await;
    let (state, message) = failure(&b, "UPDATE accounts SET balance = balance + 20 WHERE id = 1").await?;
    assert_eq!((state.as_str(), message.as_str()), ("40P01", "deadlock detected"));
    b.batch_execute("ROLLBACK").await?;
    let (a, result) = finished(first).await?;
    result?;
    a.batch_execute("COMMIT").await?;
    assert_eq!(int(&b, "SELECT balance FROM accounts WHERE id = 1").await?, 91);
    assert_eq!(int(&b, "SELECT balance FROM accounts WHERE id = 2").await?, 111);

    // Two inserts of one key: the second waits for the first and fails if
    // it commits, succeeds if it rolls back. A child row and the delete of
    // its parent wait for each other, and the second fails with 23503 once
    // the first commits, either way round.
    let cases: [(&str, &'static str, &str, &str); 4] = [
        ("INSERT INTO accounts VALUES (10, 0)", "INSERT INTO accounts VALUES (10, 1)", "COMMIT", "23505"),
        ("INSERT INTO accounts VALUES (11, 0)", "INSERT INTO accounts VALUES (11, 1)", "ROLLBACK", ""),
        ("DELETE FROM parent WHERE id = 2", "INSERT INTO child VALUES (1, 2)", "COMMIT", "23503"),
        ("INSERT INTO child VALUES (2, 1)", "DELETE FROM parent WHERE id = 1", "COMMIT", "23503"),
    ];
    let mut b = b;
    for (first, second, end, expected) in cases {
        a.batch_execute(&format!("BEGIN; {first}")).await?;
        let waiting = spawn_batch(b, second);
        assert_waiting(&waiting, second).await;
        a.batch_execute(end).await?;
        let (client, result) = finished(waiting).await?;
        assert_eq!(outcome(result), expected, "{second} after {first}; {end}");
        b = client;
    }
    assert_eq!(int(&a, "SELECT balance FROM accounts WHERE id = 11").await?, 1);
    assert_eq!(int(&b, "SELECT count(*) FROM child").await?, 1);

    // Locking reads of one table lock just the rows they return: another
    // row stays writable, and SKIP LOCKED hands each worker of a queue its
    // own job. FOR SHARE readers share a row; a writer of it waits.
    setup
        .batch_execute(
            "CREATE TABLE jobs (id int PRIMARY KEY, done bool NOT NULL DEFAULT false);
             INSERT INTO jobs (id) SELECT g FROM generate_series(1, 5) AS g",
        )
        .await?;
    a.batch_execute("BEGIN").await?;
    let locked = a.query("SELECT balance FROM accounts WHERE id = $1 FOR UPDATE", &[&1i32]).await?;
    assert_eq!(locked.len(), 1);
    let other_row = spawn_batch(b, "UPDATE accounts SET balance = balance + 1 WHERE id = 3");
    let (b, result) = finished(other_row).await?;
    result?;
    let c = cluster.connect(cluster.ports.writer).await?;
    let (state, _) = failure(&c, "SELECT * FROM accounts WHERE id = 1 FOR UPDATE NOWAIT").await?;
    assert_eq!(state, "55P03");
    a.batch_execute("COMMIT").await?;
    let next_job = "SELECT id::int8 FROM jobs WHERE NOT done ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED";
    let mut taken = Vec::new();
    for worker in [&a, &b, &c] {
        worker.batch_execute("BEGIN").await?;
        taken.push(int(worker, next_job).await?);
    }
    assert_eq!(taken, [1, 2, 3], "each worker takes the first job nobody holds");
    a.batch_execute("UPDATE jobs SET done = true WHERE id = 1; COMMIT; BEGIN").await?;
    assert_eq!(int(&a, next_job).await?, 4, "job 1 is done, 2 and 3 are held");
    for worker in [&a, &b, &c] {
        worker.batch_execute("ROLLBACK").await?;
    }
    a.batch_execute("BEGIN; SELECT * FROM jobs WHERE id = 5 FOR SHARE").await?;
    b.batch_execute("BEGIN; SELECT * FROM jobs WHERE id = 5 FOR SHARE").await?;
    let writer = spawn_batch(c, "UPDATE jobs SET done = true WHERE id = 5");
    assert_waiting(&writer, "an UPDATE of a row two transactions share").await;
    a.batch_execute("COMMIT").await?;
    b.batch_execute("COMMIT").await?;
    let (_, result) = finished(writer).await?;
    result?;
    assert_eq!(int(&a, "SELECT count(*) FROM jobs WHERE done").await?, 2);

    // Transfers between random accounts from several sessions, each a
    // transaction that also appends to a shared history table, so that
    // transactions that changed the same pages commit one on top of the
    // other: money is neither made nor lost, every transfer is in the
    // history once, and the primary key finds every row, on the writer, on
    // a reader and after the writer restarts. Deadlocks are retried.
    setup
        .batch_execute(
            "CREATE TABLE history (id serial PRIMARY KEY, src int NOT NULL, dst int NOT NULL, amount int8 NOT NULL);
             INSERT INTO accounts SELECT g, 1000 FROM generate_series(100, 139) AS g",
        )
        .await?;
    let total_before = int(&setup, "SELECT sum(balance)::int8 FROM accounts").await?;
    const SESSIONS: u64 = 4;
    const TRANSFERS: u64 = 40;
    let mut tasks = Vec::new();
    for session in 0..SESSIONS {
        let client = cluster.connect(cluster.ports.writer).await?;
        tasks.push(tokio::spawn(async move {
            let mut retries = 0u64;
            for n in 0..TRANSFERS {
                let mix = (session * 7919 + n * 104_729) % 1_000_003;
                let (src, dst) = (100 + mix % 40, 100 + (mix / 40 + 1 + mix % 39) % 40);
                let dst = if dst == src { 100 + (src - 99) % 40 } else { dst };
                let sql = format!(
                    "BEGIN; UPDATE accounts SET balance = balance - {n} WHERE id = {src};
                     INSERT INTO history (src, dst, amount) VALUES ({src}, {dst}, {n});
                     UPDATE accounts SET balance = balance + {n} WHERE id = {dst}; COMMIT"
                );
                loop {
                    match client.batch_execute(&sql).await {
                        Ok(()) => break,
                        Err(error) if error.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED) => {
                            client.batch_execute("ROLLBACK").await?;
                            retries += 1;
                        }
                        Err(error) => return Err(anyhow::Error::from(error)),
                    }
                }
            }
            anyhow::Ok(retries)
        }));
    }
    let mut deadlocks = 0;
    for task in tasks {
        deadlocks += finished(task).await??;
    }
    eprintln!("{} transfers from {SESSIONS} sessions, {deadlocks} deadlocks retried", SESSIONS * TRANSFERS);
    let consistent = "SELECT (SELECT sum(balance)::int8 FROM accounts) * 1000000 + (SELECT count(*) FROM history)";
    let expected = total_before * 1_000_000 + (SESSIONS * TRANSFERS) as i64;
    assert_eq!(int(&setup, consistent).await?, expected, "writer");
    // Every history row by its key (an index scan), and every account.
    for id in [1, (SESSIONS * TRANSFERS / 2) as i32, (SESSIONS * TRANSFERS) as i32] {
        let found = setup.query("SELECT amount FROM history WHERE id = $1", &[&id]).await?;
        assert_eq!(found.len(), 1, "history row {id} by its key");
    }
    for row in setup.query("SELECT id, balance FROM accounts", &[]).await? {
        let (id, balance): (i32, i64) = (row.get(0), row.get(1));
        let found = setup.query("SELECT balance FROM accounts WHERE id = $1", &[&id]).await?;
        assert_eq!(found.iter().map(|row| row.get::<_, i64>(0)).collect::<Vec<_>>(), [balance], "account {id}");
    }
    let reader = cluster.connect(cluster.ports.readers[0]).await?;
    let deadline = Instant::now() + FINISHES_WITHIN;
    while int(&reader, consistent).await? != expected {
        anyhow::ensure!(Instant::now() < deadline, "reader never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cluster.kill9_process("writer"), "writer not found");
    let client = cluster.reconnect(cluster.ports.writer).await?;
    assert_eq!(int(&client, consistent).await?, expected, "writer after restart");
    let max_id: i32 = client.query_one("SELECT max(id) FROM history", &[]).await?.get(0);
    client.batch_execute("INSERT INTO history (src, dst, amount) VALUES (1, 2, 0)").await?;
    let next: i32 = client.query_one("SELECT max(id) FROM history", &[]).await?.get(0);
    assert!(next > max_id, "a new row after the restart gets a new key");
    Ok(())
}
