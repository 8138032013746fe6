//! DataFusion's view of the tables: a schema provider over the catalog and a
//! page-backed `TableProvider` whose scan walks the table's page chain.
//!
//! How a statement's context reaches the scan: each session keeps one
//! DataFusion `SessionState`. Before planning a statement the session
//! - points its [`CatalogView`] at the catalog the statement sees (schema
//!   providers resolve names through it), and
//! - stores the statement's [`Snapshot`] (read point + the transaction's
//!   private pages) as a `SessionConfig` extension.
//!
//! [`ScanExec::execute`] takes the snapshot from the `TaskContext`'s session
//! config, not from the plan, so a physical plan holds no read point and could
//! later be cached and re-executed at a new one.
//!
//! Filters that an index can serve are pushed into the scan (`Inexact`:
//! DataFusion still applies them) and [`PageTable::scan`] then plans a
//! [`ScanExec`] that reads the matching entries of the index chosen by
//! `crate::access` and fetches their rows; otherwise it walks the whole
//! chain. EXPLAIN shows which (`IndexScan` or `PageScan`).
//!
//! Names: DataFusion's default schema is [`SEARCH_PATH_SCHEMA`], whose
//! provider resolves an unqualified name through the session's search_path
//! (system tables first, as PostgreSQL searches `pg_catalog` first); a
//! qualified `s.t` reaches the provider of schema `s`, which [`TablesCatalog`]
//! answers for every schema of the catalog. Both go through
//! `Catalog::find_table`, the one place a name becomes a table.
//! [`ROWS_SCHEMA`] holds each table, named by its id, with an extra last
//! column [`ROW_ADDRESS_COLUMN`] (u64 row address); UPDATE and DELETE are
//! rewritten into SELECTs over it (see `crate::dml`).

use crate::access::{self, IndexChoice};
use crate::btree::{self, KeyRange};
use crate::catalog::{Catalog, QualifiedName, SearchPath, TableDef, TableId};
use crate::error::SqlError;
use crate::heap::{PagesRead, RowAddress, Snapshot};
use crate::pg_catalog::PgCatalogSchema;
use crate::row::{OutputColumn, RowDecoder};
use async_trait::async_trait;
use borealis_storage::ids::PageId;
use borealis_storage::page::Page;
use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, SchemaProvider, Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    ReplaceChildrenOptions,
};
use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

/// Schema holding the row-address variants of the tables, named by table id.
pub const ROWS_SCHEMA: &str = "__borealis_rows";
/// DataFusion's default schema: unqualified names, resolved through search_path.
pub const SEARCH_PATH_SCHEMA: &str = "__borealis_search_path";
/// Name of the hidden row-address column.
pub const ROW_ADDRESS_COLUMN: &str = "__borealis_row_address";
/// Rows per scan batch: DataFusion's default batch size.
pub const SCAN_BATCH_ROWS: usize = 8192;

/// The catalog and snapshot the session's current statement sees, and the
/// session's search path. The locks are never held across an await.
#[derive(Debug, Default)]
pub struct CatalogView {
    catalog: RwLock<Arc<Catalog>>,
    path: RwLock<SearchPath>,
    /// For functions that read pages (the relation size functions); scans
    /// take it from the session config instead.
    snapshot: RwLock<Option<Snapshot>>,
}

impl CatalogView {
    /// Makes `catalog` the one name resolution sees.
    pub fn set(&self, catalog: Arc<Catalog>) {
        *self.catalog.write().expect("catalog view lock poisoned") = catalog;
    }

    /// The current catalog.
    pub fn get(&self) -> Arc<Catalog> {
        Arc::clone(&self.catalog.read().expect("catalog view lock poisoned"))
    }

    /// Makes `snapshot` the one the statement's functions read pages at.
    pub fn set_snapshot(&self, snapshot: Snapshot) {
        *self.snapshot.write().expect("catalog view lock poisoned") = Some(snapshot);
    }

    /// The current statement's snapshot, if a statement was prepared.
    pub fn snapshot(&self) -> Option<Snapshot> {
        self.snapshot.read().expect("catalog view lock poisoned").clone()
    }

    /// Makes `path` the one unqualified names are looked up through.
    pub fn set_path(&self, path: SearchPath) {
        *self.path.write().expect("catalog view lock poisoned") = path;
    }

    /// The current search path.
    pub fn path(&self) -> SearchPath {
        self.path.read().expect("catalog view lock poisoned").clone()
    }
}

/// Which tables a [`TablesSchema`] offers.
#[derive(Debug, Clone)]
enum Names {
    /// Unqualified names, through the search path.
    SearchPath,
    /// The tables of one schema.
    Schema(String),
    /// Every table by id, with the row-address column.
    Rows,
}

/// A DataFusion schema over the catalog view.
#[derive(Debug)]
pub struct TablesSchema {
    view: Arc<CatalogView>,
    names: Names,
    /// Searched before the user's tables for unqualified names, as
    /// PostgreSQL searches `pg_catalog` first (`SELECT * FROM pg_class`).
    system: Option<Arc<PgCatalogSchema>>,
}

impl TablesSchema {
    /// Unqualified names, resolving system table names to `system` first.
    pub fn search_path(view: Arc<CatalogView>, system: Arc<PgCatalogSchema>) -> TablesSchema {
        TablesSchema { view, names: Names::SearchPath, system: Some(system) }
    }

    /// The tables of schema `name`.
    pub fn schema(view: Arc<CatalogView>, name: &str) -> TablesSchema {
        TablesSchema { view, names: Names::Schema(name.to_string()), system: None }
    }

    /// Every table by id (`"__borealis_rows"."17"`), with the row-address column.
    pub fn rows(view: Arc<CatalogView>) -> TablesSchema {
        TablesSchema { view, names: Names::Rows, system: None }
    }

    fn find(&self, name: &str) -> Option<Arc<TableDef>> {
        let catalog = self.view.get();
        let entry = match &self.names {
            Names::SearchPath => catalog.find_table(&self.view.path(), &QualifiedName::bare(name)),
            Names::Schema(schema) => catalog.get(schema, name),
            Names::Rows => name.parse().ok().and_then(|id| catalog.table_by_id(TableId(id))),
        };
        entry.map(|entry| Arc::clone(&entry.def))
    }
}

#[async_trait]
impl SchemaProvider for TablesSchema {
    fn table_names(&self) -> Vec<String> {
        let catalog = self.view.get();
        match &self.names {
            Names::SearchPath => Vec::new(),
            Names::Schema(schema) => {
                catalog.tables().filter(|e| &e.schema_name == schema).map(|e| e.def.name.clone()).collect()
            }
            Names::Rows => Vec::new(),
        }
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(system) = &self.system
            && let Some(table) = system.system_table(name)?
        {
            return Ok(Some(table));
        }
        let with_row_address = matches!(self.names, Names::Rows);
        Ok(self.find(name).map(|def| Arc::new(PageTable::new(def, with_row_address)) as _))
    }

    fn table_exist(&self, name: &str) -> bool {
        (self.system.is_some() && crate::pg_catalog::is_system_table(name)) || self.find(name).is_some()
    }
}

/// DataFusion's default catalog: the fixed schemas (system, row-address,
/// RETURNING, search path) plus one [`TablesSchema`] for each schema of the
/// catalog view, made when a name asks for it.
#[derive(Debug)]
pub struct TablesCatalog {
    fixed: MemoryCatalogProvider,
    view: Arc<CatalogView>,
}

impl TablesCatalog {
    pub fn new(view: Arc<CatalogView>) -> TablesCatalog {
        TablesCatalog { fixed: MemoryCatalogProvider::new(), view }
    }
}

impl CatalogProvider for TablesCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.fixed.schema_names();
        names.push(crate::catalog::PUBLIC_SCHEMA.to_string());
        names.extend(self.view.get().schemas().map(|s| s.def.name.clone()));
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if let Some(schema) = self.fixed.schema(name) {
            return Some(schema);
        }
        let catalog = self.view.get();
        (name == crate::catalog::PUBLIC_SCHEMA || catalog.schema(name).is_some())
            .then(|| Arc::new(TablesSchema::schema(Arc::clone(&self.view), name)) as _)
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        self.fixed.register_schema(name, schema)
    }
}

/// A table stored in heap pages.
#[derive(Debug)]
pub struct PageTable {
    def: Arc<TableDef>,
    schema: SchemaRef,
}

impl PageTable {
    /// The table, with the row-address column appended if asked.
    pub fn new(def: Arc<TableDef>, with_row_address: bool) -> PageTable {
        // Every field is nullable for DataFusion: NOT NULL is enforced when
        // rows are encoded (23502 naming the column), whereas a non-nullable
        // field makes DataFusion fail INSERT of a NULL with an Arrow error.
        let mut fields: Vec<Field> = def.columns.iter().map(|c| c.ty.arrow_field(&c.name, true)).collect();
        if with_row_address {
            fields.push(Field::new(ROW_ADDRESS_COLUMN, DataType::UInt64, false));
        }
        PageTable { def, schema: Arc::new(Schema::new(fields)) }
    }
}

#[async_trait]
impl TableProvider for PageTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|filter| {
                if access::is_usable(&self.def, filter) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let all: Vec<usize> = (0..self.schema.fields().len()).collect();
        let projection = projection.unwrap_or(&all);
        let stored = self.def.columns.len();
        let outputs = projection
            .iter()
            .map(|&i| if i < stored { OutputColumn::Stored(i) } else { OutputColumn::RowAddress })
            .collect();
        let schema = Arc::new(self.schema.project(projection)?);
        let index = access::choose(&self.def, filters);
        Ok(Arc::new(ScanExec::new(Arc::clone(&self.def), index, outputs, schema, limit)))
    }
}

fn plan_properties(schema: &SchemaRef, partitions: usize) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(Arc::clone(schema)),
        Partitioning::UnknownPartitioning(partitions),
        EmissionType::Incremental,
        Boundedness::Bounded,
    ))
}

/// The statement's snapshot, stored in the session config by the planner.
fn statement_snapshot(context: &TaskContext) -> DfResult<Snapshot> {
    context
        .session_config()
        .get_extension::<Snapshot>()
        .map(|snapshot| (*snapshot).clone())
        .ok_or_else(|| DataFusionError::Internal("page scan executed without a statement snapshot".into()))
}

/// Streams a table's rows at the statement's snapshot: the whole page chain
/// (`PageScan`, in [`scan_partitions`] partitions that share one walk of
/// the chain), or the rows an index finds for some key ranges (`IndexScan`,
/// one partition).
#[derive(Debug)]
pub struct ScanExec {
    def: Arc<TableDef>,
    /// None: the whole chain.
    index: Option<IndexChoice>,
    outputs: Vec<OutputColumn>,
    schema: SchemaRef,
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
    /// The walk the partitions of the current execution share.
    walk: std::sync::Mutex<Option<Arc<SharedWalk>>>,
}

/// Partitions of a page scan: one per core (at most 8), so that decoding
/// pages into batches, and the operators above the scan, run in parallel.
pub fn scan_partitions() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

impl ScanExec {
    fn new(
        def: Arc<TableDef>,
        index: Option<IndexChoice>,
        outputs: Vec<OutputColumn>,
        schema: SchemaRef,
        limit: Option<usize>,
    ) -> ScanExec {
        let partitions = if index.is_some() { 1 } else { scan_partitions() };
        let properties = plan_properties(&schema, partitions);
        ScanExec { def, index, outputs, schema, limit, properties, walk: std::sync::Mutex::new(None) }
    }

    /// The walk of the execution `partition` belongs to: the current one,
    /// or a new one when `partition` has already taken its part of it (the
    /// plan runs again). The plan forgets a walk once every partition has
    /// taken it, so that it holds no read point after the execution.
    fn shared_walk(&self, partition: usize, snapshot: &Snapshot) -> Arc<SharedWalk> {
        let mut slot = self.walk.lock().expect("scan walk lock poisoned");
        let partitions = self.properties.partitioning.partition_count();
        let walk = match slot.take() {
            Some(current) if !current.is_taken(partition) => current,
            _ => Arc::new(SharedWalk::new(snapshot.clone(), self.def.first_page, partitions)),
        };
        if !walk.take_partition(partition) {
            *slot = Some(Arc::clone(&walk));
        }
        walk
    }
}

impl DisplayAs for ScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match &self.index {
            None => write!(f, "PageScan: table={}, columns={:?}", self.def.name, self.outputs)?,
            Some(choice) => write!(
                f,
                "IndexScan: table={}, index={}, ranges={}, columns={:?}",
                self.def.name,
                self.def.indexes[choice.index].name,
                choice.ranges.len(),
                self.outputs
            )?,
        }
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for ScanExec {
    fn name(&self) -> &str {
        if self.index.is_some() { "IndexScan" } else { "PageScan" }
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let snapshot = statement_snapshot(&context)?;
        let decoder = RowDecoder::new(self.def.types(), self.outputs.clone());
        let schema = Arc::clone(&self.schema);
        let limit = self.limit.unwrap_or(usize::MAX);
        let stream: futures::stream::BoxStream<'static, DfResult<RecordBatch>> = match &self.index {
            None => {
                let walk = self.shared_walk(partition, &snapshot);
                let cursor = ScanCursor { walk, partition, first_batch_sent: false, decoder, schema, rows_left: limit };
                Box::pin(futures::stream::try_unfold(cursor, |mut cursor| async move {
                    let batch = cursor.next_batch().await.map_err(DataFusionError::from)?;
                    Ok(batch.map(|batch| (batch, cursor)))
                }))
            }
            Some(choice) => {
                let root = self.def.indexes[choice.index].root;
                let ranges = choice.ranges.clone();
                let cursor = IndexCursor { snapshot, root, ranges, addresses: None, decoder, schema, limit };
                Box::pin(futures::stream::try_unfold(cursor, |mut cursor| async move {
                    let batch = cursor.next_batch().await.map_err(DataFusionError::from)?;
                    Ok(batch.map(|batch| (batch, cursor)))
                }))
            }
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), stream)))
    }
}

/// Pages one read-ahead request asks for, while the chain runs through
/// consecutive page ids (as tables loaded in bulk do); the first requests
/// of a walk ask for fewer, so that a short chain reads little past its end.
const READ_AHEAD_PAGES: u64 = 32;
/// Pages the first read-ahead request of a walk asks for.
const READ_AHEAD_FIRST_PAGES: u64 = 4;
/// Read-ahead requests a walk keeps in flight, at most (128 pages, 1 MiB).
const READ_AHEAD_REQUESTS: usize = 4;

/// One walk of a table's page chain, shared by the partitions of a page
/// scan: each takes the next run of pages under the lock and decodes it
/// outside, so decoding runs in parallel while the chain is read in order.
///
/// Row order: partition 0 alone takes pages until it has sent its first
/// batch (or reached the chain's end), and the others wait for that; so a
/// table of up to one batch of rows comes out in chain order, as from a
/// single scan. Past that, batches of different partitions interleave.
struct SharedWalk {
    chain: tokio::sync::Mutex<ChainWalk>,
    /// Set once partition 0 has sent its first batch, ended or was dropped.
    parallel: tokio::sync::watch::Sender<bool>,
    /// Partitions whose stream has been created for this walk.
    taken: std::sync::Mutex<Vec<bool>>,
}

impl std::fmt::Debug for SharedWalk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedWalk").field("taken", &self.taken).finish_non_exhaustive()
    }
}

impl SharedWalk {
    fn new(snapshot: Snapshot, first_page: PageId, partitions: usize) -> SharedWalk {
        SharedWalk {
            chain: tokio::sync::Mutex::new(ChainWalk {
                snapshot,
                next: Some(first_page),
                ahead: VecDeque::new(),
                runs: 0,
            }),
            parallel: tokio::sync::watch::Sender::new(partitions == 1),
            taken: std::sync::Mutex::new(vec![false; partitions]),
        }
    }

    fn is_taken(&self, partition: usize) -> bool {
        self.taken.lock().expect("scan partitions lock poisoned")[partition]
    }

    /// Marks `partition` taken; returns whether every partition now is.
    fn take_partition(&self, partition: usize) -> bool {
        let mut taken = self.taken.lock().expect("scan partitions lock poisoned");
        taken[partition] = true;
        taken.iter().all(|t| *t)
    }

    fn go_parallel(&self) {
        self.parallel.send_replace(true);
    }
}

/// Where the shared walk is in the chain.
struct ChainWalk {
    snapshot: Snapshot,
    /// The next page of the chain not handed out yet.
    next: Option<PageId>,
    /// Reads started ahead, in page order, each of `count` consecutive
    /// page ids from `start`: a guess that the chain goes on through them.
    /// A wrong guess costs reads, never a wrong row.
    ahead: VecDeque<ReadAhead>,
    /// Runs handed out since the chain last jumped: the read-ahead grows
    /// with them, and starts small again after a jump.
    runs: u32,
}

/// A read-ahead request in flight.
struct ReadAhead {
    start: PageId,
    count: u64,
    read: PagesRead,
}

impl ChainWalk {
    /// The next pages of the chain, in chain order; None at its end.
    async fn next_run(&mut self) -> Result<Option<Vec<(PageId, Arc<Page>)>>, SqlError> {
        let Some(first) = self.next else { return Ok(None) };
        self.runs += 1;
        let pages = match self.ahead.front() {
            Some(ahead) if ahead.start == first => {
                let ahead = self.ahead.pop_front().expect("front exists");
                ahead.read.await.map_err(|e| SqlError::internal(format_args!("read-ahead: {e}")))??
            }
            _ => {
                self.drop_guesses();
                self.runs = 1;
                self.snapshot.pages(&[first]).await?
            }
        };
        let mut run = Vec::with_capacity(pages.len());
        for (id, page) in (first.0..).map(PageId).zip(pages) {
            self.next = page.next_page();
            run.push((id, page));
            if self.next != Some(PageId(id.0 + 1)) {
                break;
            }
        }
        match self.next {
            Some(next) if next.0 == run.last().expect("a run has a page").0.0 + 1 => self.read_ahead(next),
            _ => self.drop_guesses(),
        }
        Ok(Some(run))
    }

    /// Keeps reads in flight from `from` on: one request of
    /// [`READ_AHEAD_FIRST_PAGES`] after the first run, growing to
    /// [`READ_AHEAD_REQUESTS`] of [`READ_AHEAD_PAGES`] as runs go by.
    fn read_ahead(&mut self, from: PageId) {
        if self.ahead.front().is_some_and(|ahead| ahead.start != from) {
            self.drop_guesses();
        }
        let requests = usize::try_from(self.runs).unwrap_or(usize::MAX).min(READ_AHEAD_REQUESTS);
        let count = (READ_AHEAD_FIRST_PAGES << (self.runs - 1).min(8)).min(READ_AHEAD_PAGES);
        let mut start = self.ahead.back().map_or(from.0, |last| last.start.0 + last.count);
        while self.ahead.len() < requests {
            let ids = (start..start + count).map(PageId).collect();
            self.ahead.push_back(ReadAhead { start: PageId(start), count, read: self.snapshot.read_ahead(ids) });
            start += count;
        }
    }

    /// Forgets the reads ahead. They are not aborted: their requests are
    /// out already, and the pages they bring enter the cache (a jump in a
    /// chain often lands on pages a query reads next, such as those of the
    /// table loaded in between).
    fn drop_guesses(&mut self) {
        self.ahead.clear();
    }
}

/// One partition of a page scan.
struct ScanCursor {
    walk: Arc<SharedWalk>,
    partition: usize,
    /// Partition 0: whether its first batch has gone out.
    first_batch_sent: bool,
    decoder: RowDecoder,
    schema: SchemaRef,
    /// Rows the LIMIT still allows.
    rows_left: usize,
}

impl ScanCursor {
    /// The next batch of up to [`SCAN_BATCH_ROWS`] rows, None at the chain's end.
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>, SqlError> {
        if self.partition > 0 {
            let mut parallel = self.walk.parallel.subscribe();
            parallel.wait_for(|go| *go).await.map_err(|_| SqlError::internal("scan walk dropped"))?;
        }
        while self.decoder.rows() < SCAN_BATCH_ROWS && self.rows_left > 0 {
            let Some(run) = self.walk.chain.lock().await.next_run().await? else { break };
            for (id, page) in run {
                for (slot, tuple) in page.tuples() {
                    if self.rows_left == 0 {
                        break;
                    }
                    self.decoder.append(tuple, RowAddress { page: id, slot }.to_u64())?;
                    self.rows_left -= 1;
                }
            }
        }
        let batch = take_batch(&mut self.decoder, &self.schema)?;
        if self.partition == 0 && !self.first_batch_sent {
            self.first_batch_sent = true;
            self.walk.go_parallel();
        }
        Ok(batch)
    }
}

impl Drop for ScanCursor {
    fn drop(&mut self) {
        if self.partition == 0 {
            self.walk.go_parallel();
        }
    }
}

/// The rows decoded so far as one batch, None if there are none.
fn take_batch(decoder: &mut RowDecoder, schema: &SchemaRef) -> Result<Option<RecordBatch>, SqlError> {
    let rows = decoder.rows();
    if rows == 0 {
        return Ok(None);
    }
    let columns = decoder.finish()?;
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options)
        .map(Some)
        .map_err(|e| SqlError::internal(format_args!("scan batch: {e}")))
}

/// Where an index scan is: the addresses found (once looked up) and those left.
struct IndexCursor {
    snapshot: Snapshot,
    root: PageId,
    ranges: Vec<KeyRange>,
    /// Found addresses still to read, in reverse order (popped from the end).
    addresses: Option<Vec<RowAddress>>,
    decoder: RowDecoder,
    schema: SchemaRef,
    limit: usize,
}

impl IndexCursor {
    async fn lookup(&self) -> Result<Vec<RowAddress>, SqlError> {
        let mut found = Vec::new();
        for range in &self.ranges {
            btree::scan(&self.snapshot, self.root, range, |entry| {
                found.push(btree::entry_address(entry)?);
                Ok(found.len() < self.limit)
            })
            .await?;
            if found.len() >= self.limit {
                break;
            }
        }
        found.reverse();
        Ok(found)
    }

    /// The next batch of up to [`SCAN_BATCH_ROWS`] rows, None when all are read.
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>, SqlError> {
        if self.addresses.is_none() {
            self.addresses = Some(self.lookup().await?);
        }
        let addresses = self.addresses.as_mut().expect("looked up above");
        let batch: Vec<RowAddress> = addresses.iter().rev().take(SCAN_BATCH_ROWS).copied().collect();
        addresses.truncate(addresses.len() - batch.len());
        // The batch's pages in one read: consecutive addresses on one page share it.
        let mut ids: Vec<PageId> = batch.iter().map(|address| address.page).collect();
        ids.dedup();
        let pages = self.snapshot.pages(&ids).await?;
        let mut pages = ids.into_iter().zip(pages).peekable();
        for address in batch {
            while pages.peek().is_some_and(|(id, _)| *id != address.page) {
                pages.next();
            }
            let (_, page) = pages.peek().ok_or_else(|| SqlError::internal("index scan lost a page"))?;
            let tuple =
                page.tuple(address.slot).ok_or_else(|| SqlError::corrupt("index entry points to a free slot"))?;
            self.decoder.append(tuple, address.to_u64())?;
        }
        take_batch(&mut self.decoder, &self.schema)
    }
}
