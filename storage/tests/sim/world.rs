//! The simulated world: six daemons and their disks, writers, a network,
//! and a virtual clock, all driven by one seeded RNG.
//!
//! Time moves in 1 ms ticks. In each tick the world delivers due messages,
//! completes due fsyncs, runs timers (daemon tick, gossip, writer senders,
//! recovery rounds), lets writers commit, and injects faults. Every daemon
//! runs the real `SegmentStore` through `daemon_core`; every writer runs the
//! real `RecoveryCore` and `WriterCore`. Only the I/O is simulated:
//!
//! - network: per message loss, duplication and a random delay (so
//!   reordering); partitions that cut a daemon, a whole zone or a writer off;
//! - disk: a log whose entries are durable once their fsync completes
//!   (fsyncs complete in order), and a state file; a crash keeps the synced
//!   part plus a random prefix of what was written but not yet synced (a
//!   torn tail), and a restart rebuilds the daemon from that;
//! - writers: a crash drops one, and a new one recovers with a higher epoch;
//!   in "split brain" runs the old one keeps running until it is fenced.

use crate::model::History;
use borealis_storage::daemon_core::{
    GossipFetch, Pending, Step, SyncWork, gossip_fetches, peer_floors, truncations_to_adopt,
};
use borealis_storage::error::StorageError;
use borealis_storage::ids::{Epoch, Lsn, NodeId, PageId, VolumeLayout};
use borealis_storage::log::LogEntry;
use borealis_storage::page::{Page, PageKind};
use borealis_storage::placement::Placement;
use borealis_storage::proto::{GroupAppend, NodeStatus, Request, Response};
use borealis_storage::recovery_core::{REPAIR_BYTES_MAX, RecoveryCore, RecoverySettings};
use borealis_storage::redo::{RedoBody, RedoRecord};
use borealis_storage::store::{PersistedState, SegmentStore, StoreError};
use borealis_storage::versions::BaseImages;
use borealis_storage::writer_core::{Outgoing, WriterCore, WriterSettings};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Virtual microseconds.
type Micros = u64;

const MS: Micros = 1000;
/// Length of the faulty part of a run.
pub const RUN_MS: u64 = 3000;
/// Length of the healed part: no faults, every daemon up, one writer.
pub const HEAL_MS: u64 = 2500;
/// Writers stop committing this long before the end, so that everything
/// they assigned can become durable and spread.
const QUIET_MS: u64 = 1500;
const LAYOUT: VolumeLayout = VolumeLayout { pages_per_group: 4 };
/// Pages written: three protection groups.
const PAGES: u64 = 11;
const WRITE_QUORUM: usize = 4;
const READ_QUORUM: usize = 3;
/// Small, so that back-pressure and truncation ranges are exercised.
const LSN_ALLOCATION_LIMIT: u64 = 300;
const REQUEST_TIMEOUT: Micros = 80 * MS;
const BACKOFF_MIN: Micros = 5 * MS;
const BACKOFF_MAX: Micros = 200 * MS;
const DAEMON_TICK: Micros = 50 * MS;
const GOSSIP_INTERVAL: Micros = 150 * MS;
const READ_CHECK_INTERVAL: Micros = 200 * MS;

/// The faults of one run, drawn from the seed (swarm testing: each run
/// turns some fault types off, so that rare interleavings of the others
/// are reached).
#[derive(Debug, Clone)]
pub struct Faults {
    pub loss: f64,
    pub duplicate: f64,
    pub delay_max: Micros,
    pub daemon_crash_per_ms: f64,
    pub down_max: usize,
    pub torn_tail: bool,
    pub partition_per_ms: f64,
    pub writer_crash_per_ms: f64,
    pub split_brain: bool,
    /// Chance that a daemon crashes between writing a checkpoint's pages
    /// and recording the checkpoint.
    pub checkpoint_crash: f64,
}

impl Faults {
    fn swarm(rng: &mut ChaCha8Rng) -> Faults {
        let pick = |rng: &mut ChaCha8Rng, p: f64| if rng.random_bool(0.7) { p } else { 0.0 };
        let loss = [0.01, 0.05, 0.15][rng.random_range(0..3)];
        let crash = [0.002, 0.01][rng.random_range(0..2)];
        Faults {
            loss: pick(rng, loss),
            duplicate: pick(rng, 0.05),
            delay_max: [500, 3 * MS, 20 * MS][rng.random_range(0..3)],
            daemon_crash_per_ms: pick(rng, crash),
            down_max: rng.random_range(1..=3),
            torn_tail: rng.random_bool(0.7),
            partition_per_ms: pick(rng, 0.004),
            writer_crash_per_ms: pick(rng, 0.0015),
            split_brain: rng.random_bool(0.5),
            checkpoint_crash: pick(rng, 0.02),
        }
    }

    fn none() -> Faults {
        Faults {
            loss: 0.0,
            duplicate: 0.0,
            delay_max: 500,
            daemon_crash_per_ms: 0.0,
            down_max: 0,
            torn_tail: false,
            partition_per_ms: 0.0,
            writer_crash_per_ms: 0.0,
            split_brain: false,
            checkpoint_crash: 0.0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Addr {
    Writer(u32),
    Daemon(NodeId),
}

#[derive(Clone, Debug)]
enum Body {
    Request { id: u64, request: Request },
    Response { id: u64, response: Response },
}

#[derive(Clone, Debug)]
struct Envelope {
    from: Addr,
    to: Addr,
    body: Body,
}

/// Counters shown after a run.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub messages: u64,
    pub dropped: u64,
    pub daemon_crashes: u64,
    pub torn_entries: u64,
    pub writer_crashes: u64,
    pub recoveries: u64,
    pub fenced: u64,
    pub acknowledged: usize,
    pub records: usize,
    pub final_durable_lsn: Lsn,
    pub page_reads_checked: u64,
    pub checkpoints: u64,
}

struct Network {
    queue: BinaryHeap<Reverse<(Micros, u64)>>,
    in_flight: BTreeMap<u64, Envelope>,
    seq: u64,
    faults: Faults,
    /// Cut off from everyone until the given time.
    isolated: BTreeMap<Addr, Micros>,
}

impl Network {
    fn cut(&self, addr: Addr, now: Micros) -> bool {
        self.isolated.get(&addr).is_some_and(|until| *until > now)
    }

    fn send(&mut self, rng: &mut ChaCha8Rng, stats: &mut Stats, now: Micros, envelope: Envelope) {
        stats.messages += 1;
        if self.cut(envelope.from, now) || self.cut(envelope.to, now) || rng.random_bool(self.faults.loss) {
            stats.dropped += 1;
            return;
        }
        let copies = if rng.random_bool(self.faults.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let at = now + rng.random_range(50..=self.faults.delay_max.max(50));
            self.seq += 1;
            self.queue.push(Reverse((at, self.seq)));
            self.in_flight.insert(self.seq, envelope.clone());
        }
    }

    fn due(&mut self, now: Micros) -> Vec<Envelope> {
        let mut out = Vec::new();
        while let Some(Reverse((at, seq))) = self.queue.peek().copied() {
            if at > now {
                break;
            }
            self.queue.pop();
            let envelope = self.in_flight.remove(&seq).expect("queued messages are in flight");
            if !self.cut(envelope.from, now) && !self.cut(envelope.to, now) {
                out.push(envelope);
            }
        }
        out
    }
}

/// What survives a crash.
#[derive(Debug, Default, Clone)]
struct Disk {
    state: PersistedState,
    log: Vec<LogEntry>,
    pages: Arc<PageFile>,
}

/// A daemon's page file (its writes are synced as they are made).
#[derive(Debug, Default)]
struct PageFile(Mutex<BTreeMap<PageId, Page>>);

impl PageFile {
    fn write(&self, pages: &[(PageId, Arc<Page>)]) {
        let mut file = self.0.lock().expect("page file");
        for (id, page) in pages {
            file.insert(*id, Page::clone(page));
        }
    }
}

impl BaseImages for PageFile {
    fn read(&self, page: PageId) -> Result<Option<Page>, String> {
        Ok(self.0.lock().expect("page file").get(&page).cloned())
    }

    fn page_ids(&self) -> Vec<PageId> {
        self.0.lock().expect("page file").keys().copied().collect()
    }
}

/// A sync written but not yet complete.
#[derive(Debug)]
struct PendingSync {
    done_at: Micros,
    state: Option<PersistedState>,
    entries: Vec<LogEntry>,
    then: Pending,
    groups: Vec<GroupAppend>,
    /// Who waits for the answer (none for gossip's own work).
    reply: Option<(Addr, u64)>,
}

struct GossipRound {
    deadline: Micros,
    asked: BTreeMap<u64, NodeId>,
    statuses: Vec<NodeStatus>,
}

struct LiveDaemon {
    store: SegmentStore,
    syncs: VecDeque<PendingSync>,
    sync_free_at: Micros,
    saved_durable: Lsn,
    next_tick: Micros,
    next_gossip: Micros,
    gossip: Option<GossipRound>,
    fetches: BTreeMap<u64, GossipFetch>,
}

struct SimDaemon {
    node: NodeId,
    disk: Disk,
    live: Option<LiveDaemon>,
    restart_at: Micros,
}

/// One writer exchange per daemon at a time, as the QUIC sender does.
enum Sender {
    Backoff { until: Micros },
    Hello { requests: Vec<Request>, answers: Vec<Response>, waiting: Option<(u64, Micros)> },
    Ready,
    Append { id: u64, deadline: Micros },
    Fetch { id: u64, deadline: Micros, repair: Repair },
    RepairAppend { id: u64, deadline: Micros },
}

#[derive(Clone, Copy)]
struct Repair {
    protection_group: borealis_storage::ids::ProtectionGroupId,
    after: Lsn,
    up_to: Lsn,
    source: NodeId,
}

struct SenderSlot {
    state: Sender,
    backoff: Micros,
    repaired: Vec<RedoRecord>,
}

struct Recovering {
    core: RecoveryCore,
    ids: Vec<u64>,
    answers: Vec<Option<Response>>,
    deadline: Micros,
}

enum Phase {
    Waiting { until: Micros },
    Recovering(Box<Recovering>),
    Running { core: Box<WriterCore>, senders: BTreeMap<NodeId, SenderSlot> },
    Fenced,
}

struct SimWriter {
    id: u32,
    phase: Phase,
    /// The writer's pages: every record it assigned applied (what its buffer cache holds).
    model: BTreeMap<PageId, Page>,
    /// Assigned commits not yet acknowledged, ascending.
    pending: VecDeque<Lsn>,
    last_assigned: Lsn,
    next_commit: Micros,
}

/// The world of one seed.
pub struct World {
    rng: ChaCha8Rng,
    now: Micros,
    base: Instant,
    net: Network,
    daemons: Vec<SimDaemon>,
    writers: Vec<SimWriter>,
    next_writer: u32,
    next_id: u64,
    placement: Placement,
    pub history: History,
    pub stats: Stats,
    violation: Option<String>,
    next_read_check: Micros,
    healing: bool,
    /// Per daemon: LSNs of the records its disk holds durably (synced, or
    /// kept by a crash), whatever its memory says.
    durable_records: Vec<std::collections::BTreeSet<Lsn>>,
    /// Records up to here were found on a write quorum of disks when a
    /// commit covering them was acknowledged.
    quorum_checked: Lsn,
}

fn request_epoch(request: &Request) -> Option<Epoch> {
    match request {
        Request::Append { epoch, .. }
        | Request::AdvanceDurable { epoch, .. }
        | Request::RaiseEpoch { epoch }
        | Request::Truncate { epoch, .. } => Some(*epoch),
        _ => None,
    }
}

impl World {
    /// A world for `seed`: six daemons in three zones, one writer about to recover.
    pub fn new(seed: u64) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let faults = Faults::swarm(&mut rng);
        let placement = Placement::new((0..6).map(|i| (NodeId(i), format!("az{}", i / 2))));
        let daemons = (0..6)
            .map(|i| {
                let node = NodeId(i);
                let mut daemon = SimDaemon { node, disk: Disk::default(), live: None, restart_at: 0 };
                daemon.live = Some(LiveDaemon::start(node, &daemon.disk, 0, &mut rng));
                daemon
            })
            .collect();
        let net =
            Network { queue: BinaryHeap::new(), in_flight: BTreeMap::new(), seq: 0, faults, isolated: BTreeMap::new() };
        let mut world = World {
            rng,
            now: 0,
            base: Instant::now(),
            net,
            daemons,
            writers: Vec::new(),
            next_writer: 0,
            next_id: 0,
            placement,
            history: History::default(),
            stats: Stats::default(),
            violation: None,
            next_read_check: READ_CHECK_INTERVAL,
            healing: false,
            durable_records: vec![std::collections::BTreeSet::new(); 6],
            quorum_checked: Lsn::ZERO,
        };
        world.add_writer(0);
        world
    }

    /// The faults this seed drew.
    pub fn faults(&self) -> &Faults {
        &self.net.faults
    }

    fn fail(&mut self, message: String) {
        if self.violation.is_none() {
            self.violation = Some(format!("at {} ms: {message}", self.now / MS));
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn instant(&self) -> Instant {
        self.base + Duration::from_micros(self.now)
    }

    fn send(&mut self, from: Addr, to: Addr, body: Body) {
        let envelope = Envelope { from, to, body };
        self.net.send(&mut self.rng, &mut self.stats, self.now, envelope);
    }

    fn add_writer(&mut self, delay: Micros) {
        let id = self.next_writer;
        self.next_writer += 1;
        self.writers.push(SimWriter {
            id,
            phase: Phase::Waiting { until: self.now + delay },
            model: BTreeMap::new(),
            pending: VecDeque::new(),
            last_assigned: Lsn::ZERO,
            next_commit: 0,
        });
    }

    /// Runs the whole seed: the faulty part, then healing, then the final checks.
    pub fn run(mut self) -> Result<Stats, String> {
        let end = (RUN_MS + HEAL_MS) * MS;
        while self.now < end && self.violation.is_none() {
            if !self.healing && self.now >= RUN_MS * MS {
                self.heal();
            }
            self.tick();
            self.now += MS;
        }
        if self.violation.is_none() {
            self.final_checks();
        }
        match self.violation.take() {
            Some(violation) => Err(violation),
            None => {
                self.stats.acknowledged = self.history.acknowledged_count();
                self.stats.records = self.history.record_count();
                Ok(self.stats)
            }
        }
    }

    fn tick(&mut self) {
        for envelope in self.net.due(self.now) {
            self.deliver(envelope);
        }
        for index in 0..self.daemons.len() {
            self.daemon_timers(index);
        }
        for index in 0..self.writers.len() {
            self.writer_timers(index);
        }
        if !self.healing {
            self.inject_faults();
        } else if self.writers.last().is_none_or(|w| matches!(w.phase, Phase::Fenced)) {
            // A recovery that failed half way may still fence the writer
            // (its claims were in flight); the controller promotes another.
            self.writers.clear();
            self.add_writer(0);
        }
        if self.now >= self.next_read_check {
            self.next_read_check = self.now + READ_CHECK_INTERVAL;
            self.check_a_read();
        }
    }

    fn deliver(&mut self, envelope: Envelope) {
        match envelope.to {
            Addr::Daemon(node) => {
                let index = node.0 as usize;
                if self.daemons[index].live.is_none() {
                    return;
                }
                match envelope.body {
                    Body::Request { id, request } => self.daemon_request(index, envelope.from, id, request),
                    Body::Response { id, response } => self.daemon_response(index, id, response),
                }
            }
            Addr::Writer(writer) => {
                let Some(index) = self.writers.iter().position(|w| w.id == writer) else { return };
                if let Body::Response { id, response } = envelope.body {
                    self.writer_response(index, envelope.from, id, response);
                }
            }
        }
    }

    // ---- daemons ----

    fn daemon_request(&mut self, index: usize, from: Addr, id: u64, request: Request) {
        let now = self.instant();
        let epoch = request_epoch(&request);
        let live = self.daemons[index].live.as_mut().expect("delivered to a live daemon");
        let before = live.store.epoch();
        let step = live.store.step(request, now);
        if let Some(epoch) = epoch
            && epoch < before
            && !matches!(step, Step::Reply(Response::StaleEpoch { .. }))
        {
            self.fail(format!("storage-{index} at epoch {before} accepted a request of epoch {epoch}"));
        }
        let node = self.daemons[index].node;
        match step {
            Step::Reply(response) => self.send(Addr::Daemon(node), from, Body::Response { id, response }),
            Step::Sync(work) => self.enqueue_sync(index, work, Some((from, id))),
        }
    }

    fn enqueue_sync(&mut self, index: usize, work: SyncWork, reply: Option<(Addr, u64)>) {
        let latency = self.rng.random_range(100..2 * MS);
        let now = self.now;
        let live = self.daemons[index].live.as_mut().expect("syncs run on a live daemon");
        let done_at = live.sync_free_at.max(now) + latency;
        live.sync_free_at = done_at;
        let mut entries: Vec<LogEntry> =
            work.groups.iter().flat_map(|g| g.records.iter().cloned().map(LogEntry::Record)).collect();
        entries.extend(work.promises.iter().map(|&(protection_group, tail_lsn, complete_to)| LogEntry::Promise {
            protection_group,
            tail_lsn,
            complete_to,
        }));
        let state = work.persist_state.then(|| live.store.persisted().clone());
        live.syncs.push_back(PendingSync { done_at, state, entries, then: work.then, groups: work.groups, reply });
    }

    fn daemon_timers(&mut self, index: usize) {
        let now = self.now;
        if self.daemons[index].live.is_none() {
            if self.daemons[index].restart_at <= now {
                let daemon = &mut self.daemons[index];
                daemon.live = Some(LiveDaemon::start(daemon.node, &daemon.disk, now, &mut self.rng));
            }
            return;
        }
        self.complete_syncs(index);
        let instant = self.instant();
        let daemon = &mut self.daemons[index];
        let live = daemon.live.as_mut().expect("checked live");
        if live.next_tick <= now {
            live.next_tick = now + DAEMON_TICK;
            if let Err(e @ StoreError::Apply(_)) = live.store.tick(instant) {
                return self.fail(format!("storage-{index}: applicator stopped: {e}"));
            }
            let live = self.daemons[index].live.as_mut().expect("checked live");
            if live.store.durable_lsn() > live.saved_durable {
                live.saved_durable = live.store.durable_lsn();
                let state = live.store.persisted().clone();
                self.write_state(index, state);
            }
            if !self.checkpoint(index) {
                return;
            }
        }
        self.gossip(index);
    }

    /// A checkpoint as the daemon shell takes it; false if the daemon
    /// crashed half way.
    fn checkpoint(&mut self, index: usize) -> bool {
        let live = self.daemons[index].live.as_mut().expect("checked live");
        let Some(plan) = live.store.checkpoint_plan() else { return true };
        live.store.begin_checkpoint(plan.lsn);
        let state = live.store.persisted().clone();
        self.write_state(index, state);
        self.daemons[index].disk.pages.write(&plan.pages);
        if self.rng.random_bool(self.net.faults.checkpoint_crash) {
            let down_for = self.rng.random_range(20 * MS..400 * MS);
            self.crash_daemon(index, down_for);
            return false;
        }
        let live = self.daemons[index].live.as_mut().expect("checked live");
        live.store.finish_checkpoint(plan.lsn);
        let state = live.store.persisted().clone();
        self.write_state(index, state);
        self.daemons[index].disk.log.retain(|entry| entry.lsn() > plan.lsn);
        self.stats.checkpoints += 1;
        true
    }

    fn note_durable(&mut self, index: usize, entries: &[LogEntry]) {
        for entry in entries {
            if let LogEntry::Record(record) = entry {
                self.durable_records[index].insert(record.lsn);
            }
        }
    }

    fn write_state(&mut self, index: usize, state: PersistedState) {
        let before = self.daemons[index].disk.state.epoch;
        if state.epoch < before {
            self.fail(format!("storage-{index}: persisted epoch falls from {before} to {}", state.epoch));
        }
        self.daemons[index].disk.state = state;
    }

    fn complete_syncs(&mut self, index: usize) {
        loop {
            let now = self.now;
            let live = self.daemons[index].live.as_mut().expect("checked live");
            if live.syncs.front().is_none_or(|s| s.done_at > now) {
                return;
            }
            let sync = live.syncs.pop_front().expect("checked");
            if let Some(state) = sync.state {
                self.write_state(index, state);
            }
            self.note_durable(index, &sync.entries);
            let daemon = &mut self.daemons[index];
            daemon.disk.log.extend(sync.entries);
            let live = daemon.live.as_mut().expect("checked live");
            let response = live.store.finish(sync.then, sync.groups);
            if let (Pending::Append { epoch, .. }, Response::Appended { .. }) = (sync.then, &response)
                && live.store.epoch() != epoch
            {
                let current = live.store.epoch();
                self.fail(format!("storage-{index} at epoch {current} acknowledged an append of epoch {epoch}"));
            }
            let node = self.daemons[index].node;
            if let Some((to, id)) = sync.reply {
                self.send(Addr::Daemon(node), to, Body::Response { id, response });
            }
        }
    }

    fn gossip(&mut self, index: usize) {
        let now = self.now;
        let node = self.daemons[index].node;
        let live = self.daemons[index].live.as_mut().expect("checked live");
        let round_over = live.gossip.as_ref().is_some_and(|r| r.asked.is_empty() || r.deadline <= now);
        if round_over {
            let round = live.gossip.take().expect("checked");
            self.finish_gossip(index, round.statuses);
            return;
        }
        if live.gossip.is_some() || live.next_gossip > now {
            return;
        }
        live.next_gossip = now + GOSSIP_INTERVAL;
        let peers: Vec<NodeId> = self.placement.nodes().into_iter().filter(|n| *n != node).collect();
        let mut asked = BTreeMap::new();
        for peer in peers {
            let id = self.id();
            asked.insert(id, peer);
            self.send(Addr::Daemon(node), Addr::Daemon(peer), Body::Request { id, request: Request::Status });
        }
        let live = self.daemons[index].live.as_mut().expect("checked live");
        live.gossip = Some(GossipRound { deadline: now + REQUEST_TIMEOUT, asked, statuses: Vec::new() });
    }

    fn finish_gossip(&mut self, index: usize, peers: Vec<NodeStatus>) {
        let node = self.daemons[index].node;
        let live = self.daemons[index].live.as_mut().expect("checked live");
        for truncation in truncations_to_adopt(&live.store.status(), &peers) {
            let live = self.daemons[index].live.as_mut().expect("checked live");
            if let Step::Sync(work) = live.store.adopt_truncation(truncation) {
                self.enqueue_sync(index, work, None);
            }
        }
        let live = self.daemons[index].live.as_mut().expect("checked live");
        let mine = live.store.status();
        for (group, floor) in peer_floors(&mine, &peers, |group| self.placement.segments(group)) {
            live.store.peers_complete_to(group, floor);
        }
        for fetch in gossip_fetches(&live.store.status(), &peers) {
            let id = self.id();
            let request = Request::GetRecords {
                protection_group: fetch.protection_group,
                after: fetch.after,
                up_to: fetch.tail_lsn,
                bytes_max: REPAIR_BYTES_MAX,
            };
            self.daemons[index].live.as_mut().expect("checked live").fetches.insert(id, fetch);
            self.send(Addr::Daemon(node), Addr::Daemon(fetch.peer), Body::Request { id, request });
        }
    }

    fn daemon_response(&mut self, index: usize, id: u64, response: Response) {
        let live = self.daemons[index].live.as_mut().expect("delivered to a live daemon");
        if let Some(round) = live.gossip.as_mut()
            && round.asked.remove(&id).is_some()
        {
            if let Response::Status(status) = response {
                round.statuses.push(status);
            }
            return;
        }
        let Some(fetch) = live.fetches.remove(&id) else { return };
        let Response::Records { records, .. } = response else { return };
        let groups = vec![GroupAppend { protection_group: fetch.protection_group, records, tail_lsn: fetch.tail_lsn }];
        if let Step::Sync(work) = live.store.repair(groups, fetch.complete_to) {
            self.enqueue_sync(index, work, None);
        }
    }

    fn crash_daemon(&mut self, index: usize, down_for: Micros) {
        let torn = self.net.faults.torn_tail;
        let daemon = &mut self.daemons[index];
        let Some(live) = daemon.live.take() else { return };
        self.stats.daemon_crashes += 1;
        // Written but not synced: a prefix may have reached the disk anyway.
        let unsynced: Vec<PendingSync> = live.syncs.into_iter().collect();
        let entries: usize = unsynced.iter().map(|s| s.entries.len()).sum();
        let mut keep = if torn { self.rng.random_range(0..=entries) } else { 0 };
        self.stats.torn_entries += keep as u64;
        for sync in unsynced {
            if keep == 0 {
                break;
            }
            if let Some(state) = sync.state {
                daemon.disk.state = state;
            }
            let take = keep.min(sync.entries.len());
            let kept: Vec<LogEntry> = sync.entries.into_iter().take(take).collect();
            for entry in &kept {
                if let LogEntry::Record(record) = entry {
                    self.durable_records[index].insert(record.lsn);
                }
            }
            daemon.disk.log.extend(kept);
            keep -= take;
        }
        daemon.restart_at = self.now + down_for;
    }

    // ---- writers ----

    fn recovery_settings(&self) -> RecoverySettings {
        RecoverySettings {
            placement: self.placement.clone(),
            write_quorum: WRITE_QUORUM,
            read_quorum: READ_QUORUM,
            lsn_allocation_limit: LSN_ALLOCATION_LIMIT,
        }
    }

    fn writer_timers(&mut self, index: usize) {
        let now = self.now;
        match &self.writers[index].phase {
            Phase::Waiting { until } if *until <= now => {
                let core = RecoveryCore::new(self.recovery_settings());
                self.writers[index].phase =
                    Phase::Recovering(Box::new(Recovering { core, ids: Vec::new(), answers: Vec::new(), deadline: 0 }));
                self.send_recovery_round(index);
            }
            Phase::Recovering(r) if r.deadline <= now || r.answers.iter().all(Option::is_some) => {
                self.recovery_round_done(index);
            }
            Phase::Running { .. } => {
                for node in self.placement.nodes() {
                    self.drive_sender(index, node);
                }
                self.commit(index);
            }
            _ => {}
        }
    }

    fn send_recovery_round(&mut self, index: usize) {
        let Phase::Recovering(r) = &self.writers[index].phase else { return };
        let round: Vec<(NodeId, Request)> = r.core.requests().to_vec();
        let from = Addr::Writer(self.writers[index].id);
        let mut ids = Vec::with_capacity(round.len());
        for (node, request) in round {
            let id = self.id();
            ids.push(id);
            self.send(from, Addr::Daemon(node), Body::Request { id, request });
        }
        let deadline = self.now + REQUEST_TIMEOUT;
        let Phase::Recovering(r) = &mut self.writers[index].phase else { return };
        r.answers = vec![None; ids.len()];
        r.ids = ids;
        r.deadline = deadline;
    }

    fn recovery_round_done(&mut self, index: usize) {
        let Phase::Recovering(r) = &mut self.writers[index].phase else { return };
        let answers = std::mem::take(&mut r.answers)
            .into_iter()
            .map(|a| a.ok_or_else(|| StorageError::Io("no answer within the timeout".into())))
            .collect();
        r.core.answered(answers);
        match r.core.outcome() {
            None => self.send_recovery_round(index),
            Some(Err(_)) => {
                let retry = self.now + self.rng.random_range(20 * MS..150 * MS);
                self.writers[index].phase = Phase::Waiting { until: retry };
            }
            Some(Ok(recovered)) => {
                self.stats.recoveries += 1;
                if let Err(e) = self.history.recovered(&recovered) {
                    self.fail(e);
                    return;
                }
                let model = match self.history.pages_at(recovered.durable_lsn) {
                    Ok(model) => model,
                    Err(e) => return self.fail(e),
                };
                let settings = WriterSettings {
                    placement: self.placement.clone(),
                    layout: LAYOUT,
                    write_quorum: WRITE_QUORUM,
                    lsn_allocation_limit: LSN_ALLOCATION_LIMIT,
                };
                let writer = &mut self.writers[index];
                writer.model = model;
                writer.last_assigned = recovered.lsn_floor;
                let core = WriterCore::new(settings, recovered);
                let senders = core
                    .nodes()
                    .into_iter()
                    .map(|n| {
                        (
                            n,
                            SenderSlot {
                                state: Sender::Backoff { until: 0 },
                                backoff: BACKOFF_MIN,
                                repaired: Vec::new(),
                            },
                        )
                    })
                    .collect();
                writer.phase = Phase::Running { core: Box::new(core), senders };
            }
        }
    }

    fn writer_response(&mut self, index: usize, from: Addr, id: u64, response: Response) {
        if !matches!(from, Addr::Daemon(_)) {
            return;
        }
        match &mut self.writers[index].phase {
            Phase::Recovering(r) => {
                if let Some(slot) = r.ids.iter().position(|i| *i == id)
                    && r.answers[slot].is_none()
                {
                    r.answers[slot] = Some(response);
                }
            }
            Phase::Running { .. } => self.sender_answer(index, id, response),
            _ => {}
        }
    }

    /// Starts the next exchange of an idle sender, or gives up a timed-out one.
    fn drive_sender(&mut self, index: usize, node: NodeId) {
        let now = self.now;
        let writer_id = self.writers[index].id;
        let Phase::Running { core, senders } = &mut self.writers[index].phase else { return };
        let slot = senders.get_mut(&node).expect("a sender per node");
        let timed_out = match &slot.state {
            Sender::Append { deadline, .. }
            | Sender::Fetch { deadline, .. }
            | Sender::RepairAppend { deadline, .. } => *deadline <= now,
            Sender::Hello { waiting: Some((_, deadline)), .. } => *deadline <= now,
            _ => false,
        };
        if timed_out {
            core.rewind(node);
            slot.state = Sender::Backoff { until: now + slot.backoff };
            slot.backoff = (slot.backoff * 2).min(BACKOFF_MAX);
            return;
        }
        let request = match &mut slot.state {
            Sender::Backoff { until } if *until <= now => {
                slot.state = Sender::Hello { requests: core.hello_requests(), answers: Vec::new(), waiting: None };
                return self.drive_sender(index, node);
            }
            Sender::Hello { requests, answers, waiting } if waiting.is_none() => {
                *waiting = Some((self.next_id + 1, now + REQUEST_TIMEOUT));
                (node, requests[answers.len()].clone())
            }
            Sender::Ready => match core.next_outgoing(node) {
                None => return,
                Some(Outgoing::Append(request)) => {
                    slot.state = Sender::Append { id: self.next_id + 1, deadline: now + REQUEST_TIMEOUT };
                    (node, request)
                }
                Some(Outgoing::Repair { protection_group, after, up_to, source }) => {
                    let repair = Repair { protection_group, after, up_to, source };
                    slot.repaired.clear();
                    slot.state = Sender::Fetch { id: self.next_id + 1, deadline: now + REQUEST_TIMEOUT, repair };
                    let request = Request::GetRecords { protection_group, after, up_to, bytes_max: REPAIR_BYTES_MAX };
                    (source, request)
                }
            },
            _ => return,
        };
        let id = self.id();
        let (to, request) = request;
        self.send(Addr::Writer(writer_id), Addr::Daemon(to), Body::Request { id, request });
    }

    fn sender_answer(&mut self, index: usize, id: u64, response: Response) {
        let now = self.now;
        let writer_id = self.writers[index].id;
        let Phase::Running { core, senders } = &mut self.writers[index].phase else { return };
        // The answer belongs to the sender whose exchange it answers.
        let Some((node, slot)) = senders.iter_mut().find(|(_, s)| match &s.state {
            Sender::Append { id: i, .. } | Sender::Fetch { id: i, .. } | Sender::RepairAppend { id: i, .. } => *i == id,
            Sender::Hello { waiting: Some((i, _)), .. } => *i == id,
            _ => false,
        }) else {
            return;
        };
        let node = *node;
        let outcome: Result<Option<Lsn>, StorageError> = match std::mem::replace(&mut slot.state, Sender::Ready) {
            Sender::Hello { requests, mut answers, .. } => {
                answers.push(response);
                if answers.len() < requests.len() {
                    slot.state = Sender::Hello { requests, answers, waiting: None };
                    Ok(None)
                } else {
                    core.hello_answered(node, answers)
                }
            }
            Sender::Append { .. } | Sender::RepairAppend { .. } => core.appended(node, response),
            Sender::Fetch { repair, .. } => match response {
                Response::Records { records, more } => {
                    let done = records.is_empty() || !more;
                    slot.repaired.extend(records);
                    if done {
                        let records = std::mem::take(&mut slot.repaired);
                        let request = core.repair_append(repair.protection_group, records, repair.after);
                        let id = self.next_id + 1;
                        slot.state = Sender::RepairAppend { id, deadline: now + REQUEST_TIMEOUT };
                        self.next_id = id;
                        let envelope = Body::Request { id, request };
                        self.net.send(
                            &mut self.rng,
                            &mut self.stats,
                            now,
                            Envelope { from: Addr::Writer(writer_id), to: Addr::Daemon(node), body: envelope },
                        );
                    } else {
                        let after = slot.repaired.last().map_or(repair.after, |r| r.lsn);
                        let id = self.next_id + 1;
                        self.next_id = id;
                        slot.state = Sender::Fetch { id, deadline: now + REQUEST_TIMEOUT, repair };
                        let request = Request::GetRecords {
                            protection_group: repair.protection_group,
                            after,
                            up_to: repair.up_to,
                            bytes_max: REPAIR_BYTES_MAX,
                        };
                        self.net.send(
                            &mut self.rng,
                            &mut self.stats,
                            now,
                            Envelope {
                                from: Addr::Writer(writer_id),
                                to: Addr::Daemon(repair.source),
                                body: Body::Request { id, request },
                            },
                        );
                    }
                    Ok(None)
                }
                other => Err(StorageError::Io(format!("repair fetch: {other:?}"))),
            },
            other => {
                slot.state = other;
                Ok(None)
            }
        };
        match outcome {
            Ok(_) => {
                if matches!(slot.state, Sender::Ready) {
                    slot.backoff = BACKOFF_MIN;
                }
                self.acknowledge(index);
            }
            Err(e) if e.is_fenced() => {
                self.stats.fenced += 1;
                self.writers[index].phase = Phase::Fenced;
            }
            Err(_) => {
                core.rewind(node);
                slot.state = Sender::Backoff { until: now + slot.backoff };
                slot.backoff = (slot.backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// Acknowledges every pending commit the durable LSN has passed.
    fn acknowledge(&mut self, index: usize) {
        let writer = &mut self.writers[index];
        let Phase::Running { core, .. } = &writer.phase else { return };
        let (durable, epoch) = (core.durable_lsn(), core.epoch());
        let mut acknowledged = Vec::new();
        while writer.pending.front().is_some_and(|c| *c <= durable) {
            acknowledged.push(writer.pending.pop_front().expect("checked"));
        }
        for commit in acknowledged {
            if let Err(e) = self.history.acknowledged(commit, epoch) {
                self.fail(e);
            }
            self.check_write_quorum(commit);
        }
    }

    /// Maybe starts a transaction on the writer's pages.
    fn commit(&mut self, index: usize) {
        let now = self.now;
        let quiet = self.healing && now >= (RUN_MS + HEAL_MS - QUIET_MS) * MS;
        let writer = &mut self.writers[index];
        if quiet || writer.next_commit > now {
            return;
        }
        writer.next_commit = now + self.rng.random_range(MS / 2..3 * MS);
        let mut model = writer.model.clone();
        let bodies = transaction(&mut self.rng, &mut model);
        let writer = &mut self.writers[index];
        let Phase::Running { core, .. } = &mut writer.phase else { return };
        let Some(lsns) = core.assign(&bodies) else { return };
        let epoch = core.epoch();
        writer.model = model;
        if lsns.first <= writer.last_assigned {
            let message = format!("writer {} assigned {} after {}", writer.id, lsns.first, writer.last_assigned);
            return self.fail(message);
        }
        writer.last_assigned = lsns.commit;
        writer.pending.push_back(lsns.commit);
        for (offset, body) in bodies.into_iter().enumerate() {
            let lsn = Lsn(lsns.first.0 + offset as u64);
            let record = RedoRecord {
                lsn,
                prev_lsn: Lsn::ZERO,
                protection_group: LAYOUT.group_of(body.page()),
                epoch,
                commit_lsn: lsns.commit,
                body,
            };
            if let Err(e) = self.history.assigned(record) {
                return self.fail(e);
            }
        }
    }

    // ---- faults ----

    fn inject_faults(&mut self) {
        let faults = self.net.faults.clone();
        let down = self.daemons.iter().filter(|d| d.live.is_none()).count();
        if down < faults.down_max && self.rng.random_bool(faults.daemon_crash_per_ms) {
            let index = self.rng.random_range(0..self.daemons.len());
            let down_for = self.rng.random_range(20 * MS..400 * MS);
            self.crash_daemon(index, down_for);
        }
        if self.rng.random_bool(faults.partition_per_ms) {
            let until = self.now + self.rng.random_range(20 * MS..300 * MS);
            match self.rng.random_range(0..3) {
                0 => {
                    let node = NodeId(self.rng.random_range(0..6));
                    self.net.isolated.insert(Addr::Daemon(node), until);
                }
                1 => {
                    let zone = self.rng.random_range(0..3);
                    self.net.isolated.insert(Addr::Daemon(NodeId(zone * 2)), until);
                    self.net.isolated.insert(Addr::Daemon(NodeId(zone * 2 + 1)), until);
                }
                _ => {
                    if let Some(writer) = self.writers.last() {
                        self.net.isolated.insert(Addr::Writer(writer.id), until);
                    }
                }
            }
        }
        if self.rng.random_bool(faults.writer_crash_per_ms) {
            self.stats.writer_crashes += 1;
            let keep_old = faults.split_brain && self.rng.random_bool(0.5);
            let newest = self.writers.pop();
            self.writers.clear();
            if keep_old && let Some(old) = newest {
                self.writers.push(old);
            }
            let delay = self.rng.random_range(10 * MS..200 * MS);
            self.add_writer(delay);
        }
    }

    /// Ends the faults: every daemon comes back, the network is reliable,
    /// only the newest writer remains (a new one if it was fenced).
    fn heal(&mut self) {
        self.healing = true;
        self.net.faults = Faults::none();
        self.net.isolated.clear();
        for daemon in &mut self.daemons {
            daemon.restart_at = daemon.restart_at.min(self.now);
        }
        let newest = self.writers.pop();
        self.writers.clear();
        match newest {
            Some(writer) if !matches!(writer.phase, Phase::Fenced) => self.writers.push(writer),
            _ => self.add_writer(0),
        }
        if let Some(writer) = self.writers.last_mut()
            && let Phase::Waiting { until } = &mut writer.phase
        {
            *until = (*until).min(self.now);
        }
    }

    // ---- checks ----

    /// DESIGN.md invariant 3: a commit is acknowledged only once every
    /// record up to it is on the disks of a write quorum.
    fn check_write_quorum(&mut self, commit: Lsn) {
        for lsn in self.history.surviving(self.quorum_checked, commit) {
            let copies = self.durable_records.iter().filter(|d| d.contains(&lsn)).count();
            if copies < WRITE_QUORUM {
                return self.fail(format!("commit {commit} acknowledged with record {lsn} durable on {copies} disks"));
            }
        }
        self.quorum_checked = self.quorum_checked.max(commit);
    }

    /// A page read at the newest writer's durable LSN, from a segment
    /// complete to it, must equal the model.
    fn check_a_read(&mut self) {
        let Some(writer) = self.writers.last() else { return };
        let Phase::Running { core, .. } = &writer.phase else { return };
        let read_point = core.durable_lsn();
        let page = PageId(self.rng.random_range(0..PAGES));
        let Some(candidates) = core.read_candidates(page, read_point) else { return };
        let now = self.instant();
        for node in candidates {
            let Some(live) = self.daemons[node.0 as usize].live.as_mut() else { continue };
            let Ok(served) = live.store.get_page(page, read_point, now) else { continue };
            let expected = match self.history.pages_at(read_point) {
                Ok(pages) => pages.get(&page).cloned().unwrap_or_default(),
                Err(e) => return self.fail(e),
            };
            let mut expected = expected;
            expected.seal();
            self.stats.page_reads_checked += 1;
            if served.as_bytes() != expected.as_bytes() {
                let message = format!("{node} served page {page} at {read_point} unlike the model");
                self.fail(message);
            }
            return;
        }
    }

    fn final_checks(&mut self) {
        let Some(writer) = self.writers.last() else {
            return self.fail("no writer after healing".into());
        };
        let Phase::Running { core, .. } = &writer.phase else {
            return self.fail("the writer did not recover after healing".into());
        };
        if let Some(commit) = writer.pending.front() {
            let message = format!("commit {commit} not acknowledged after healing (durable {})", core.durable_lsn());
            return self.fail(message);
        }
        let durable = core.durable_lsn();
        self.stats.final_durable_lsn = durable;
        if self.history.last_acknowledged() > durable {
            let message =
                format!("acknowledged {} is above the final durable LSN {durable}", self.history.last_acknowledged());
            return self.fail(message);
        }
        let pages = match self.history.pages_at(durable) {
            Ok(pages) => pages,
            Err(e) => return self.fail(e),
        };
        for group in self.history.groups_at(durable) {
            let expected = History::digest(&pages, LAYOUT, group);
            for index in 0..self.daemons.len() {
                let Some(live) = self.daemons[index].live.as_mut() else {
                    return self.fail(format!("storage-{index} is down after healing"));
                };
                let scl = live.store.segment_complete_lsn(group);
                match live.store.digest(group, durable) {
                    Ok(digest) if digest == expected => {}
                    Ok(digest) => {
                        let message = format!(
                            "storage-{index} group {group} at {durable} (SCL {scl}) differs from the model: {} pages, model {}",
                            digest.len(),
                            expected.len()
                        );
                        return self.fail(message);
                    }
                    Err(refusal) => {
                        let message = format!("storage-{index} group {group}: no digest at {durable}: {refusal:?}");
                        return self.fail(message);
                    }
                }
            }
        }
    }
}

impl LiveDaemon {
    /// A daemon started from what its disk holds.
    fn start(node: NodeId, disk: &Disk, now: Micros, rng: &mut ChaCha8Rng) -> LiveDaemon {
        let mut store = SegmentStore::with_base(node, LAYOUT, disk.state.clone(), Arc::clone(&disk.pages) as _);
        store.watch_peers();
        for entry in disk.log.iter().cloned() {
            store.replay(entry);
        }
        LiveDaemon {
            saved_durable: store.durable_lsn(),
            store,
            syncs: VecDeque::new(),
            sync_free_at: now,
            next_tick: now + rng.random_range(0..DAEMON_TICK),
            next_gossip: now + rng.random_range(0..GOSSIP_INTERVAL),
            gossip: None,
            fetches: BTreeMap::new(),
        }
    }
}

/// One to three changes to random pages, valid on the writer's `model`
/// (which they are applied to).
fn transaction(rng: &mut ChaCha8Rng, model: &mut BTreeMap<PageId, Page>) -> Vec<RedoBody> {
    let count = rng.random_range(1..=3);
    let mut bodies = Vec::with_capacity(count);
    for _ in 0..count {
        let page = PageId(rng.random_range(0..PAGES));
        let image = model.entry(page).or_default();
        let live: Vec<u16> = image.tuples().map(|(slot, _)| slot).collect();
        let data: Vec<u8> = (0..rng.random_range(1..24)).map(|_| rng.random()).collect();
        let body = if image.kind() == PageKind::Empty {
            RedoBody::InitPage { page, kind: PageKind::Heap }
        } else {
            match rng.random_range(0..10) {
                0..=4 if live.len() < 40 && image.fits(data.len()) => {
                    RedoBody::InsertTuple { page, slot: image.next_slot(), data }
                }
                0..=7 if !live.is_empty() => {
                    RedoBody::UpdateTuple { page, slot: live[rng.random_range(0..live.len())], data }
                }
                _ if !live.is_empty() => RedoBody::DeleteTuple { page, slot: live[rng.random_range(0..live.len())] },
                _ => RedoBody::InsertTuple { page, slot: image.next_slot(), data },
            }
        };
        body.apply_body(image).expect("generated redo applies to the writer's pages");
        bodies.push(body);
    }
    bodies
}
