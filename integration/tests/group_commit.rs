//! Group commit under concurrency and a crash: several sessions commit
//! single-row increments at once (their commits share storage round trips,
//! each built on the previous one before it is durable); the writer is
//! killed with SIGKILL mid-stream. Every increment a client saw acknowledged
//! must survive, none may be applied twice, and nothing may be torn.

use borealis_integration::Cluster;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SESSIONS: usize = 8;
/// Bound on each session's attempts (the writer is killed well before).
const ATTEMPTS_MAX: u64 = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commits_survive_a_writer_crash_under_group_commit() -> anyhow::Result<()> {
    let cluster = Cluster::start_new(0)?;
    let client = cluster.connect(cluster.ports.writer).await?;
    client.batch_execute("CREATE TABLE counters (id int PRIMARY KEY, n int8 NOT NULL)").await?;
    let values: Vec<String> = (0..SESSIONS).map(|id| format!("({id}, 0)")).collect();
    client.batch_execute(&format!("INSERT INTO counters VALUES {}", values.join(", "))).await?;
    client.batch_execute("CREATE TABLE log (session int, seq int8)").await?;

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged: Arc<Vec<AtomicU64>> = Arc::new((0..SESSIONS).map(|_| AtomicU64::new(0)).collect());
    let mut tasks = Vec::new();
    for session in 0..SESSIONS {
        let client = cluster.connect(cluster.ports.writer).await?;
        let (stop, acknowledged) = (Arc::clone(&stop), Arc::clone(&acknowledged));
        tasks.push(tokio::spawn(async move {
            for seq in 1..=ATTEMPTS_MAX {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // One transaction: the counter and a log row must move together.
                let sql = format!(
                    "BEGIN; UPDATE counters SET n = n + 1 WHERE id = {session}; \
                     INSERT INTO log VALUES ({session}, {seq}); COMMIT"
                );
                if client.batch_execute(&sql).await.is_err() {
                    break;
                }
                acknowledged[session].store(seq, Ordering::SeqCst);
            }
        }));
    }
    // Let commits pile up, then kill the writer in the middle of them.
    let started = Instant::now();
    while acknowledged.iter().map(|a| a.load(Ordering::SeqCst)).sum::<u64>() < 200 {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "sessions made no progress:\n{}", cluster.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cluster.kill9_process("writer"), "writer not found");
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    let acknowledged: Vec<u64> = acknowledged.iter().map(|a| a.load(Ordering::SeqCst)).collect();

    // The launcher restarts the writer, which recovers the volume.
    let client = cluster.reconnect(cluster.ports.writer).await?;
    for (session, &acked) in acknowledged.iter().enumerate() {
        let n: i64 = client.query_one(&format!("SELECT n FROM counters WHERE id = {session}"), &[]).await?.get(0);
        let row = client
            .query_one(&format!("SELECT count(*), coalesce(max(seq), 0) FROM log WHERE session = {session}"), &[])
            .await?;
        let (logged, last): (i64, i64) = (row.get(0), row.get(1));
        // The one commit in flight at the kill may or may not have landed.
        assert!(n as u64 >= acked && n as u64 <= acked + 1, "session {session}: counter {n}, acknowledged {acked}");
        assert_eq!(logged, n, "session {session}: counter and log rows move together");
        assert_eq!(last, n, "session {session}: log rows 1..=n, none twice");
    }
    Ok(())
}
