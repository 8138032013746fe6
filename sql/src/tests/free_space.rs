//! Free space reuse (`crate::free_space`): a table under delete/insert churn
//! keeps its size, rows in reused slots are found by scans (partitioned
//! too) and indexes, readers at older read points keep their rows, and only
//! committed frees reach the map. Method: SQL through sessions over the
//! in-memory volume, sizes from pg_relation_size, the map looked into
//! directly where SQL cannot show it.

use super::{one, query, strings, tag, writer};
use crate::Engine;
use crate::Session;
use crate::catalog::{Catalog, QualifiedName, SearchPath};
use crate::heap::Snapshot;
use crate::testing::MemoryVolume;
use crate::volume::Volume;
use borealis_storage::ids::{Lsn, PageId};
use std::sync::Arc;

/// Heap pages of `table` as pg_relation_size reports them.
async fn pages(session: &mut Session, table: &str) -> u64 {
    let size = query(session, &format!("SELECT pg_relation_size('{table}')")).await;
    size[0][0].parse::<u64>().expect("a size") / 8192
}

/// The first page of `table`'s chain, in the newest commit.
async fn first_page(volume: &MemoryVolume, table: &str) -> PageId {
    let snapshot = Snapshot::committed(Arc::new(volume.clone()), volume.read_point().await.unwrap());
    let catalog = Catalog::load(&snapshot).await.unwrap();
    let name = QualifiedName { schema: None, name: table.into() };
    catalog.resolve_table(&SearchPath::public(), &name).unwrap().def.first_page
}

/// Pages with room the engine's map knows in the chain `first`; None if the chain is unknown.
fn pages_with_room(engine: &Engine, first: PageId) -> Option<usize> {
    engine.free_space().lock().unwrap().chain(first).map(|chain| chain.pages_with_room())
}

/// Every live tuple of the chain `first` at `read_point`, with its address.
async fn tuples_at(volume: &MemoryVolume, first: PageId, read_point: Lsn) -> Vec<(u64, Vec<u8>)> {
    let snapshot = Snapshot::committed(Arc::new(volume.clone()), read_point);
    let mut tuples = Vec::new();
    snapshot
        .for_each_tuple(first, |address, tuple| {
            tuples.push((address.to_u64(), tuple.to_vec()));
            Ok(())
        })
        .await
        .unwrap();
    tuples
}

/// Replaces the rows of `t` with ids 1..=5000 of `round`: DELETE, then
/// INSERT ... SELECT or (odd rounds) COPY FROM STDIN.
async fn churn(session: &mut Session, round: u32) {
    let deleted = if round == 0 { 0 } else { 5000 };
    assert_eq!(tag(&one(session, "DELETE FROM t").await), format!("DELETE {deleted}"));
    if round.is_multiple_of(2) {
        let sql = format!("INSERT INTO t SELECT value, {round}, repeat('x', 50) FROM generate_series(1, 5000)");
        assert_eq!(tag(&one(session, &sql).await), "INSERT 0 5000");
    } else {
        one(session, "COPY t FROM STDIN").await;
        let data: String = (1..=5000).map(|id| format!("{id}\t{round}\t{}\n", "x".repeat(50))).collect();
        session.copy_data(data.as_bytes()).await;
        assert_eq!(tag(&session.copy_done().await.unwrap()), "COPY 5000");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_keeps_a_table_its_size_and_rows_in_reused_slots_are_found() {
    let (volume, engine) = writer().await;
    let mut s = engine.session();
    one(&mut s, "CREATE TABLE t (id int PRIMARY KEY, round int, pad text)").await;
    churn(&mut s, 0).await;
    let one_round = pages(&mut s, "t").await;
    let first = first_page(&volume, "t").await;
    let mut before_last_round = (Lsn::ZERO, Vec::new());
    for round in 1..10 {
        if round == 9 {
            let read_point = volume.read_point().await.unwrap();
            before_last_round = (read_point, tuples_at(&volume, first, read_point).await);
        }
        churn(&mut s, round).await;
        let now = pages(&mut s, "t").await;
        assert!(now <= one_round + 1, "round {round}: {now} pages, one round took {one_round}");
    }
    // Scans (in partitions) and the primary key find exactly the last round's rows.
    assert_eq!(
        query(&mut s, "SELECT count(*), count(DISTINCT id), sum(id), min(round), max(round) FROM t").await,
        strings(&[&["5000", "5000", "12502500", "9", "9"]])
    );
    for id in [1, 2500, 4321, 5000] {
        assert_eq!(query(&mut s, &format!("SELECT round FROM t WHERE id = {id}")).await, strings(&[&["9"]]));
    }
    assert_eq!(query(&mut s, "SELECT count(*) FROM t WHERE id BETWEEN 100 AND 199").await, strings(&[&["100"]]));
    // A reader at the read point before the last round still sees that round's rows, slot for slot.
    let (read_point, tuples) = before_last_round;
    assert_eq!(tuples.len(), 5000);
    assert_eq!(tuples_at(&volume, first, read_point).await, tuples);
    // After a restart the map is rebuilt from the chain: the space is found again.
    drop(s);
    let engine = Engine::open(Arc::new(volume.clone()), false).await.unwrap();
    assert_eq!(pages_with_room(&engine, first), None, "the map is not stored");
    let mut s = engine.session();
    churn(&mut s, 10).await;
    assert!(pages(&mut s, "t").await <= one_round + 1);
    assert_eq!(query(&mut s, "SELECT round FROM t WHERE id = 77").await, strings(&[&["10"]]));
    let total = query(&mut s, "SELECT pg_total_relation_size('t') > pg_relation_size('t')").await;
    assert_eq!(total, strings(&[&["true"]]));
}

#[tokio::test]
async fn rows_an_update_moves_go_to_freed_space() {
    let (_volume, engine) = writer().await;
    let mut s = engine.session();
    one(&mut s, "CREATE TABLE g (id int, pad text)").await;
    one(&mut s, "INSERT INTO g SELECT value, repeat('a', 100) FROM generate_series(1, 2000)").await;
    let loaded = pages(&mut s, "g").await;
    one(&mut s, "DELETE FROM g WHERE id > 1000").await;
    // Every row doubles: about half no longer fit their page and move.
    assert_eq!(tag(&one(&mut s, "UPDATE g SET pad = repeat('b', 200)").await), "UPDATE 1000");
    let grown = pages(&mut s, "g").await;
    assert!(grown <= loaded + 1, "{grown} pages after the update, {loaded} before the delete");
    assert_eq!(
        query(&mut s, "SELECT count(*), sum(id), sum(length(pad)) FROM g").await,
        strings(&[&["1000", "500500", "200000"]])
    );
}

#[tokio::test]
async fn only_committed_frees_reach_the_map() {
    let (volume, engine) = writer().await;
    let mut s = engine.session();
    // Twins: the same rows, then the same insert, one of them with a
    // rolled-back delete and a delete rolled back to a savepoint in between.
    for table in ["r", "twin"] {
        one(&mut s, &format!("CREATE TABLE {table} (id int PRIMARY KEY, pad text)")).await;
        one(&mut s, &format!("INSERT INTO {table} SELECT value, repeat('r', 100) FROM generate_series(1, 1000)")).await;
    }
    let (first, twin) = (first_page(&volume, "r").await, first_page(&volume, "twin").await);
    let full = pages_with_room(&engine, first);
    assert!(full.is_some_and(|pages| pages <= 1), "only the last page may have room: {full:?}");
    one(&mut s, "BEGIN").await;
    one(&mut s, "DELETE FROM r").await;
    one(&mut s, "ROLLBACK").await;
    assert_eq!(pages_with_room(&engine, first), full);
    one(&mut s, "BEGIN").await;
    one(&mut s, "INSERT INTO r VALUES (5000, 'kept')").await;
    one(&mut s, "SAVEPOINT s").await;
    one(&mut s, "DELETE FROM r WHERE id < 900").await;
    one(&mut s, "ROLLBACK TO SAVEPOINT s").await;
    one(&mut s, "COMMIT").await;
    one(&mut s, "INSERT INTO twin VALUES (5000, 'kept')").await;
    assert_eq!(pages_with_room(&engine, first), pages_with_room(&engine, twin));
    assert_eq!(query(&mut s, "SELECT count(*) FROM r").await, strings(&[&["1001"]]));
    // A committed delete opens its pages; the next insert fills them.
    let size = pages(&mut s, "r").await;
    one(&mut s, "DELETE FROM r WHERE id <= 500").await;
    assert!(pages_with_room(&engine, first).unwrap() >= 5, "{:?}", pages_with_room(&engine, first));
    one(&mut s, "INSERT INTO r SELECT value, repeat('n', 100) FROM generate_series(1, 500)").await;
    assert_eq!(pages(&mut s, "r").await, size);
    assert_eq!(query(&mut s, "SELECT pad FROM r WHERE id = 250").await, strings(&[&["n".repeat(100).as_str()]]));
}

#[tokio::test]
async fn vacuum_refreshes_the_map_and_forgets_dropped_tables() {
    let (volume, engine) = writer().await;
    let mut s = engine.session();
    one(&mut s, "CREATE TABLE v (id int, pad text)").await;
    one(&mut s, "CREATE TABLE gone (id int)").await;
    one(&mut s, "INSERT INTO v SELECT value, repeat('v', 100) FROM generate_series(1, 1000)").await;
    one(&mut s, "DELETE FROM v WHERE id % 2 = 0").await;
    let (first, gone) = (first_page(&volume, "v").await, first_page(&volume, "gone").await);
    let known = pages_with_room(&engine, first);
    drop(s);
    let engine = Engine::open(Arc::new(volume.clone()), false).await.unwrap();
    let mut s = engine.session();
    assert_eq!(pages_with_room(&engine, first), None);
    assert_eq!(tag(&one(&mut s, "VACUUM (VERBOSE) v").await), "VACUUM");
    assert_eq!(pages_with_room(&engine, first), known);
    one(&mut s, "INSERT INTO gone VALUES (1)").await;
    one(&mut s, "DROP TABLE gone").await;
    assert!(pages_with_room(&engine, gone).is_some());
    assert_eq!(tag(&one(&mut s, "VACUUM").await), "VACUUM");
    assert_eq!(pages_with_room(&engine, gone), None);
    assert_eq!(pages_with_room(&engine, first), known);
    let error = s.execute("VACUUM ANALYZE missing").await.unwrap_err();
    assert_eq!((error.sqlstate(), error.message()), ("42P01", "relation \"missing\" does not exist"));
    assert_eq!(tag(&one(&mut s, "VACUUM FULL VERBOSE v (id), v").await), "VACUUM");
}
