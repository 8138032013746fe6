//! Sequences on a real cluster: SERIAL ids handed out to concurrent clients
//! are unique, INSERT ... RETURNING gives them back through the extended
//! protocol (as ORMs use it), readers see the sequence but refuse nextval,
//! and a writer killed with SIGKILL comes back above every id it handed out
//! (the high-water mark on the volume: values may be skipped, never repeated).

use anyhow::Context;
use borealis_integration::processes::ProcessCluster;
use std::collections::HashSet;

const CLIENTS: usize = 4;
const ROWS_PER_CLIENT: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_ids_are_unique_across_clients_and_a_writer_crash() -> anyhow::Result<()> {
    let mut cluster = ProcessCluster::new(1, 5000)?;
    cluster.start_all().await.context("cluster did not start")?;
    let writer = cluster.connect(cluster.ports.writer).await?;
    writer.batch_execute("CREATE TABLE orders (id bigserial PRIMARY KEY, note text NOT NULL)").await?;

    let mut tasks = Vec::new();
    for client_index in 0..CLIENTS {
        let client = cluster.connect(cluster.ports.writer).await?;
        tasks.push(tokio::spawn(async move {
            let insert = client.prepare("INSERT INTO orders (note) VALUES ($1) RETURNING id").await?;
            let mut ids = Vec::with_capacity(ROWS_PER_CLIENT);
            for row in 0..ROWS_PER_CLIENT {
                let note = format!("client {client_index} row {row}");
                let id: i64 = client.query_one(&insert, &[&note]).await?.get(0);
                ids.push(id);
            }
            anyhow::Ok(ids)
        }));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        for id in task.await?? {
            anyhow::ensure!(ids.insert(id), "id {id} handed out twice");
        }
    }
    let count: i64 = writer.query_one("SELECT count(*) FROM orders", &[]).await?.get(0);
    assert_eq!(count as usize, CLIENTS * ROWS_PER_CLIENT);

    // Values taken by a rolled-back transaction are gone too.
    writer.batch_execute("BEGIN; INSERT INTO orders (note) VALUES ('rolled back'); ROLLBACK").await?;
    let next: i64 = writer.query_one("SELECT nextval('orders_id_seq')", &[]).await?.get(0);
    let highest = *ids.iter().max().expect("ids were handed out");
    anyhow::ensure!(next > highest + 1, "nextval {next} reuses the rolled-back value above {highest}");

    // A reader knows the sequence, but only the writer hands out values.
    let reader = cluster.connect(cluster.ports.readers[0]).await?;
    let error = reader.query_one("SELECT nextval('orders_id_seq')", &[]).await.expect_err("reader refuses nextval");
    assert_eq!(error.code().map(|c| c.code()), Some("25006"));

    drop(writer);
    cluster.kill9("writer")?;
    cluster.start_instance("writer").await?;
    let writer = cluster.connect(cluster.ports.writer).await?;
    let after: i64 = writer.query_one("INSERT INTO orders (note) VALUES ('after') RETURNING id", &[]).await?.get(0);
    anyhow::ensure!(after > next, "after the crash the writer handed out {after}, not above {next}");
    Ok(())
}
