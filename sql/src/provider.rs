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
//! Two schemas are registered: `public` (the user's tables) and
//! [`ROWS_SCHEMA`], where each table has an extra last column
//! [`ROW_ADDRESS_COLUMN`] (u64 row address); UPDATE and DELETE are rewritten
//! into SELECTs over it (see `crate::dml`).

use crate::access::{self, IndexChoice};
use crate::btree::{self, KeyRange};
use crate::catalog::{Catalog, TableDef};
use crate::error::SqlError;
use crate::heap::{PageRead, RowAddress, Snapshot};
use crate::pg_catalog::PgCatalogSchema;
use crate::row::{OutputColumn, RowDecoder};
use async_trait::async_trait;
use borealis_storage::ids::PageId;
use borealis_storage::page::Page;
use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
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

/// Schema holding the row-address variants of the tables.
pub const ROWS_SCHEMA: &str = "__borealis_rows";
/// Name of the hidden row-address column.
pub const ROW_ADDRESS_COLUMN: &str = "__borealis_row_address";
/// Rows per scan batch: DataFusion's default batch size.
pub const SCAN_BATCH_ROWS: usize = 8192;

/// The catalog the session's current statement sees. The lock is never held across an await.
#[derive(Debug, Default)]
pub struct CatalogView {
    catalog: RwLock<Arc<Catalog>>,
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
}

/// A DataFusion schema over the catalog view.
#[derive(Debug)]
pub struct TablesSchema {
    view: Arc<CatalogView>,
    with_row_address: bool,
    /// Searched before the user's tables for unqualified names, as
    /// PostgreSQL searches `pg_catalog` first (`SELECT * FROM pg_class`).
    system: Option<Arc<PgCatalogSchema>>,
}

impl TablesSchema {
    /// The user-visible schema (`with_row_address` false) or the row-address one.
    pub fn new(view: Arc<CatalogView>, with_row_address: bool) -> TablesSchema {
        TablesSchema { view, with_row_address, system: None }
    }

    /// The schema, resolving system table names to `system` first.
    pub fn with_system(mut self, system: Arc<PgCatalogSchema>) -> TablesSchema {
        self.system = Some(system);
        self
    }
}

#[async_trait]
impl SchemaProvider for TablesSchema {
    fn table_names(&self) -> Vec<String> {
        if self.with_row_address {
            return Vec::new();
        }
        self.view.get().names().cloned().collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(system) = &self.system
            && let Some(table) = system.system_table(name)?
        {
            return Ok(Some(table));
        }
        let catalog = self.view.get();
        Ok(catalog.get(name).map(|entry| Arc::new(PageTable::new(Arc::clone(&entry.def), self.with_row_address)) as _))
    }

    fn table_exist(&self, name: &str) -> bool {
        (self.system.is_some() && crate::pg_catalog::is_system_table(name)) || self.view.get().get(name).is_some()
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
        let mut fields: Vec<Field> = def.columns.iter().map(|c| Field::new(&c.name, c.ty.arrow_type(), true)).collect();
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

fn plan_properties(schema: &SchemaRef) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(Arc::clone(schema)),
        Partitioning::UnknownPartitioning(1),
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
/// (`PageScan`), or the rows an index finds for some key ranges (`IndexScan`).
#[derive(Debug)]
pub struct ScanExec {
    def: Arc<TableDef>,
    /// None: the whole chain.
    index: Option<IndexChoice>,
    outputs: Vec<OutputColumn>,
    schema: SchemaRef,
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
}

impl ScanExec {
    fn new(
        def: Arc<TableDef>,
        index: Option<IndexChoice>,
        outputs: Vec<OutputColumn>,
        schema: SchemaRef,
        limit: Option<usize>,
    ) -> ScanExec {
        let properties = plan_properties(&schema);
        ScanExec { def, index, outputs, schema, limit, properties }
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

    fn execute(&self, _partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let snapshot = statement_snapshot(&context)?;
        let decoder = RowDecoder::new(self.def.types(), self.outputs.clone());
        let schema = Arc::clone(&self.schema);
        let limit = self.limit.unwrap_or(usize::MAX);
        let stream: futures::stream::BoxStream<'static, DfResult<RecordBatch>> = match &self.index {
            None => {
                let cursor = ScanCursor {
                    snapshot,
                    next_page: Some(self.def.first_page),
                    ahead: VecDeque::new(),
                    decoder,
                    schema,
                    rows_left: limit,
                };
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

/// Pages a scan reads ahead of itself while its chain runs through
/// consecutive page ids (as tables loaded in bulk do).
const READ_AHEAD_PAGES: u64 = 32;

/// Where a scan is in its chain.
struct ScanCursor {
    snapshot: Snapshot,
    next_page: Option<PageId>,
    /// Reads started ahead, in page order: a guess that the chain continues
    /// with the next page ids. A wrong guess costs a read, never a wrong row.
    ahead: VecDeque<(PageId, PageRead)>,
    decoder: RowDecoder,
    schema: SchemaRef,
    /// Rows the LIMIT still allows.
    rows_left: usize,
}

impl ScanCursor {
    /// The next batch of up to [`SCAN_BATCH_ROWS`] rows, None at the chain's end.
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>, SqlError> {
        while self.decoder.rows() < SCAN_BATCH_ROWS && self.rows_left > 0 {
            let Some(id) = self.next_page else { break };
            let page = self.page(id).await?;
            for (slot, tuple) in page.tuples() {
                if self.rows_left == 0 {
                    break;
                }
                self.decoder.append(tuple, RowAddress { page: id, slot }.to_u64())?;
                self.rows_left -= 1;
            }
            self.next_page = page.next_page();
            if self.next_page == Some(PageId(id.0 + 1)) && self.rows_left > 0 {
                self.read_ahead(id.0 + 1);
            }
        }
        take_batch(&mut self.decoder, &self.schema)
    }

    /// Page `id`: from a read started ahead if there is one, reading
    /// directly (and dropping the guesses) otherwise.
    async fn page(&mut self, id: PageId) -> Result<Arc<Page>, SqlError> {
        while let Some((guess, handle)) = self.ahead.pop_front() {
            if guess == id {
                return handle.await.map_err(|e| SqlError::internal(format_args!("read-ahead: {e}")))?;
            }
            handle.abort();
        }
        self.snapshot.page(id).await
    }

    /// Keeps reads in flight for the pages after `from` (inclusive).
    fn read_ahead(&mut self, from: u64) {
        let start = self.ahead.back().map_or(from, |(last, _)| last.0 + 1).max(from);
        for next in start..from + READ_AHEAD_PAGES {
            match self.snapshot.read_ahead(PageId(next)) {
                Some(handle) => self.ahead.push_back((PageId(next), handle)),
                None => return,
            }
        }
    }
}

impl Drop for ScanCursor {
    fn drop(&mut self) {
        for (_, handle) in self.ahead.drain(..) {
            handle.abort();
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
        let mut page: Option<(PageId, Arc<Page>)> = None;
        while self.decoder.rows() < SCAN_BATCH_ROWS {
            let Some(address) = addresses.pop() else { break };
            if page.as_ref().is_none_or(|(id, _)| *id != address.page) {
                page = Some((address.page, self.snapshot.page(address.page).await?));
            }
            let (_, current) = page.as_ref().expect("set above");
            let tuple =
                current.tuple(address.slot).ok_or_else(|| SqlError::corrupt("index entry points to a free slot"))?;
            self.decoder.append(tuple, address.to_u64())?;
        }
        take_batch(&mut self.decoder, &self.schema)
    }
}
