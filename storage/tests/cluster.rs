//! Goal: the storage spine works end to end over real QUIC with mutual TLS.
//! Method: six daemons run as tasks of this process on 127.0.0.1 (port 0)
//! with their files in a tempdir; a `VolumeWriter` commits through them
//! while daemons are stopped and restarted, then a second writer recovers
//! the volume, must find every acknowledged commit, and fences the first.

use borealis_config::StorageNode;
use borealis_storage::client::{StorageClient, StorageError, VolumeConfig, VolumeReader, VolumeWriter};
use borealis_storage::daemon::{self, DaemonHandle, DaemonOptions};
use borealis_storage::ids::{Lsn, NodeId, PageId, VolumeLayout};
use borealis_storage::page::{Page, PageKind};
use borealis_storage::redo::RedoBody;
use borealis_storage::tls;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

const LAYOUT: VolumeLayout = VolumeLayout { pages_per_group: 4 };
/// Page 1 is in protection group 0, page 9 in group 2; group 1 is never written.
const PAGE_A: PageId = PageId(1);
const PAGE_B: PageId = PageId(9);

struct Cluster {
    dir: tempfile::TempDir,
    nodes: Vec<StorageNode>,
    daemons: Vec<Option<DaemonHandle>>,
}

impl Cluster {
    fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    fn options(&self, index: usize, listen: SocketAddr) -> DaemonOptions {
        DaemonOptions {
            node: NodeId(index as u32),
            listen,
            data_dir: self.dir.path().join(format!("storage-{index}")),
            tls_dir: self.tls_dir(),
            layout: LAYOUT,
            peers: self.nodes.clone(),
        }
    }

    async fn start() -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Cluster { dir, nodes: Vec::new(), daemons: Vec::new() };
        tls::ensure_cluster_certs(&cluster.tls_dir()).unwrap();
        for index in 0..6 {
            let handle = daemon::start(cluster.options(index, "127.0.0.1:0".parse().unwrap())).await.unwrap();
            cluster.nodes.push(StorageNode {
                index: index as u32,
                name: format!("storage-{index}"),
                az: format!("az{}", index / 2),
                addr: handle.local_addr(),
            });
            cluster.daemons.push(Some(handle));
        }
        cluster
    }

    async fn stop(&mut self, index: usize) {
        if let Some(handle) = self.daemons[index].take() {
            handle.stop().await.unwrap();
        }
    }

    /// Restarts a daemon from its directory, on its old address if that is
    /// free within a second (another socket may have taken it), else on a new one.
    async fn restart(&mut self, index: usize) {
        let old = self.nodes[index].addr;
        for attempt in 0..11 {
            let listen = if attempt < 10 { old } else { "127.0.0.1:0".parse().unwrap() };
            match daemon::start(self.options(index, listen)).await {
                Ok(handle) => {
                    self.nodes[index].addr = handle.local_addr();
                    self.daemons[index] = Some(handle);
                    return;
                }
                Err(e) if attempt == 10 => panic!("daemon {index} did not restart: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Tells a writer where every daemon is now.
    fn point(&self, writer: &VolumeWriter) {
        for node in &self.nodes {
            writer.set_node_address(NodeId(node.index), node.addr);
        }
    }

    fn config(&self, commit_timeout: Duration) -> VolumeConfig {
        VolumeConfig {
            nodes: self.nodes.clone(),
            tls_dir: self.tls_dir(),
            layout: LAYOUT,
            write_quorum: 4,
            read_quorum: 3,
            commit_timeout,
            lsn_allocation_limit: 1000,
        }
    }
}

fn insert(page: PageId, slot: u16, data: &str) -> RedoBody {
    RedoBody::InsertTuple { page, slot, data: data.as_bytes().to_vec() }
}

fn tuples(page: &Page) -> Vec<String> {
    page.tuples().map(|(_, t)| String::from_utf8_lossy(t).into_owned()).collect()
}

async fn page_at(writer: &VolumeWriter, page: PageId, read_point: Lsn) -> Vec<String> {
    tuples(&one_page(writer.get_pages(&[page], read_point).await.unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_survive_failures_restarts_and_a_new_writer() {
    let test = async {
        let mut cluster = Cluster::start().await;
        let writer = VolumeWriter::open(cluster.config(Duration::from_millis(2000))).await.unwrap();
        let init = vec![
            RedoBody::InitPage { page: PAGE_A, kind: PageKind::Heap },
            RedoBody::InitPage { page: PAGE_B, kind: PageKind::Heap },
            insert(PAGE_A, 0, "a"),
            insert(PAGE_B, 0, "x"),
        ];
        let first = writer.commit(init).await.unwrap();
        assert_eq!(first.commit.0 - first.first.0, 3);
        let second = writer.commit(vec![insert(PAGE_A, 1, "b")]).await.unwrap();
        assert!(writer.durable_lsn() >= second.commit);
        assert_eq!(page_at(&writer, PAGE_A, first.commit).await, ["a"]);
        assert_eq!(page_at(&writer, PAGE_A, second.commit).await, ["a", "b"]);
        assert_eq!(page_at(&writer, PAGE_B, second.commit).await, ["x"]);
        assert_eq!(one_page(writer.get_pages(&[PageId(5)], second.commit).await.unwrap()).kind(), PageKind::Empty);

        // Two daemons down: 4 of 6 remain, commits go on.
        cluster.stop(0).await;
        cluster.stop(1).await;
        let third = writer.commit(vec![insert(PAGE_A, 2, "c"), insert(PAGE_B, 1, "y")]).await.unwrap();
        // A third down: no write quorum.
        cluster.stop(2).await;
        let lost = writer.commit(vec![insert(PAGE_A, 3, "d")]).await;
        assert_eq!(lost, Err(StorageError::QuorumTimeout { timeout_ms: 2000 }));
        // The failed commit is in doubt until a quorum returns.
        assert_eq!(writer.settle().await, Err(StorageError::QuorumTimeout { timeout_ms: 2000 }));

        // They come back: the writer resends, the in-doubt commit becomes
        // durable (settle shows where), and commits go on after it.
        for index in 0..3 {
            cluster.restart(index).await;
        }
        cluster.point(&writer);
        let settled = writer.settle().await.unwrap();
        assert_eq!(page_at(&writer, PAGE_A, settled).await, ["a", "b", "c", "d"]);
        let fifth = writer.commit(vec![insert(PAGE_A, 4, "e")]).await.unwrap();
        assert_eq!(page_at(&writer, PAGE_A, fifth.commit).await, ["a", "b", "c", "d", "e"]);
        assert_eq!(page_at(&writer, PAGE_A, third.commit).await, ["a", "b", "c"]);

        // Everything stops and restarts from disk; a new writer recovers.
        for index in 0..6 {
            cluster.stop(index).await;
        }
        for index in 0..6 {
            cluster.restart(index).await;
        }
        cluster.point(&writer);
        let successor = VolumeWriter::open(cluster.config(Duration::from_millis(2000))).await.unwrap();
        assert!(successor.epoch() > writer.epoch());
        let durable = successor.durable_lsn();
        assert!(durable >= fifth.commit, "recovered {durable} below acknowledged {}", fifth.commit);
        assert_eq!(page_at(&successor, PAGE_A, durable).await, ["a", "b", "c", "d", "e"]);
        assert_eq!(page_at(&successor, PAGE_B, durable).await, ["x", "y"]);
        let sixth = successor.commit(vec![insert(PAGE_B, 2, "z")]).await.unwrap();
        assert!(sixth.first > durable);

        // The first writer is fenced.
        let fenced = writer.commit(vec![insert(PAGE_A, 5, "late")]).await;
        assert!(fenced.as_ref().is_err_and(StorageError::is_fenced), "{fenced:?}");
        assert_eq!(writer.commit(vec![insert(PAGE_A, 5, "later")]).await, Err(StorageError::Fenced));

        // A reader finds a read point and reads at it.
        let reader = VolumeReader::open(cluster.nodes.clone(), &cluster.tls_dir(), LAYOUT).unwrap();
        let mut read_point = reader.read_point().await.unwrap();
        for _ in 0..40 {
            if read_point >= sixth.commit {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            read_point = reader.read_point().await.unwrap();
        }
        assert_eq!(read_point, sixth.commit);
        assert_eq!(tuples(&one_page(reader.get_pages(&[PAGE_B], read_point).await.unwrap())), ["x", "y", "z"]);
        assert_eq!(tuples(&one_page(reader.get_pages(&[PAGE_B], durable).await.unwrap())), ["x", "y"]);
        for index in 0..6 {
            cluster.stop(index).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), test).await.expect("test took over 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_are_acknowledged_in_lsn_order() {
    let test = async {
        let mut cluster = Cluster::start().await;
        let writer = VolumeWriter::open(cluster.config(Duration::from_secs(5))).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..64u64 {
            let writer = writer.clone();
            tasks.spawn(async move {
                let page = PageId(100 + index);
                let bodies =
                    vec![RedoBody::InitPage { page, kind: PageKind::Heap }, insert(page, 0, &format!("t{index}"))];
                let lsns = writer.commit(bodies).await.unwrap();
                assert!(writer.durable_lsn() >= lsns.commit);
                lsns
            });
        }
        let mut commits = Vec::new();
        while let Some(done) = tasks.join_next().await {
            commits.push(done.unwrap().commit);
        }
        commits.sort();
        commits.dedup();
        assert_eq!(commits.len(), 64);
        let durable = writer.durable_lsn();
        for index in 0..64u64 {
            let page = one_page(writer.get_pages(&[PageId(100 + index)], durable).await.unwrap());
            assert_eq!(tuples(&page), [format!("t{index}")]);
        }
        // One batched read over all their protection groups (and a page
        // never written) answers in the order asked.
        let mut asked: Vec<PageId> = (0..64u64).rev().map(|index| PageId(100 + index)).collect();
        asked.push(PageId(99));
        let pages = writer.get_pages(&asked, durable).await.unwrap();
        assert_eq!(pages.len(), asked.len());
        for (index, page) in (0..64u64).rev().zip(&pages) {
            assert_eq!(tuples(page), [format!("t{index}")]);
        }
        assert_eq!(pages[64].kind(), PageKind::Empty);
        for index in 0..6 {
            cluster.stop(index).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), test).await.expect("test took over 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_daemon_is_repaired_by_its_peers() {
    let test = async {
        let mut cluster = Cluster::start().await;
        let writer = VolumeWriter::open(cluster.config(Duration::from_secs(5))).await.unwrap();
        writer.commit(vec![RedoBody::InitPage { page: PAGE_A, kind: PageKind::Heap }]).await.unwrap();
        cluster.stop(5).await;
        let mut last = None;
        for slot in 0..20u16 {
            last = Some(writer.commit(vec![insert(PAGE_A, slot, &format!("r{slot}"))]).await.unwrap());
        }
        let last = last.unwrap().commit;
        // No writer resends: only gossip can bring daemon 5 up to date.
        writer.close();
        cluster.restart(5).await;
        let client = StorageClient::new(cluster.nodes.clone(), &cluster.tls_dir()).unwrap();
        let mut repaired = None;
        for _ in 0..100 {
            if let Ok(page) = client.get_pages(&[NodeId(5)], &[PAGE_A], last).await.map(one_page) {
                repaired = Some(page);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let page = repaired.expect("daemon 5 was not repaired by gossip within 10 s");
        assert_eq!(page.tuples().count(), 20);
        for index in 0..6 {
            cluster.stop(index).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), test).await.expect("test took over 30 s");
}

/// The one page of a one-page read.
fn one_page(mut pages: Vec<Page>) -> Page {
    assert_eq!(pages.len(), 1, "one page asked");
    pages.pop().expect("one page")
}
