//! The volume's meta page and the catalog, both stored in pages so that they
//! survive restarts and every reader sees them at its read point.
//!
//! Layout:
//! - page 0 (kind Meta), slot 0: the [`Meta`] tuple (magic, next free page,
//!   next table id, catalog version, first page of the catalog chain).
//! - page 1 (kind Heap) onwards: the catalog, a system table whose rows are
//!   bincode-encoded [`CatalogRow`]s: one per table, sequence, constraint,
//!   role or schema, and one per placement of a relation outside `public`.
//! - schemas (CREATE SCHEMA) are [`SchemaRow`]s, since format 6. A table or
//!   sequence is in `public` unless a [`SchemaRow::Placement`] puts it in
//!   another schema, so the rows of older formats keep their meaning; an
//!   index is in its table's schema. Every name is resolved to a relation by
//!   [`Catalog::find_table`] and its siblings, through the session's
//!   [`SearchPath`] when it is unqualified.
//! - views (CREATE VIEW) are [`ViewDef`] rows, since format 7, placed in
//!   schemas as tables are (see `crate::views`).
//! - a table that lost columns (ALTER TABLE DROP COLUMN) is stored as a
//!   [`CatalogRow::TableWithDroppedColumns`] (format 8), carrying the
//!   attnums of those columns so the others keep theirs; any other table
//!   stays a [`CatalogRow::Table`], which older formats read.
//! - CHECK and FOREIGN KEY constraints are catalog rows of their own
//!   ([`ConstraintDef`], naming their table by id), so that a volume of
//!   format 3, which has none, still decodes: its rows are a prefix of
//!   later formats' [`CatalogRow`] variants.
//! - each sequence has a page of its own (kind Heap) whose slot 0 holds its
//!   [`SequenceState`]. Only `crate::sequence` writes it after CREATE
//!   SEQUENCE, in commits of their own (nextval is not transactional), so no
//!   other transaction ever holds a private copy of that page.
//!
//! Every DDL bumps `catalog_version` in the same transaction as its catalog
//! row change. A statement reads the meta page at its read point and reloads
//! the catalog only when that version differs from the cached one, which is
//! how readers learn about DDL (see `Engine::catalog_at`).

use crate::error::{SqlError, sqlstate};
use crate::heap::{RowAddress, Snapshot, WriteSet};
use crate::types::SqlType;
use borealis_storage::ids::PageId;
use borealis_storage::page::{Page, PageKind};
use borealis_storage::redo::RedoBody;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The meta page.
pub const META_PAGE: PageId = PageId(0);
/// First page of the catalog chain on a freshly bootstrapped volume.
pub const CATALOG_FIRST_PAGE: PageId = PageId(1);
/// "BOREALIS" in little endian: tells a Borealis volume from garbage.
pub const META_MAGIC: u64 = u64::from_le_bytes(*b"BOREALIS");
/// Version of the meta, catalog and row formats; bumped on incompatible change.
/// 4 added constraint rows ([`CatalogRow::Constraint`]), 5 role rows
/// ([`CatalogRow::Role`]), 6 schema rows ([`CatalogRow::Schema`]), 7 view
/// rows ([`CatalogRow::View`]), 8 tables with dropped columns
/// ([`CatalogRow::TableWithDroppedColumns`]).
pub const FORMAT_VERSION: u32 = 8;
/// The oldest format this build reads. Older formats' rows are a prefix of
/// the newer ones' variants, so a volume of an older format decodes as is;
/// its first constraint, role, schema, view or dropped column raises its
/// meta to [`FORMAT_VERSION`], after which older builds refuse it instead
/// of failing on a row they cannot decode.
pub const FORMAT_VERSION_OLDEST: u32 = 3;

/// A table's identity, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableId(pub u64);

/// The meta tuple in slot 0 of page 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub magic: u64,
    pub format_version: u32,
    /// Pages at and above this id were never allocated.
    pub next_free_page: PageId,
    pub next_table_id: TableId,
    /// Bumped by every DDL; readers reload the catalog when it changes.
    pub catalog_version: u64,
    pub catalog_first_page: PageId,
}

impl Meta {
    /// The meta of a freshly bootstrapped volume.
    pub fn initial() -> Meta {
        Meta {
            magic: META_MAGIC,
            format_version: FORMAT_VERSION,
            next_free_page: PageId(CATALOG_FIRST_PAGE.0 + 1),
            next_table_id: TableId(1),
            catalog_version: 1,
            catalog_first_page: CATALOG_FIRST_PAGE,
        }
    }

    /// The encoded tuple.
    pub fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).expect("meta always serialises")
    }

    /// The meta of page 0, or None if the volume was never bootstrapped.
    pub fn from_page(page: &Page) -> Result<Option<Meta>, SqlError> {
        match page.kind() {
            PageKind::Empty => return Ok(None),
            PageKind::Meta => {}
            _ => return Err(SqlError::corrupt("page 0 is not a meta page")),
        }
        let tuple = page.tuple(0).ok_or_else(|| SqlError::corrupt("meta page has no meta tuple"))?;
        let meta: Meta = bincode::deserialize(tuple).map_err(|e| SqlError::corrupt(format_args!("meta: {e}")))?;
        if meta.magic != META_MAGIC {
            return Err(SqlError::corrupt(format_args!("meta magic {:#x} not understood", meta.magic)));
        }
        if !(FORMAT_VERSION_OLDEST..=FORMAT_VERSION).contains(&meta.format_version) {
            tracing::error!(
                volume_format = meta.format_version,
                oldest = FORMAT_VERSION_OLDEST,
                newest = FORMAT_VERSION,
                "the volume's format is not one this build reads"
            );
            return Err(SqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "volume format {} is not supported by this server (it reads formats {FORMAT_VERSION_OLDEST} to {FORMAT_VERSION})",
                    meta.format_version
                ),
            ));
        }
        Ok(Some(meta))
    }

    /// The redo that bootstraps an empty volume: meta page and empty catalog.
    pub fn bootstrap_bodies() -> Vec<RedoBody> {
        vec![
            RedoBody::InitPage { page: META_PAGE, kind: PageKind::Meta },
            RedoBody::InsertTuple { page: META_PAGE, slot: 0, data: Meta::initial().encode() },
            RedoBody::InitPage { page: CATALOG_FIRST_PAGE, kind: PageKind::Heap },
        ]
    }
}

/// A column of a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    /// Normalised name (lower case unless quoted at CREATE).
    pub name: String,
    pub ty: SqlType,
    /// False for NOT NULL and primary key columns.
    pub nullable: bool,
    /// The DEFAULT expression as SQL text (`now()`, `nextval('t_id_seq')`), if any.
    pub default: Option<String>,
    /// GENERATED ... AS IDENTITY (the default is then the sequence's nextval).
    pub identity: Option<Identity>,
}

impl ColumnDef {
    /// A column without default or identity.
    pub fn new(name: impl Into<String>, ty: SqlType, nullable: bool) -> ColumnDef {
        ColumnDef { name: name.into(), ty, nullable, default: None, identity: None }
    }
}

/// How an identity column takes explicit values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Identity {
    /// GENERATED ALWAYS: explicit values are refused (428C9).
    Always,
    /// GENERATED BY DEFAULT: explicit values are taken.
    ByDefault,
}

/// A sequence, as stored in one catalog row. Its current value lives on its
/// own page (`page`), see [`SequenceState`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceDef {
    /// From the same counter as table ids (so oids never collide).
    pub id: TableId,
    pub name: String,
    /// Int2, Int4 or Int8 (`AS type`; bounds the default MINVALUE/MAXVALUE).
    pub ty: SqlType,
    pub increment: i64,
    pub min_value: i64,
    pub max_value: i64,
    pub start: i64,
    pub cache: i64,
    /// The page holding the [`SequenceState`].
    pub page: PageId,
    /// Random at creation: tells this sequence from one that reuses its page
    /// id after the creating transaction rolled back (the engine keys the
    /// sequence's in-memory state by it).
    pub uid: u64,
    /// The table and column whose SERIAL or identity created it; dropped with the table.
    pub owned_by: Option<(TableId, String)>,
}

/// The persisted state of a sequence (slot 0 of its page): as PostgreSQL's
/// `last_value` and `is_called`. `last_value` is a high-water mark: every
/// value handed out is at or before it, so after a crash the sequence skips
/// values but never repeats one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceState {
    pub last_value: i64,
    pub is_called: bool,
}

impl SequenceState {
    /// The encoded tuple.
    pub fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).expect("sequence state always serialises")
    }

    /// Decodes slot 0 of a sequence's page.
    pub fn from_page(page: &Page) -> Result<SequenceState, SqlError> {
        let tuple = page.tuple(0).ok_or_else(|| SqlError::corrupt("sequence page has no state tuple"))?;
        bincode::deserialize(tuple).map_err(|e| SqlError::corrupt(format_args!("sequence state: {e}")))
    }
}

/// One row of the catalog. New variants go at the end: bincode encodes the
/// variant's position, and older volumes' rows must keep decoding.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum CatalogRow {
    Table(TableDef),
    Sequence(SequenceDef),
    /// Since format 4.
    Constraint(ConstraintDef),
    /// Since format 5.
    Role(RoleDef),
    /// Since format 6.
    Schema(SchemaRow),
    /// Since format 7.
    View(ViewDef),
    /// Since format 8: a table that lost columns, with the attnums they had
    /// (its `dropped_attnums`, which [`CatalogRow::Table`] leaves out), so
    /// that a table that never dropped one is still a row older builds read.
    TableWithDroppedColumns(TableDef, Vec<i16>),
}

/// A view (CREATE VIEW): a stored query, expanded into the queries that
/// name it (see `crate::views`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDef {
    /// From the same counter as table ids (so oids never collide).
    pub id: TableId,
    pub name: String,
    /// The query, its relation names qualified by schema at creation.
    pub query: String,
    /// The output columns: name and PostgreSQL type oid.
    pub columns: Vec<(String, i32)>,
    /// The tables and views the query reads (dropping one needs CASCADE).
    pub depends_on: Vec<TableId>,
}

/// A view of the catalog, with where its catalog row lives.
#[derive(Clone, Debug)]
pub struct ViewEntry {
    pub def: Arc<ViewDef>,
    pub address: RowAddress,
    /// The SQL schema the view is in.
    pub schema_name: String,
}

/// The schema that always exists, where relations go unless placed elsewhere.
pub const PUBLIC_SCHEMA: &str = "public";
/// Schemas that exist without a catalog row and take no user relations.
pub const RESERVED_SCHEMAS: [&str; 2] = ["pg_catalog", "information_schema"];

/// A schema row of the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchemaRow {
    /// CREATE SCHEMA.
    Schema(SchemaDef),
    /// Table or sequence `relation` is in schema `schema` (not `public`).
    Placement { relation: TableId, schema: TableId },
}

/// A schema created by CREATE SCHEMA (`public` is not stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaDef {
    /// From the same counter as table ids (so oids never collide).
    pub id: TableId,
    pub name: String,
}

/// A schema of the catalog, with where its catalog row lives.
#[derive(Clone, Debug)]
pub struct SchemaEntry {
    pub def: Arc<SchemaDef>,
    pub address: RowAddress,
}

/// A relation name as written: `name` or `schema.name`, normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QualifiedName {
    pub schema: Option<String>,
    pub name: String,
}

impl QualifiedName {
    /// An unqualified name.
    pub fn bare(name: impl Into<String>) -> QualifiedName {
        QualifiedName { schema: None, name: name.into() }
    }
}

/// As PostgreSQL names a relation in messages: `t` or `s.t`.
impl std::fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The schemas an unqualified name is looked up in, in order: the session's
/// search_path with `"$user"` expanded and schemas that do not exist left
/// out. `pg_catalog` is searched first by the callers that know its tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchPath {
    pub schemas: Vec<String>,
}

impl SearchPath {
    /// The path of the default search_path (`"$user", public`) for a user without a schema.
    pub fn public() -> SearchPath {
        SearchPath { schemas: vec![PUBLIC_SCHEMA.to_string()] }
    }
}

/// A CHECK or FOREIGN KEY constraint of a table. (Primary keys and unique
/// constraints are the table's unique indexes, see [`IndexDef`].)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConstraintDef {
    /// From the same counter as table ids (so its oid collides with nothing).
    pub id: TableId,
    /// Unique among the constraints of its table.
    pub name: String,
    /// The table it constrains (the referencing table of a foreign key).
    pub table: TableId,
    pub kind: ConstraintKind,
}

/// What a constraint requires of each row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConstraintKind {
    /// The expression (SQL text over the table's columns) is not false.
    Check { expression: String },
    /// Where none of `columns` is NULL, the referenced table has a row whose
    /// `referenced_columns` equal them (MATCH SIMPLE).
    ForeignKey(ForeignKey),
}

/// A FOREIGN KEY's columns, the key it references and its actions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKey {
    /// Indexes into the referencing table's columns.
    pub columns: Vec<usize>,
    pub referenced_table: TableId,
    /// Indexes into the referenced table's columns, pairwise with `columns`;
    /// a unique index of the referenced table has exactly these columns.
    pub referenced_columns: Vec<usize>,
    pub on_delete: ReferentialAction,
    pub on_update: ReferentialAction,
}

/// What happens to referencing rows when their referenced row goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReferentialAction {
    /// The statement fails if referencing rows remain at its end.
    NoAction,
    /// The statement fails if a referenced row with referencing rows goes.
    Restrict,
    /// The referencing rows are deleted too.
    Cascade,
    /// The referencing columns become NULL.
    SetNull,
}

impl ReferentialAction {
    /// The letter of pg_constraint.confdeltype / confupdtype.
    pub fn code(self) -> &'static str {
        match self {
            ReferentialAction::NoAction => "a",
            ReferentialAction::Restrict => "r",
            ReferentialAction::Cascade => "c",
            ReferentialAction::SetNull => "n",
        }
    }

    /// The SQL words (`ON DELETE CASCADE`); None for the default NO ACTION.
    pub fn sql(self) -> Option<&'static str> {
        match self {
            ReferentialAction::NoAction => None,
            ReferentialAction::Restrict => Some("RESTRICT"),
            ReferentialAction::Cascade => Some("CASCADE"),
            ReferentialAction::SetNull => Some("SET NULL"),
        }
    }
}

/// A constraint of the catalog, with where its catalog row lives.
#[derive(Clone, Debug)]
pub struct ConstraintEntry {
    pub def: Arc<ConstraintDef>,
    pub address: RowAddress,
}

/// A role (CREATE ROLE, CREATE USER), as stored in one catalog row. The
/// bootstrap superuser `postgres` is not stored: it always exists and its
/// password is the cluster file's.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleDef {
    /// From the same counter as table ids (so oids never collide).
    pub id: TableId,
    pub name: String,
    pub superuser: bool,
    /// May connect (LOGIN); CREATE USER defaults to true, CREATE ROLE to false.
    pub login: bool,
    /// The SCRAM-SHA-256 verifier in PostgreSQL's text form
    /// (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`), never
    /// the password itself. None: no password, so no password login.
    pub password: Option<String>,
}

/// Keeps the verifier out of logs and panic messages.
impl std::fmt::Debug for RoleDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleDef")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("superuser", &self.superuser)
            .field("login", &self.login)
            .field("password", &self.password.as_ref().map(|_| "<verifier>"))
            .finish()
    }
}

impl RoleDef {
    fn encode(&self) -> Vec<u8> {
        bincode::serialize(&CatalogRow::Role(self.clone())).expect("role definitions always serialise")
    }
}

/// A table, as stored in one catalog row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    pub id: TableId,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Indexes into `columns`; empty if the table has no primary key.
    pub primary_key: Vec<usize>,
    /// The table's B+tree indexes (the primary key's first, if any).
    pub indexes: Vec<IndexDef>,
    /// First page of the table's heap chain.
    pub first_page: PageId,
    /// The attnums of the columns DROP COLUMN removed, ascending: PostgreSQL
    /// never reuses a column's number, so pg_attribute, pg_index.indkey and
    /// pg_constraint.conkey keep naming the same columns. Stored only by
    /// [`CatalogRow::TableWithDroppedColumns`].
    #[serde(skip)]
    pub dropped_attnums: Vec<i16>,
}

impl TableDef {
    /// The Arrow schema of the table's columns.
    pub fn arrow_schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self.columns.iter().map(|c| c.ty.arrow_field(&c.name, c.nullable)).collect();
        Arc::new(Schema::new(fields))
    }

    /// The column types in order.
    pub fn types(&self) -> Vec<SqlType> {
        self.columns.iter().map(|c| c.ty).collect()
    }

    /// The index of column `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// PostgreSQL's attnum of the column at `position`: its place among
    /// the columns counting the dropped ones, from 1.
    pub fn attnum(&self, position: usize) -> i16 {
        let mut attnum = i16::try_from(position + 1).expect("at most COLUMNS_MAX columns");
        for &dropped in &self.dropped_attnums {
            if dropped <= attnum {
                attnum += 1;
            }
        }
        attnum
    }

    /// The catalog row: the format-8 kind only if a column was dropped.
    fn encode(&self) -> Vec<u8> {
        let row = match self.dropped_attnums.is_empty() {
            true => CatalogRow::Table(self.clone()),
            false => CatalogRow::TableWithDroppedColumns(self.clone(), self.dropped_attnums.clone()),
        };
        bincode::serialize(&row).expect("table definitions always serialise")
    }
}

/// A B+tree index of a table (see `crate::btree`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDef {
    /// Unique among the volume's tables and indexes.
    pub name: String,
    /// Indexes into the table's `columns`, in key order.
    pub columns: Vec<usize>,
    pub unique: bool,
    /// The index of the table's primary key (dropped only with the table).
    pub primary: bool,
    /// The root page, fixed for the index's life.
    pub root: PageId,
}

/// A table of the catalog, with where its catalog row lives.
#[derive(Clone, Debug)]
pub struct CatalogEntry {
    pub def: Arc<TableDef>,
    pub schema: SchemaRef,
    pub address: RowAddress,
    /// The SQL schema the table is in.
    pub schema_name: String,
}

impl CatalogEntry {
    /// The table's name as PostgreSQL shows it outside `public` (`s.t`).
    pub fn display_name(&self) -> String {
        display_name(&self.schema_name, &self.def.name)
    }
}

/// `name`, qualified by `schema` unless that is `public`.
pub fn display_name(schema: &str, name: &str) -> String {
    if schema == PUBLIC_SCHEMA { name.to_string() } else { format!("{schema}.{name}") }
}

/// A sequence of the catalog, with where its catalog row lives.
#[derive(Clone, Debug)]
pub struct SequenceEntry {
    pub def: Arc<SequenceDef>,
    pub address: RowAddress,
    /// The SQL schema the sequence is in.
    pub schema_name: String,
}

/// A role of the catalog, with where its catalog row lives.
#[derive(Clone, Debug)]
pub struct RoleEntry {
    pub def: Arc<RoleDef>,
    pub address: RowAddress,
}

/// All schemas, tables, sequences and roles at one catalog version.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// The meta's catalog version this was loaded at (0 = volume not bootstrapped).
    pub version: u64,
    /// Keyed by (schema, name).
    tables: BTreeMap<(String, String), CatalogEntry>,
    /// Keyed by (schema, name).
    sequences: BTreeMap<(String, String), SequenceEntry>,
    /// In catalog row order (creation order, as PostgreSQL lists them by oid).
    constraints: Vec<ConstraintEntry>,
    roles: BTreeMap<String, RoleEntry>,
    /// Stored schemas (not `public`) by name.
    schemas: BTreeMap<String, SchemaEntry>,
    /// Where each placement row of a relation outside `public` lives.
    placements: BTreeMap<TableId, RowAddress>,
    /// Keyed by (schema, name).
    views: BTreeMap<(String, String), ViewEntry>,
}

impl Catalog {
    /// Loads the catalog as `snapshot` sees it.
    pub async fn load(snapshot: &Snapshot) -> Result<Catalog, SqlError> {
        let Some(meta) = Meta::from_page(&*snapshot.page(META_PAGE).await?)? else {
            return Ok(Catalog::default());
        };
        let mut table_rows = Vec::new();
        let mut sequence_rows = Vec::new();
        let mut constraints = Vec::new();
        let mut roles = BTreeMap::new();
        let mut schema_rows = Vec::new();
        let mut placement_rows = Vec::new();
        let mut view_rows = Vec::new();
        snapshot
            .for_each_tuple(meta.catalog_first_page, |address, tuple| {
                let row: CatalogRow =
                    bincode::deserialize(tuple).map_err(|e| SqlError::corrupt(format_args!("catalog row: {e}")))?;
                match row {
                    CatalogRow::Table(def) => table_rows.push((def, address)),
                    CatalogRow::TableWithDroppedColumns(mut def, dropped_attnums) => {
                        def.dropped_attnums = dropped_attnums;
                        table_rows.push((def, address));
                    }
                    CatalogRow::Sequence(def) => sequence_rows.push((def, address)),
                    CatalogRow::Constraint(def) => constraints.push(ConstraintEntry { def: Arc::new(def), address }),
                    CatalogRow::Role(def) => {
                        roles.insert(def.name.clone(), RoleEntry { def: Arc::new(def), address });
                    }
                    CatalogRow::Schema(SchemaRow::Schema(def)) => schema_rows.push((def, address)),
                    CatalogRow::Schema(SchemaRow::Placement { relation, schema }) => {
                        placement_rows.push((relation, schema, address));
                    }
                    CatalogRow::View(def) => view_rows.push((def, address)),
                }
                Ok(())
            })
            .await?;
        constraints.sort_by_key(|c: &ConstraintEntry| c.def.id);
        let schema_names: BTreeMap<TableId, String> =
            schema_rows.iter().map(|(def, _)| (def.id, def.name.clone())).collect();
        let mut placed: BTreeMap<TableId, String> = BTreeMap::new();
        let mut placements = BTreeMap::new();
        for (relation, schema, address) in placement_rows {
            let name = schema_names
                .get(&schema)
                .ok_or_else(|| SqlError::corrupt(format_args!("relation {relation:?} placed in missing schema")))?;
            placed.insert(relation, name.clone());
            placements.insert(relation, address);
        }
        let schema_of = |id: TableId| placed.get(&id).cloned().unwrap_or_else(|| PUBLIC_SCHEMA.to_string());
        let mut tables = BTreeMap::new();
        for (def, address) in table_rows {
            let schema_name = schema_of(def.id);
            let key = (schema_name.clone(), def.name.clone());
            tables.insert(key, CatalogEntry { schema: def.arrow_schema(), def: Arc::new(def), address, schema_name });
        }
        let mut sequences = BTreeMap::new();
        for (def, address) in sequence_rows {
            let schema_name = schema_of(def.id);
            let key = (schema_name.clone(), def.name.clone());
            sequences.insert(key, SequenceEntry { def: Arc::new(def), address, schema_name });
        }
        let mut views = BTreeMap::new();
        for (def, address) in view_rows {
            let schema_name = schema_of(def.id);
            let key = (schema_name.clone(), def.name.clone());
            views.insert(key, ViewEntry { def: Arc::new(def), address, schema_name });
        }
        let schemas = schema_rows
            .into_iter()
            .map(|(def, address)| (def.name.clone(), SchemaEntry { def: Arc::new(def), address }))
            .collect();
        Ok(Catalog { version: meta.catalog_version, tables, sequences, constraints, roles, schemas, placements, views })
    }

    /// Every CHECK and FOREIGN KEY constraint, oldest first.
    pub fn constraints(&self) -> impl Iterator<Item = &ConstraintEntry> {
        self.constraints.iter()
    }

    /// The CHECK and FOREIGN KEY constraints of table `id`, oldest first.
    pub fn constraints_of(&self, id: TableId) -> impl Iterator<Item = &ConstraintEntry> {
        self.constraints.iter().filter(move |c| c.def.table == id)
    }

    /// The foreign keys that reference table `id`, with their constraint.
    pub fn referencing(&self, id: TableId) -> impl Iterator<Item = (&ConstraintEntry, &ForeignKey)> {
        self.constraints.iter().filter_map(move |c| match &c.def.kind {
            ConstraintKind::ForeignKey(key) if key.referenced_table == id => Some((c, key)),
            _ => None,
        })
    }

    /// The table with id `id`.
    pub fn table_by_id(&self, id: TableId) -> Option<&CatalogEntry> {
        self.tables.values().find(|entry| entry.def.id == id)
    }

    /// The constraint whose id is `id`.
    pub fn constraint(&self, id: TableId) -> Option<&ConstraintEntry> {
        self.constraints.iter().find(|c| c.def.id == id)
    }

    /// The stored role called `name` (the bootstrap superuser is not stored).
    pub fn role(&self, name: &str) -> Option<&RoleEntry> {
        self.roles.get(name)
    }

    /// Stored roles in name order.
    pub fn roles(&self) -> impl Iterator<Item = &RoleEntry> {
        self.roles.values()
    }

    /// The stored schema called `name` (`public` and the reserved ones are not stored).
    pub fn schema(&self, name: &str) -> Option<&SchemaEntry> {
        self.schemas.get(name)
    }

    /// Stored schemas in name order.
    pub fn schemas(&self) -> impl Iterator<Item = &SchemaEntry> {
        self.schemas.values()
    }

    /// Whether schema `name` exists: `public`, a reserved one or a stored one.
    pub fn schema_exists(&self, name: &str) -> bool {
        name == PUBLIC_SCHEMA || RESERVED_SCHEMAS.contains(&name) || self.schemas.contains_key(name)
    }

    /// Whether schema `name` can hold user relations (`public` or a stored one).
    fn holds_relations(&self, name: &str) -> bool {
        name == PUBLIC_SCHEMA || self.schemas.contains_key(name)
    }

    /// The sequence called `name` in `schema`.
    pub fn sequence(&self, schema: &str, name: &str) -> Option<&SequenceEntry> {
        self.sequences.get(&(schema.to_string(), name.to_string()))
    }

    /// Sequences in (schema, name) order.
    pub fn sequences(&self) -> impl Iterator<Item = &SequenceEntry> {
        self.sequences.values()
    }

    /// The table called `name` in `schema`.
    pub fn get(&self, schema: &str, name: &str) -> Option<&CatalogEntry> {
        self.tables.get(&(schema.to_string(), name.to_string()))
    }

    /// Tables in (schema, name) order.
    pub fn tables(&self) -> impl Iterator<Item = &CatalogEntry> {
        self.tables.values()
    }

    /// The table owning the index called `name` in `schema`, and the index.
    pub fn index(&self, schema: &str, name: &str) -> Option<(&CatalogEntry, &IndexDef)> {
        self.tables
            .values()
            .filter(|entry| entry.schema_name == schema)
            .find_map(|entry| entry.def.indexes.iter().find(|i| i.name == name).map(|i| (entry, i)))
    }

    /// Whether `name` is taken in `schema` by a table, a view, a sequence or
    /// an index (one namespace per schema, as in PostgreSQL).
    pub fn relation_exists(&self, schema: &str, name: &str) -> bool {
        self.get(schema, name).is_some()
            || self.view(schema, name).is_some()
            || self.sequence(schema, name).is_some()
            || self.index(schema, name).is_some()
    }

    /// The view called `name` in `schema`.
    pub fn view(&self, schema: &str, name: &str) -> Option<&ViewEntry> {
        self.views.get(&(schema.to_string(), name.to_string()))
    }

    /// Views in (schema, name) order.
    pub fn views(&self) -> impl Iterator<Item = &ViewEntry> {
        self.views.values()
    }

    /// The view `name` resolves to through `path` (a table of the same name
    /// earlier in the path hides it).
    pub fn find_view(&self, path: &SearchPath, name: &QualifiedName) -> Option<&ViewEntry> {
        self.candidates(path, name).into_iter().find_map(|schema| match self.view(schema, &name.name) {
            Some(view) => Some(Some(view)),
            None if self.get(schema, &name.name).is_some() => Some(None),
            None => None,
        })?
    }

    /// The views whose query reads relation `id`.
    pub fn views_reading(&self, id: TableId) -> impl Iterator<Item = &ViewEntry> {
        self.views.values().filter(move |view| view.def.depends_on.contains(&id))
    }

    /// The schemas `name` is looked up in: its own, or those of `path`.
    fn candidates<'a>(&self, path: &'a SearchPath, name: &'a QualifiedName) -> Vec<&'a str> {
        match &name.schema {
            Some(schema) => vec![schema.as_str()],
            None => path.schemas.iter().map(String::as_str).collect(),
        }
    }

    /// The table `name` resolves to through `path`: the one in its schema
    /// if qualified, else the first schema of `path` that has it. This and
    /// its siblings are the one place names are resolved to relations.
    pub fn find_table(&self, path: &SearchPath, name: &QualifiedName) -> Option<&CatalogEntry> {
        self.candidates(path, name).into_iter().find_map(|schema| self.get(schema, &name.name))
    }

    /// As [`Catalog::find_table`], 42P01 if there is none.
    pub fn resolve_table(&self, path: &SearchPath, name: &QualifiedName) -> Result<&CatalogEntry, SqlError> {
        self.find_table(path, name).ok_or_else(|| SqlError::undefined_table(&name.to_string()))
    }

    /// The sequence `name` resolves to through `path`.
    pub fn find_sequence(&self, path: &SearchPath, name: &QualifiedName) -> Option<&SequenceEntry> {
        self.candidates(path, name).into_iter().find_map(|schema| self.sequence(schema, &name.name))
    }

    /// The index `name` resolves to through `path`, with its table.
    pub fn find_index(&self, path: &SearchPath, name: &QualifiedName) -> Option<(&CatalogEntry, &IndexDef)> {
        self.candidates(path, name).into_iter().find_map(|schema| self.index(schema, &name.name))
    }

    /// Whether `name` resolves through `path` to any relation.
    pub fn find_relation(&self, path: &SearchPath, name: &QualifiedName) -> Option<String> {
        self.candidates(path, name)
            .into_iter()
            .find(|schema| self.relation_exists(schema, &name.name))
            .map(str::to_string)
    }

    /// 3F000 if `name` is qualified by a schema that does not exist (DROP
    /// and ALTER report that before a missing relation, as PostgreSQL does).
    pub fn check_schema(&self, name: &QualifiedName) -> Result<(), SqlError> {
        match &name.schema {
            Some(schema) if !self.schema_exists(schema) => Err(SqlError::undefined_schema(schema)),
            _ => Ok(()),
        }
    }

    /// The schema a new relation called `name` goes to: its own, or the
    /// first of `path` (3F000 if that does not exist or `path` is empty).
    pub fn creation_schema(&self, path: &SearchPath, name: &QualifiedName) -> Result<String, SqlError> {
        let schema = match &name.schema {
            Some(schema) => schema.clone(),
            None => path.schemas.first().cloned().ok_or_else(|| {
                SqlError::new(sqlstate::INVALID_SCHEMA_NAME, "no schema has been selected to create in")
            })?,
        };
        if RESERVED_SCHEMAS.contains(&schema.as_str()) {
            return Err(SqlError::new(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!("permission denied to create \"{schema}.{}\"", name.name),
            ));
        }
        if !self.holds_relations(&schema) {
            return Err(SqlError::undefined_schema(&schema));
        }
        Ok(schema)
    }

    /// Views in schema `name`.
    pub fn views_in(&self, name: &str) -> Vec<&ViewEntry> {
        self.views.values().filter(|e| e.schema_name == name).collect()
    }

    /// Tables and sequences in schema `name`.
    pub fn relations_in(&self, name: &str) -> (Vec<&CatalogEntry>, Vec<&SequenceEntry>) {
        (
            self.tables.values().filter(|e| e.schema_name == name).collect(),
            self.sequences.values().filter(|e| e.schema_name == name).collect(),
        )
    }
}

/// Creates a table in `writes`: allocates its first page and its indexes'
/// roots, stores its catalog row and bumps the catalog version. `def.id`,
/// `def.first_page` and the indexes' roots are assigned here; returns the id.
pub async fn create_table(
    writes: &mut WriteSet,
    catalog: &Catalog,
    schema: &str,
    mut def: TableDef,
) -> Result<TableId, SqlError> {
    for name in std::iter::once(&def.name).chain(def.indexes.iter().map(|i| &i.name)) {
        if catalog.relation_exists(schema, name) {
            return Err(relation_exists(name));
        }
    }
    def.first_page = writes.allocate_page(PageKind::Heap).await?;
    for index in &mut def.indexes {
        index.root = crate::btree::create(writes).await?;
    }
    writes.new_chain(def.first_page);
    let mut meta = writes.meta().await?;
    def.id = meta.next_table_id;
    meta.next_table_id = TableId(def.id.0 + 1);
    meta.catalog_version += 1;
    writes.set_meta(&meta).await?;
    writes.insert(meta.catalog_first_page, def.encode()).await?;
    place(writes, catalog, schema, def.id).await?;
    Ok(def.id)
}

/// Stores that relation `relation` is in `schema`, unless that is `public`.
async fn place(writes: &mut WriteSet, catalog: &Catalog, schema: &str, relation: TableId) -> Result<(), SqlError> {
    if schema == PUBLIC_SCHEMA {
        return Ok(());
    }
    let entry = catalog.schema(schema).ok_or_else(|| SqlError::undefined_schema(schema))?;
    let row = CatalogRow::Schema(SchemaRow::Placement { relation, schema: entry.def.id });
    let meta = writes.meta().await?;
    writes.insert(meta.catalog_first_page, bincode::serialize(&row).expect("schema rows always serialise")).await?;
    Ok(())
}

/// Removes the placement row of `relation`, if it has one.
async fn unplace(writes: &mut WriteSet, catalog: &Catalog, relation: TableId) -> Result<(), SqlError> {
    if let Some(address) = catalog.placements.get(&relation) {
        delete_row(writes, *address).await?;
    }
    Ok(())
}

/// Creates a schema (see [`insert_new_row`]; schema rows are new in
/// format 6). The caller checks the name.
pub async fn create_schema(writes: &mut WriteSet, name: &str) -> Result<(), SqlError> {
    let name = name.to_string();
    insert_new_row(writes, |id| CatalogRow::Schema(SchemaRow::Schema(SchemaDef { id, name }))).await?;
    Ok(())
}

/// Frees the catalog row at `address`.
async fn delete_row(writes: &mut WriteSet, address: RowAddress) -> Result<(), SqlError> {
    let first = writes.meta().await?.catalog_first_page;
    writes.delete(first, address).await
}

/// Drops a schema's row (its relations are dropped by the caller first).
pub async fn drop_schema(writes: &mut WriteSet, entry: &SchemaEntry) -> Result<(), SqlError> {
    delete_row(writes, entry.address).await?;
    bump_version(writes).await
}

/// Creates a sequence in `writes`: allocates its page with its initial
/// state, stores its catalog row and bumps the catalog version. `def.id`,
/// `def.page` and `def.uid` are assigned here. `last_value` is the value
/// already handed out, if any (ADD COLUMN of a SERIAL numbers the stored
/// rows as it creates the sequence).
pub async fn create_sequence(
    writes: &mut WriteSet,
    catalog: &Catalog,
    schema: &str,
    mut def: SequenceDef,
    last_value: Option<i64>,
) -> Result<(), SqlError> {
    if catalog.relation_exists(schema, &def.name) {
        return Err(relation_exists(&def.name));
    }
    def.page = writes.allocate_page(PageKind::Heap).await?;
    let state = match last_value {
        Some(last_value) => SequenceState { last_value, is_called: true },
        None => SequenceState { last_value: def.start, is_called: false },
    };
    writes.apply(RedoBody::InsertTuple { page: def.page, slot: 0, data: state.encode() }).await?;
    def.uid = unique_id();
    let mut meta = writes.meta().await?;
    def.id = meta.next_table_id;
    meta.next_table_id = TableId(def.id.0 + 1);
    meta.catalog_version += 1;
    writes.set_meta(&meta).await?;
    let id = def.id;
    let row = bincode::serialize(&CatalogRow::Sequence(def)).expect("sequence definitions always serialise");
    writes.insert(meta.catalog_first_page, row).await?;
    place(writes, catalog, schema, id).await
}

/// A number no other sequence of this volume has (random per process, then counted).
fn unique_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    RandomState::new().hash_one((count, nanos))
}

/// Creates a role in `writes` (see [`insert_new_row`]; role rows are new in
/// format 5). `def.id` is assigned here. The caller checks the name.
pub async fn create_role(writes: &mut WriteSet, def: RoleDef) -> Result<(), SqlError> {
    insert_new_row(writes, |id| CatalogRow::Role(RoleDef { id, ..def })).await?;
    Ok(())
}

/// Stores a new catalog row whose id is taken from the table id counter,
/// bumps the catalog version and raises the volume's format to
/// [`FORMAT_VERSION`] (the row's kind may be new in it). Returns the id.
async fn insert_new_row(writes: &mut WriteSet, row: impl FnOnce(TableId) -> CatalogRow) -> Result<TableId, SqlError> {
    let mut meta = writes.meta().await?;
    let id = meta.next_table_id;
    meta.next_table_id = TableId(id.0 + 1);
    meta.catalog_version += 1;
    meta.format_version = FORMAT_VERSION;
    writes.set_meta(&meta).await?;
    let row = bincode::serialize(&row(id)).expect("catalog rows always serialise");
    writes.insert(meta.catalog_first_page, row).await?;
    Ok(id)
}

/// Replaces a role's catalog row (ALTER ROLE) and bumps the catalog version.
pub async fn update_role(writes: &mut WriteSet, entry: &RoleEntry, def: &RoleDef) -> Result<(), SqlError> {
    let meta = writes.meta().await?;
    writes.update(meta.catalog_first_page, entry.address, def.encode()).await?;
    bump_version(writes).await
}

/// Drops a role: removes its catalog row and bumps the catalog version.
pub async fn drop_role(writes: &mut WriteSet, entry: &RoleEntry) -> Result<(), SqlError> {
    delete_row(writes, entry.address).await?;
    bump_version(writes).await
}

/// Creates a view in `schema` (see [`insert_new_row`]; view rows are new in
/// format 7), or replaces the row of `replacing`. `def.id` is assigned here
/// for a new view. The caller checks the name.
pub async fn create_view(
    writes: &mut WriteSet,
    catalog: &Catalog,
    schema: &str,
    def: ViewDef,
    replacing: Option<&ViewEntry>,
) -> Result<(), SqlError> {
    if let Some(old) = replacing {
        let row = CatalogRow::View(ViewDef { id: old.def.id, ..def });
        let meta = writes.meta().await?;
        let data = bincode::serialize(&row).expect("view rows always serialise");
        writes.update(meta.catalog_first_page, old.address, data).await?;
        return bump_version(writes).await;
    }
    let id = insert_new_row(writes, |id| CatalogRow::View(ViewDef { id, ..def })).await?;
    place(writes, catalog, schema, id).await
}

/// Drops a view: removes its catalog row and bumps the catalog version.
pub async fn drop_view(writes: &mut WriteSet, catalog: &Catalog, entry: &ViewEntry) -> Result<(), SqlError> {
    delete_row(writes, entry.address).await?;
    unplace(writes, catalog, entry.def.id).await?;
    bump_version(writes).await
}

/// Drops a sequence: removes its catalog row and bumps the catalog version.
pub async fn drop_sequence(writes: &mut WriteSet, catalog: &Catalog, entry: &SequenceEntry) -> Result<(), SqlError> {
    delete_row(writes, entry.address).await?;
    unplace(writes, catalog, entry.def.id).await?;
    bump_version(writes).await
}

/// 42P07 for a name already taken by a table or an index.
pub fn relation_exists(name: &str) -> SqlError {
    SqlError::new(sqlstate::DUPLICATE_TABLE, format!("relation \"{name}\" already exists"))
}

/// Replaces a table's catalog row (its columns, indexes or name changed) and bumps the catalog version.
/// A table that lost a column raises the volume's format to [`FORMAT_VERSION`]
/// (its row is of a kind new in format 8).
pub async fn update_table(writes: &mut WriteSet, entry: &CatalogEntry, def: &TableDef) -> Result<(), SqlError> {
    let first = writes.meta().await?.catalog_first_page;
    writes.update(first, entry.address, def.encode()).await?;
    // Read after the update, which may have taken a page.
    let mut meta = writes.meta().await?;
    meta.catalog_version += 1;
    if !def.dropped_attnums.is_empty() {
        meta.format_version = FORMAT_VERSION;
    }
    writes.set_meta(&meta).await
}

async fn bump_version(writes: &mut WriteSet) -> Result<(), SqlError> {
    let mut meta = writes.meta().await?;
    meta.catalog_version += 1;
    writes.set_meta(&meta).await
}

/// Adds a constraint (see [`insert_new_row`]; constraint rows are new in
/// format 4) and returns the id it was given.
pub async fn create_constraint(writes: &mut WriteSet, def: ConstraintDef) -> Result<TableId, SqlError> {
    insert_new_row(writes, |id| CatalogRow::Constraint(ConstraintDef { id, ..def })).await
}

/// Replaces a constraint's catalog row (a column it names was renamed) and bumps the catalog version.
pub async fn update_constraint(
    writes: &mut WriteSet,
    entry: &ConstraintEntry,
    def: &ConstraintDef,
) -> Result<(), SqlError> {
    let meta = writes.meta().await?;
    let row = bincode::serialize(&CatalogRow::Constraint(def.clone())).expect("constraints always serialise");
    writes.update(meta.catalog_first_page, entry.address, row).await?;
    bump_version(writes).await
}

/// Replaces a sequence's catalog row (the column owning it was renamed) and bumps the catalog version.
pub async fn update_sequence(writes: &mut WriteSet, entry: &SequenceEntry, def: &SequenceDef) -> Result<(), SqlError> {
    let meta = writes.meta().await?;
    let row = bincode::serialize(&CatalogRow::Sequence(def.clone())).expect("sequence definitions always serialise");
    writes.update(meta.catalog_first_page, entry.address, row).await?;
    bump_version(writes).await
}

/// Drops a constraint: removes its catalog row and bumps the catalog version.
pub async fn drop_constraint(writes: &mut WriteSet, entry: &ConstraintEntry) -> Result<(), SqlError> {
    delete_row(writes, entry.address).await?;
    bump_version(writes).await
}

/// Drops a table: removes its catalog row and bumps the catalog version.
/// Its pages are not reclaimed: they stay out of every chain (page ids are
/// never reused), and VACUUM drops the chain from the free space map.
pub async fn drop_table(writes: &mut WriteSet, catalog: &Catalog, entry: &CatalogEntry) -> Result<(), SqlError> {
    delete_row(writes, entry.address).await?;
    unplace(writes, catalog, entry.def.id).await?;
    bump_version(writes).await
}
