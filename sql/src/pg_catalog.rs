//! The `pg_catalog` schema: PostgreSQL's system catalogs, computed from the
//! Borealis [`Catalog`] so that clients (psql's `\d` family, drivers, ORMs)
//! can introspect the database with the queries they send to PostgreSQL.
//!
//! How a read passes through: a statement naming `pg_catalog.pg_class` (or
//! plain `pg_class`, see [`crate::provider::TablesSchema`]) asks
//! [`PgCatalogSchema`] for the table; it takes the catalog the statement sees
//! from the session's [`CatalogView`], builds every system table as Arrow
//! batches once for that catalog, and hands out in-memory tables. The next
//! statement that sees the same catalog (same version, same loaded `Arc`)
//! reuses them; DDL changes the version and so causes one rebuild. Nothing
//! here is stored: the catalogs are a view of the stored [`TableDef`]s.
//!
//! OIDs are a pure function of the stored catalog, so a writer and its
//! readers, and a restarted instance, agree on them:
//! - tables: `FIRST_NORMAL_OID + table_id * OIDS_PER_TABLE`;
//! - the n-th index of a table (n from 0, in `TableDef::indexes` order):
//!   table oid + 1 + n;
//! - the constraint of the n-th index (primary key or unique constraint):
//!   table oid + `OIDS_PER_TABLE / 2` + n;
//! - sequences, and CHECK and FOREIGN KEY constraints: as tables (their ids
//!   come from the same counter);
//! - the default of column n (from 1): `ATTRDEF_FIRST_OID + table_id *
//!   COLUMNS_MAX + n`;
//! - namespaces, roles, the database, access methods, types and the system
//!   tables themselves use PostgreSQL's fixed OIDs (`pg_class` is 1259,
//!   `int4` is 23, `public` is 2200, `postgres` role 10, ...).
//!
//! An index's oid moves down when an earlier index of its table is dropped;
//! PostgreSQL never renumbers. No client keeps oids across DDL, so this is
//! allowed for now; a stored index id would remove it.
//!
//! CHECK and FOREIGN KEY constraints are pg_constraint rows (contype 'c' and
//! 'f') and count in their tables' relchecks and relhastriggers, as psql's
//! `\d` expects; information_schema's constraint views are built here too.
//!
//! Rows Borealis has no objects for (policies, publications, inheritance,
//! triggers, extended statistics, comments) are empty tables with
//! PostgreSQL's columns, so queries that join them plan and return nothing.

use crate::catalog::{
    Catalog, ColumnDef, ConstraintDef, ConstraintKind, IndexDef, QualifiedName, RoleDef, SchemaDef, SearchPath,
    TableDef, ViewDef,
};
use crate::error::SqlError;
use crate::functions::DATABASE_NAME;
use crate::provider::CatalogView;
use crate::types::SqlType;
use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Int16Builder, Int32Builder, Int64Builder, ListBuilder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result as DfResult;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The schema's name.
pub const SCHEMA: &str = "pg_catalog";
/// PostgreSQL's first OID for user objects; ours start above it too.
pub const FIRST_NORMAL_OID: i64 = 16384;
/// OIDs reserved per table: the table, its indexes (first half), their
/// constraints (second half). 1024 leaves room for ~2 million tables below
/// 2^31, where PostgreSQL's unsigned OIDs stay readable as signed int4.
pub const OIDS_PER_TABLE: i64 = 1024;
/// Most indexes per table that get distinct oids (the rest of each half).
pub const INDEXES_PER_TABLE_MAX: usize = (OIDS_PER_TABLE / 2 - 1) as usize;

/// Namespace oids (PostgreSQL's, except information_schema whose oid PostgreSQL assigns at initdb).
pub const PG_CATALOG_NAMESPACE: i32 = 11;
pub const PG_TOAST_NAMESPACE: i32 = 99;
pub const PUBLIC_NAMESPACE: i32 = 2200;
pub const INFORMATION_SCHEMA_NAMESPACE: i32 = 13000;
/// The superuser role (`postgres`, PostgreSQL's BOOTSTRAP_SUPERUSERID).
pub const SUPERUSER_OID: i32 = 10;
/// The `pg_database_owner` role, owner of `public` since PostgreSQL 15.
pub const DATABASE_OWNER_OID: i32 = 6171;
/// The one database (PostgreSQL's `postgres` database is 5 after initdb).
pub const DATABASE_OID: i32 = 5;
/// Access methods.
pub const HEAP_AM: i32 = 2;
pub const BTREE_AM: i32 = 403;
/// The default collation, which text columns carry.
pub const DEFAULT_COLLATION: i32 = 100;
/// PostgreSQL's encoding number for UTF8.
pub const UTF8_ENCODING: i32 = 6;

/// The oid of the table with `id`.
pub fn table_oid(def: &TableDef) -> i32 {
    clamp_oid(FIRST_NORMAL_OID + def.id.0 as i64 * OIDS_PER_TABLE)
}

/// The oid of the `position`-th index of `def`.
pub fn index_oid(def: &TableDef, position: usize) -> i32 {
    clamp_oid(table_oid(def) as i64 + 1 + position.min(INDEXES_PER_TABLE_MAX - 1) as i64)
}

/// The oid of the constraint backed by the `position`-th index of `def`.
pub fn constraint_oid(def: &TableDef, position: usize) -> i32 {
    clamp_oid(table_oid(def) as i64 + OIDS_PER_TABLE / 2 + position.min(INDEXES_PER_TABLE_MAX - 1) as i64)
}

/// Table ids beyond the oid range get oid 0 (InvalidOid) rather than wrapping into another table's.
fn clamp_oid(oid: i64) -> i32 {
    i32::try_from(oid).unwrap_or(0)
}

/// What a user relation oid names.
#[derive(Debug)]
pub enum Relation<'a> {
    Table(&'a TableDef),
    Index(&'a TableDef, usize),
    /// A system table or view of this schema.
    System(&'static SystemTable),
}

/// The relation with `oid`, if any.
pub fn relation_by_oid(catalog: &Catalog, oid: i64) -> Option<Relation<'_>> {
    if let Some(system) = SYSTEM_TABLES.iter().find(|t| i64::from(t.oid) == oid) {
        return Some(Relation::System(system));
    }
    if oid < FIRST_NORMAL_OID {
        return None;
    }
    let table_id = (oid - FIRST_NORMAL_OID) / OIDS_PER_TABLE;
    let offset = (oid - FIRST_NORMAL_OID) % OIDS_PER_TABLE;
    let def = tables(catalog).find(|def| def.id.0 as i64 == table_id)?;
    match offset {
        0 => Some(Relation::Table(def)),
        n if n <= INDEXES_PER_TABLE_MAX as i64 && (n as usize) <= def.indexes.len() => {
            Some(Relation::Index(def, n as usize - 1))
        }
        _ => None,
    }
}

/// The oid of the relation `name` resolves to through `path`: system
/// tables first (for unqualified names and `pg_catalog.x`), then tables,
/// indexes and sequences.
pub fn relation_oid_by_name(catalog: &Catalog, path: &SearchPath, name: &QualifiedName) -> Option<i32> {
    if name.schema.as_deref().is_none_or(|schema| schema == SCHEMA)
        && let Some(system) = SYSTEM_TABLES.iter().find(|t| t.name == name.name)
    {
        return Some(system.oid);
    }
    let schema = catalog.find_relation(path, name)?;
    if let Some(entry) = catalog.get(&schema, &name.name) {
        return Some(table_oid(&entry.def));
    }
    if let Some(entry) = catalog.view(&schema, &name.name) {
        return Some(view_oid(&entry.def));
    }
    if let Some((entry, index)) = catalog.index(&schema, &name.name) {
        let position = entry.def.indexes.iter().position(|i| i.name == index.name)?;
        return Some(index_oid(&entry.def, position));
    }
    catalog.sequence(&schema, &name.name).map(|entry| crate::sequence::sequence_oid(&entry.def))
}

/// Whether the relation with `oid` is found by its unqualified name through
/// `path` (pg_table_is_visible); system tables always are.
pub fn is_visible(catalog: &Catalog, path: &SearchPath, oid: i64) -> bool {
    let name = match relation_by_oid(catalog, oid) {
        Some(Relation::System(_)) => return true,
        Some(Relation::Table(def)) => def.name.clone(),
        Some(Relation::Index(def, position)) => def.indexes[position].name.clone(),
        None => match catalog.sequences().find(|s| i64::from(crate::sequence::sequence_oid(&s.def)) == oid) {
            Some(sequence) => sequence.def.name.clone(),
            None => match catalog.views().find(|v| i64::from(view_oid(&v.def)) == oid) {
                Some(view) => view.def.name.clone(),
                None => return false,
            },
        },
    };
    relation_oid_by_name(catalog, path, &QualifiedName::bare(name)).is_some_and(|found| i64::from(found) == oid)
}

/// The oid of schema `name`: PostgreSQL's for the fixed ones, else from its id as tables.
pub fn namespace_oid(catalog: &Catalog, name: &str) -> i32 {
    if let Some(fixed) = NAMESPACES.iter().find(|n| n.1 == name) {
        return fixed.0;
    }
    catalog.schema(name).map_or(0, |entry| schema_oid(&entry.def))
}

/// The oid of a stored schema (schema ids come from the same counter as table ids).
pub fn schema_oid(def: &SchemaDef) -> i32 {
    clamp_oid(FIRST_NORMAL_OID + def.id.0 as i64 * OIDS_PER_TABLE)
}

/// The schema of the table with `id` (`public` if it is gone).
fn schema_of(catalog: &Catalog, id: crate::catalog::TableId) -> &str {
    catalog.table_by_id(id).map_or(crate::catalog::PUBLIC_SCHEMA, |entry| entry.schema_name.as_str())
}

fn tables(catalog: &Catalog) -> impl Iterator<Item = &TableDef> {
    catalog.tables().map(|entry| entry.def.as_ref())
}

/// Whether a unique index stands for a UNIQUE constraint rather than a
/// CREATE UNIQUE INDEX. The catalog does not record which; an index named
/// as PostgreSQL names a unique constraint (`t_a_b_key`, `t_a_key1`) is
/// taken for one. A constraint given its own name shows as a unique index.
pub fn is_unique_constraint(def: &TableDef, index: &IndexDef) -> bool {
    if index.primary || !index.unique {
        return index.primary;
    }
    let names: Vec<&str> = index.columns.iter().map(|&i| def.columns[i].name.as_str()).collect();
    let base = crate::index::default_name(&def.name, &names, "key");
    index.name.strip_prefix(&base).is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
}

/// `CREATE [UNIQUE] INDEX name ON schema.table USING btree (cols)`, as pg_get_indexdef prints it.
pub fn index_definition(schema: &str, def: &TableDef, index: &IndexDef) -> String {
    format!(
        "CREATE {}INDEX {} ON {}.{} USING btree ({})",
        if index.unique { "UNIQUE " } else { "" },
        quote_ident(&index.name),
        quote_ident(schema),
        quote_ident(&def.name),
        column_list(def, index)
    )
}

/// `PRIMARY KEY (cols)` or `UNIQUE (cols)`, as pg_get_constraintdef prints it.
pub fn constraint_definition(def: &TableDef, index: &IndexDef) -> String {
    let kind = if index.primary { "PRIMARY KEY" } else { "UNIQUE" };
    format!("{kind} ({})", column_list(def, index))
}

fn column_list(def: &TableDef, index: &IndexDef) -> String {
    index.columns.iter().map(|&i| quote_ident(&def.columns[i].name)).collect::<Vec<_>>().join(", ")
}

/// PostgreSQL's quote_ident: quotes unless the name is a lower-case identifier.
pub fn quote_ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !is_reserved(name);
    if plain { name.to_string() } else { format!("\"{}\"", name.replace('"', "\"\"")) }
}

/// Reserved keywords that quote_ident must quote (PostgreSQL's reserved list, the common part).
fn is_reserved(name: &str) -> bool {
    const RESERVED: &[&str] = &[
        "all",
        "analyse",
        "analyze",
        "and",
        "any",
        "array",
        "as",
        "asc",
        "both",
        "case",
        "cast",
        "check",
        "collate",
        "column",
        "constraint",
        "create",
        "default",
        "desc",
        "distinct",
        "do",
        "else",
        "end",
        "except",
        "false",
        "fetch",
        "for",
        "foreign",
        "from",
        "grant",
        "group",
        "having",
        "in",
        "into",
        "leading",
        "limit",
        "not",
        "null",
        "offset",
        "on",
        "only",
        "or",
        "order",
        "primary",
        "references",
        "select",
        "some",
        "table",
        "then",
        "to",
        "true",
        "union",
        "unique",
        "user",
        "using",
        "when",
        "where",
        "with",
    ];
    RESERVED.contains(&name)
}

/// A column type's PostgreSQL type oid and typmod.
pub fn type_of(ty: SqlType) -> (i32, i32) {
    match ty {
        SqlType::Int2 => (21, -1),
        SqlType::Int4 => (23, -1),
        SqlType::Int8 => (20, -1),
        SqlType::Float4 => (700, -1),
        SqlType::Float8 => (701, -1),
        SqlType::Bool => (16, -1),
        SqlType::Text => (25, -1),
        SqlType::Varchar(n) => (1043, typmod_with_header(n)),
        SqlType::Char(n) => (1042, typmod_with_header(n)),
        SqlType::Numeric { precision, scale } => {
            (1700, ((i32::from(precision) << 16) | i32::from(scale as u8)).saturating_add(4))
        }
        SqlType::Date => (1082, -1),
        SqlType::Timestamp => (1114, -1),
        SqlType::Timestamptz => (1184, -1),
        SqlType::Json => (114, -1),
        SqlType::Jsonb => (3802, -1),
        SqlType::Uuid => (2950, -1),
        SqlType::Bytea => (17, -1),
        SqlType::Time => (1083, -1),
        SqlType::Interval => (1186, -1),
        SqlType::Array(element) => {
            let (oid, typmod) = type_of(element.scalar());
            (TYPES.iter().find(|t| t.0 == oid).map_or(0, |t| t.6), typmod)
        }
    }
}

/// Character types store their length plus PostgreSQL's 4-byte varlena header as typmod.
fn typmod_with_header(length: u32) -> i32 {
    i32::try_from(length).unwrap_or(i32::MAX - 4).saturating_add(4)
}

/// A row of pg_type: (oid, name, length, by value, category, collation, array type, element type).
type TypeRow = (i32, &'static str, i16, bool, &'static str, i32, i32, i32);

/// The types Borealis columns and catalogs use, with PostgreSQL's oids.
pub const TYPES: &[TypeRow] = &[
    (16, "bool", 1, true, "B", 0, 1000, 0),
    (17, "bytea", -1, false, "U", 0, 1001, 0),
    (18, "char", 1, true, "Z", 0, 1002, 0),
    (19, "name", 64, false, "S", 950, 1003, 0),
    (20, "int8", 8, true, "N", 0, 1016, 0),
    (21, "int2", 2, true, "N", 0, 1005, 0),
    (23, "int4", 4, true, "N", 0, 1007, 0),
    (25, "text", -1, false, "S", DEFAULT_COLLATION, 1009, 0),
    (26, "oid", 4, true, "N", 0, 1028, 0),
    (700, "float4", 4, true, "N", 0, 1021, 0),
    (701, "float8", 8, true, "N", 0, 1022, 0),
    (1042, "bpchar", -1, false, "S", DEFAULT_COLLATION, 1014, 0),
    (1043, "varchar", -1, false, "S", DEFAULT_COLLATION, 1015, 0),
    (1082, "date", 4, true, "D", 0, 1182, 0),
    (1083, "time", 8, true, "D", 0, 1183, 0),
    (1114, "timestamp", 8, true, "D", 0, 1115, 0),
    (1184, "timestamptz", 8, true, "D", 0, 1185, 0),
    (1186, "interval", 16, false, "T", 0, 1187, 0),
    (1700, "numeric", -1, false, "N", 0, 1231, 0),
    (114, "json", -1, false, "U", 0, 199, 0),
    (3802, "jsonb", -1, false, "U", 0, 3807, 0),
    (2950, "uuid", 16, false, "U", 0, 2951, 0),
    (2205, "regclass", 4, true, "N", 0, 2210, 0),
    (1000, "_bool", -1, false, "A", 0, 0, 16),
    (1001, "_bytea", -1, false, "A", 0, 0, 17),
    (1002, "_char", -1, false, "A", 0, 0, 18),
    (1003, "_name", -1, false, "A", 950, 0, 19),
    (1005, "_int2", -1, false, "A", 0, 0, 21),
    (1007, "_int4", -1, false, "A", 0, 0, 23),
    (1009, "_text", -1, false, "A", DEFAULT_COLLATION, 0, 25),
    (1014, "_bpchar", -1, false, "A", DEFAULT_COLLATION, 0, 1042),
    (1015, "_varchar", -1, false, "A", DEFAULT_COLLATION, 0, 1043),
    (1016, "_int8", -1, false, "A", 0, 0, 20),
    (1021, "_float4", -1, false, "A", 0, 0, 700),
    (1022, "_float8", -1, false, "A", 0, 0, 701),
    (1028, "_oid", -1, false, "A", 0, 0, 26),
    (1115, "_timestamp", -1, false, "A", 0, 0, 1114),
    (1182, "_date", -1, false, "A", 0, 0, 1082),
    (1183, "_time", -1, false, "A", 0, 0, 1083),
    (1185, "_timestamptz", -1, false, "A", 0, 0, 1184),
    (1187, "_interval", -1, false, "A", 0, 0, 1186),
    (1231, "_numeric", -1, false, "A", 0, 0, 1700),
    (199, "_json", -1, false, "A", 0, 0, 114),
    (3807, "_jsonb", -1, false, "A", 0, 0, 3802),
    (2951, "_uuid", -1, false, "A", 0, 0, 2950),
    (2210, "_regclass", -1, false, "A", 0, 0, 2205),
];

/// The default btree operator classes of the column types, as (oid, name,
/// family, input type): PostgreSQL's oids, so that `pg_index.indclass`
/// reads as it does there. varchar keys use text_ops, as in PostgreSQL.
pub const BTREE_OPCLASSES: &[(i32, &str, i32, i32)] = &[
    (1978, "int4_ops", 1976, 23),
    (1979, "int2_ops", 1976, 21),
    (3122, "date_ops", 434, 1082),
    (3123, "float8_ops", 1970, 701),
    (3124, "int8_ops", 1976, 20),
    (3125, "numeric_ops", 1988, 1700),
    (3126, "text_ops", 1994, 25),
    (3128, "timestamp_ops", 434, 1114),
    (10003, "bool_ops", 424, 16),
    (10004, "bpchar_ops", 426, 1042),
    (10012, "float4_ops", 1970, 700),
];

/// The default btree operator class for keys of type `type_oid` (0 if none).
fn default_opclass(type_oid: i32) -> i32 {
    let type_oid = if type_oid == 1043 { 25 } else { type_oid };
    BTREE_OPCLASSES.iter().find(|c| c.3 == type_oid).map_or(0, |c| c.0)
}

/// PostgreSQL's format_type(type oid, typmod).
pub fn format_type(oid: i64, typmod: Option<i64>) -> String {
    let typmod = typmod.filter(|&m| m >= 0);
    let sized = |name: &str| match typmod {
        Some(m) if m >= 4 => format!("{name}({})", m - 4),
        _ => name.to_string(),
    };
    match oid {
        16 => "boolean".into(),
        18 => "\"char\"".into(),
        20 => "bigint".into(),
        21 => "smallint".into(),
        23 => "integer".into(),
        700 => "real".into(),
        701 => "double precision".into(),
        1042 if typmod.is_none() => "bpchar".into(),
        1042 => sized("character"),
        1043 => sized("character varying"),
        1083 => "time without time zone".into(),
        1114 => "timestamp without time zone".into(),
        1184 => "timestamp with time zone".into(),
        1700 => match typmod {
            Some(m) if m >= 4 => format!("numeric({},{})", ((m - 4) >> 16) & 0xffff, (m - 4) & 0xffff),
            _ => "numeric".into(),
        },
        _ => match TYPES.iter().find(|t| i64::from(t.0) == oid) {
            Some(&(_, _, _, _, "A", _, _, element)) => format!("{}[]", format_type(i64::from(element), typmod)),
            Some(&(_, name, ..)) => name.to_string(),
            None => "???".into(),
        },
    }
}

/// The name of the type with `oid` (regtype output).
pub fn type_name(oid: i64) -> Option<String> {
    TYPES.iter().any(|t| i64::from(t.0) == oid).then(|| format_type(oid, None))
}

/// The oid of the type `name` names, as `to_regtype` resolves it: its
/// pg_type name (`int4`, `_text`) or its SQL spelling (`integer`,
/// `character varying`, `text[]`), optionally `pg_catalog.` qualified;
/// None for types Borealis does not have.
pub fn type_oid_by_name(name: &str) -> Option<i32> {
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    let name = name.trim_matches('"');
    if let Some(element) = name.strip_suffix("[]") {
        let element = type_oid_by_name(element)?;
        return TYPES.iter().find(|t| t.7 == element).map(|t| t.0);
    }
    let alias = match name {
        "int" | "integer" => "int4",
        "smallint" => "int2",
        "bigint" => "int8",
        "real" => "float4",
        "double precision" => "float8",
        "boolean" => "bool",
        "character varying" => "varchar",
        "character" => "bpchar",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "decimal" => "numeric",
        other => other,
    };
    TYPES.iter().find(|t| t.1 == alias).map(|t| t.0)
}

/// The name of the namespace with `oid` (regnamespace output).
pub fn namespace_name(catalog: &Catalog, oid: i64) -> Option<String> {
    if let Some(fixed) = NAMESPACES.iter().find(|n| i64::from(n.0) == oid) {
        return Some(fixed.1.to_string());
    }
    catalog.schemas().find(|entry| i64::from(schema_oid(&entry.def)) == oid).map(|entry| entry.def.name.clone())
}

/// The name of the role with `oid`, as pg_get_userbyid answers.
pub fn role_name(catalog: &Catalog, oid: i64) -> String {
    match oid {
        10 => crate::functions::SUPERUSER_NAME.to_string(),
        6171 => "pg_database_owner".to_string(),
        other => catalog
            .roles()
            .find(|entry| i64::from(role_oid(&entry.def)) == other)
            .map_or_else(|| format!("unknown (OID={other})"), |entry| entry.def.name.clone()),
    }
}

const NAMESPACES: &[(i32, &str, i32)] = &[
    (PG_CATALOG_NAMESPACE, "pg_catalog", SUPERUSER_OID),
    (PG_TOAST_NAMESPACE, "pg_toast", SUPERUSER_OID),
    (PUBLIC_NAMESPACE, "public", DATABASE_OWNER_OID),
    (INFORMATION_SCHEMA_NAMESPACE, "information_schema", SUPERUSER_OID),
];

/// A column type of a system table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An oid: int4 on the wire (PostgreSQL's oids are unsigned; ours stay below 2^31).
    Oid,
    Int2,
    Int4,
    Int8,
    Float4,
    Bool,
    Text,
    TimestampTz,
    TextArray,
    OidArray,
    Int2Array,
    /// PostgreSQL's int2vector (`pg_index.indkey`): an int2 list whose text form is `1 2`.
    Int2Vector,
    /// PostgreSQL's oidvector (`pg_index.indclass`): an oid list whose text form is `1978 3126`.
    OidVector,
}

/// The item name that marks a list column as an int2vector. The list's
/// item field is part of its Arrow type, so the mark survives projections,
/// joins and subqueries to the wire, which sends such a column as type
/// int2vector (oid 22) in its space-separated text form, as PostgreSQL does.
pub const INT2VECTOR_ITEM: &str = "int2vector";
/// The item name that marks a list column as an oidvector (oid 30).
pub const OIDVECTOR_ITEM: &str = "oidvector";

impl Kind {
    fn arrow_type(self) -> DataType {
        let list = |item: DataType| DataType::List(Arc::new(Field::new_list_field(item, true)));
        match self {
            Kind::Oid | Kind::Int4 => DataType::Int32,
            Kind::Int2 => DataType::Int16,
            Kind::Int8 => DataType::Int64,
            Kind::Float4 => DataType::Float32,
            Kind::Bool => DataType::Boolean,
            Kind::Text => DataType::Utf8,
            Kind::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            Kind::TextArray => list(DataType::Utf8),
            Kind::OidArray => list(DataType::Int32),
            Kind::Int2Array => list(DataType::Int16),
            Kind::Int2Vector => DataType::List(Arc::new(Field::new(INT2VECTOR_ITEM, DataType::Int16, true))),
            Kind::OidVector => DataType::List(Arc::new(Field::new(OIDVECTOR_ITEM, DataType::Int32, true))),
        }
    }

    /// PostgreSQL's type oid and length for pg_attribute rows of system tables.
    fn type_oid(self) -> (i32, i16) {
        match self {
            Kind::Oid => (26, 4),
            Kind::Int2 => (21, 2),
            Kind::Int4 => (23, 4),
            Kind::Int8 => (20, 8),
            Kind::Float4 => (700, 4),
            Kind::Bool => (16, 1),
            Kind::Text => (25, -1),
            Kind::TimestampTz => (1184, 8),
            Kind::TextArray => (1009, -1),
            Kind::OidArray => (1028, -1),
            Kind::Int2Array => (1005, -1),
            Kind::Int2Vector => (22, -1),
            Kind::OidVector => (30, -1),
        }
    }
}

/// A value of a system table row.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Float(f32),
    Bool(bool),
    Text(String),
    IntList(Vec<i64>),
}

impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Int(v.into())
    }
}
impl From<i16> for Value {
    fn from(v: i16) -> Value {
        Value::Int(v.into())
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}
impl From<f32> for Value {
    fn from(v: f32) -> Value {
        Value::Float(v)
    }
}

/// A system table or view: its name, PostgreSQL's oid for it, and columns.
#[derive(Debug)]
pub struct SystemTable {
    pub name: &'static str,
    pub oid: i32,
    /// 'r' for a table, 'v' for a view, as pg_class.relkind.
    pub relkind: &'static str,
    pub columns: &'static [(&'static str, Kind)],
}

impl SystemTable {
    fn schema(&self) -> SchemaRef {
        let fields: Vec<Field> =
            self.columns.iter().map(|(name, kind)| Field::new(*name, kind.arrow_type(), true)).collect();
        Arc::new(Schema::new(fields))
    }
}

use Kind::{Bool as B, Float4 as F4, Int2 as I2, Int4 as I4, Oid as O, Text as T};

/// Every system table and view, with the columns clients read.
pub static SYSTEM_TABLES: &[SystemTable] = &[
    SystemTable {
        name: "pg_namespace",
        oid: 2615,
        relkind: "r",
        columns: &[("oid", O), ("nspname", T), ("nspowner", O), ("nspacl", Kind::TextArray)],
    },
    SystemTable {
        name: "pg_class",
        oid: 1259,
        relkind: "r",
        columns: &[
            ("oid", O),
            ("relname", T),
            ("relnamespace", O),
            ("reltype", O),
            ("reloftype", O),
            ("relowner", O),
            ("relam", O),
            ("relfilenode", O),
            ("reltablespace", O),
            ("relpages", I4),
            ("reltuples", F4),
            ("relallvisible", I4),
            ("reltoastrelid", O),
            ("relhasindex", B),
            ("relisshared", B),
            ("relpersistence", T),
            ("relkind", T),
            ("relnatts", I2),
            ("relchecks", I2),
            ("relhasrules", B),
            ("relhastriggers", B),
            ("relhassubclass", B),
            ("relrowsecurity", B),
            ("relforcerowsecurity", B),
            ("relispopulated", B),
            ("relreplident", T),
            ("relispartition", B),
            ("relrewrite", O),
            ("relacl", Kind::TextArray),
            ("reloptions", Kind::TextArray),
            ("relpartbound", T),
        ],
    },
    SystemTable {
        name: "pg_attribute",
        oid: 1249,
        relkind: "r",
        columns: &[
            ("attrelid", O),
            ("attname", T),
            ("atttypid", O),
            ("attstattarget", I4),
            ("attlen", I2),
            ("attnum", I2),
            ("attndims", I4),
            ("atttypmod", I4),
            ("attbyval", B),
            ("attalign", T),
            ("attstorage", T),
            ("attnotnull", B),
            ("atthasdef", B),
            ("atthasmissing", B),
            ("attidentity", T),
            ("attgenerated", T),
            ("attisdropped", B),
            ("attislocal", B),
            ("attinhcount", I4),
            ("attcollation", O),
            ("attacl", Kind::TextArray),
            ("attoptions", Kind::TextArray),
        ],
    },
    SystemTable {
        name: "pg_type",
        oid: 1247,
        relkind: "r",
        columns: &[
            ("oid", O),
            ("typname", T),
            ("typnamespace", O),
            ("typowner", O),
            ("typlen", I2),
            ("typbyval", B),
            ("typtype", T),
            ("typcategory", T),
            ("typispreferred", B),
            ("typisdefined", B),
            ("typdelim", T),
            ("typrelid", O),
            ("typelem", O),
            ("typarray", O),
            ("typinput", T),
            ("typoutput", T),
            ("typnotnull", B),
            ("typbasetype", O),
            ("typtypmod", I4),
            ("typndims", I4),
            ("typcollation", O),
            ("typdefault", T),
        ],
    },
    SystemTable {
        name: "pg_index",
        oid: 2610,
        relkind: "r",
        columns: &[
            ("indexrelid", O),
            ("indrelid", O),
            ("indnatts", I2),
            ("indnkeyatts", I2),
            ("indisunique", B),
            ("indnullsnotdistinct", B),
            ("indisprimary", B),
            ("indisexclusion", B),
            ("indimmediate", B),
            ("indisclustered", B),
            ("indisvalid", B),
            ("indcheckxmin", B),
            ("indisready", B),
            ("indislive", B),
            ("indisreplident", B),
            ("indkey", Kind::Int2Vector),
            ("indcollation", Kind::OidVector),
            ("indclass", Kind::OidVector),
            ("indoption", Kind::Int2Vector),
            ("indexprs", T),
            ("indpred", T),
        ],
    },
    SystemTable {
        name: "pg_constraint",
        oid: 2606,
        relkind: "r",
        columns: &[
            ("oid", O),
            ("conname", T),
            ("connamespace", O),
            ("contype", T),
            ("condeferrable", B),
            ("condeferred", B),
            ("convalidated", B),
            ("conrelid", O),
            ("contypid", O),
            ("conindid", O),
            ("conparentid", O),
            ("confrelid", O),
            ("confupdtype", T),
            ("confdeltype", T),
            ("confmatchtype", T),
            ("conislocal", B),
            ("coninhcount", I4),
            ("connoinherit", B),
            ("conkey", Kind::Int2Array),
            ("confkey", Kind::Int2Array),
            ("conbin", T),
        ],
    },
    SystemTable {
        name: "pg_attrdef",
        oid: 2604,
        relkind: "r",
        columns: &[("oid", O), ("adrelid", O), ("adnum", I2), ("adbin", T)],
    },
    SystemTable {
        name: "pg_description",
        oid: 2609,
        relkind: "r",
        columns: &[("objoid", O), ("classoid", O), ("objsubid", I4), ("description", T)],
    },
    SystemTable {
        name: "pg_database",
        oid: 1262,
        relkind: "r",
        columns: &[
            ("oid", O),
            ("datname", T),
            ("datdba", O),
            ("encoding", I4),
            ("datlocprovider", T),
            ("datistemplate", B),
            ("datallowconn", B),
            ("datconnlimit", I4),
            ("dattablespace", O),
            ("datcollate", T),
            ("datctype", T),
            ("daticulocale", T),
            ("datcollversion", T),
            ("datacl", Kind::TextArray),
        ],
    },
    SystemTable {
        name: "pg_roles",
        oid: 12001,
        relkind: "v",
        columns: &[
            ("rolname", T),
            ("rolsuper", B),
            ("rolinherit", B),
            ("rolcreaterole", B),
            ("rolcreatedb", B),
            ("rolcanlogin", B),
            ("rolreplication", B),
            ("rolconnlimit", I4),
            ("rolpassword", T),
            ("rolvaliduntil", Kind::TimestampTz),
            ("rolbypassrls", B),
            ("rolconfig", Kind::TextArray),
            ("oid", O),
        ],
    },
    SystemTable {
        name: "pg_user",
        oid: 12002,
        relkind: "v",
        columns: &[
            ("usename", T),
            ("usesysid", O),
            ("usecreatedb", B),
            ("usesuper", B),
            ("userepl", B),
            ("usebypassrls", B),
            ("passwd", T),
            ("valuntil", Kind::TimestampTz),
            ("useconfig", Kind::TextArray),
        ],
    },
    SystemTable {
        name: "pg_authid",
        oid: 1260,
        relkind: "r",
        columns: &[
            ("oid", O),
            ("rolname", T),
            ("rolsuper", B),
            ("rolinherit", B),
            ("rolcreaterole", B),
            ("rolcreatedb", B),
            ("rolcanlogin", B),
            ("rolreplication", B),
            ("rolbypassrls", B),
            ("rolconnlimit", I4),
            ("rolpassword", T),
            ("rolvaliduntil", Kind::TimestampTz),
        ],
    },
    SystemTable {
        name: "pg_auth_members",
        oid: 1261,
        relkind: "r",
        columns: &[("oid", O), ("roleid", O), ("member", O), ("grantor", O), ("admin_option", B)],
    },
    SystemTable {
        name: "pg_am",
        oid: 2601,
        relkind: "r",
        columns: &[("oid", O), ("amname", T), ("amhandler", T), ("amtype", T)],
    },
    SystemTable {
        name: "pg_inherits",
        oid: 2611,
        relkind: "r",
        columns: &[("inhrelid", O), ("inhparent", O), ("inhseqno", I4), ("inhdetachpending", B)],
    },
    SystemTable {
        name: "pg_tablespace",
        oid: 1213,
        relkind: "r",
        columns: &[
            ("oid", O),
            ("spcname", T),
            ("spcowner", O),
            ("spcacl", Kind::TextArray),
            ("spcoptions", Kind::TextArray),
        ],
    },
    SystemTable {
        name: "pg_collation",
        oid: 3456,
        relkind: "r",
        columns: &[
            ("oid", O),
            ("collname", T),
            ("collnamespace", O),
            ("collowner", O),
            ("collprovider", T),
            ("collisdeterministic", B),
            ("collencoding", I4),
            ("collcollate", T),
            ("collctype", T),
        ],
    },
    SystemTable {
        name: "pg_policy",
        oid: 3256,
        relkind: "r",
        columns: &[
            ("oid", O),
            ("polname", T),
            ("polrelid", O),
            ("polcmd", T),
            ("polpermissive", B),
            ("polroles", Kind::OidArray),
            ("polqual", T),
            ("polwithcheck", T),
        ],
    },
    SystemTable {
        name: "pg_statistic_ext",
        oid: 3381,
        relkind: "r",
        columns: &[
            ("oid", O),
            ("stxrelid", O),
            ("stxname", T),
            ("stxnamespace", O),
            ("stxowner", O),
            ("stxstattarget", I4),
            ("stxkeys", Kind::Int2Vector),
            ("stxkind", Kind::TextArray),
        ],
    },
    SystemTable {
        name: "pg_publication",
        oid: 6104,
        relkind: "r",
        columns: &[
            ("oid", O),
            ("pubname", T),
            ("pubowner", O),
            ("puballtables", B),
            ("pubinsert", B),
            ("pubupdate", B),
            ("pubdelete", B),
            ("pubtruncate", B),
            ("pubviaroot", B),
        ],
    },
    SystemTable {
        name: "pg_publication_rel",
        oid: 6106,
        relkind: "r",
        columns: &[("oid", O), ("prpubid", O), ("prrelid", O), ("prqual", T), ("prattrs", Kind::Int2Array)],
    },
    SystemTable {
        name: "pg_publication_namespace",
        oid: 6237,
        relkind: "r",
        columns: &[("oid", O), ("pnpubid", O), ("pnnspid", O)],
    },
    SystemTable {
        name: "pg_trigger",
        oid: 2620,
        relkind: "r",
        columns: &[
            ("oid", O),
            ("tgrelid", O),
            ("tgparentid", O),
            ("tgname", T),
            ("tgfoid", O),
            ("tgtype", I2),
            ("tgenabled", T),
            ("tgisinternal", B),
            ("tgconstraint", O),
        ],
    },
    SystemTable {
        name: "pg_sequence",
        oid: 2224,
        relkind: "r",
        columns: &[
            ("seqrelid", O),
            ("seqtypid", O),
            ("seqstart", Kind::Int8),
            ("seqincrement", Kind::Int8),
            ("seqmax", Kind::Int8),
            ("seqmin", Kind::Int8),
            ("seqcache", Kind::Int8),
            ("seqcycle", B),
        ],
    },
    SystemTable {
        name: "pg_depend",
        oid: 2608,
        relkind: "r",
        columns: &[
            ("classid", O),
            ("objid", O),
            ("objsubid", I4),
            ("refclassid", O),
            ("refobjid", O),
            ("refobjsubid", I4),
            ("deptype", T),
        ],
    },
    SystemTable {
        name: "pg_extension",
        oid: 3079,
        relkind: "r",
        columns: &[("oid", O), ("extname", T), ("extowner", O), ("extnamespace", O), ("extversion", T)],
    },
    SystemTable {
        name: "pg_opclass",
        oid: 2616,
        relkind: "r",
        columns: &[
            ("oid", O),
            ("opcmethod", O),
            ("opcname", T),
            ("opcnamespace", O),
            ("opcowner", O),
            ("opcfamily", O),
            ("opcintype", O),
            ("opcdefault", B),
            ("opckeytype", O),
        ],
    },
    SystemTable {
        name: "pg_settings",
        oid: 12006,
        relkind: "v",
        columns: &[
            ("name", T),
            ("setting", T),
            ("unit", T),
            ("category", T),
            ("short_desc", T),
            ("context", T),
            ("vartype", T),
            ("source", T),
            ("boot_val", T),
            ("reset_val", T),
            ("pending_restart", B),
        ],
    },
    SystemTable {
        name: "pg_tables",
        oid: 12003,
        relkind: "v",
        columns: &[
            ("schemaname", T),
            ("tablename", T),
            ("tableowner", T),
            ("tablespace", T),
            ("hasindexes", B),
            ("hasrules", B),
            ("hastriggers", B),
            ("rowsecurity", B),
        ],
    },
    SystemTable {
        name: "pg_indexes",
        oid: 12004,
        relkind: "v",
        columns: &[("schemaname", T), ("tablename", T), ("indexname", T), ("tablespace", T), ("indexdef", T)],
    },
    SystemTable {
        name: "pg_views",
        oid: 12005,
        relkind: "v",
        columns: &[("schemaname", T), ("viewname", T), ("viewowner", T), ("definition", T)],
    },
    // information_schema's constraint views (see INFORMATION_SCHEMA_VIEWS).
    SystemTable {
        name: "table_constraints",
        oid: 13100,
        relkind: "v",
        columns: &[
            ("constraint_catalog", T),
            ("constraint_schema", T),
            ("constraint_name", T),
            ("table_catalog", T),
            ("table_schema", T),
            ("table_name", T),
            ("constraint_type", T),
            ("is_deferrable", T),
            ("initially_deferred", T),
            ("enforced", T),
            ("nulls_distinct", T),
        ],
    },
    SystemTable {
        name: "key_column_usage",
        oid: 13101,
        relkind: "v",
        columns: &[
            ("constraint_catalog", T),
            ("constraint_schema", T),
            ("constraint_name", T),
            ("table_catalog", T),
            ("table_schema", T),
            ("table_name", T),
            ("column_name", T),
            ("ordinal_position", I4),
            ("position_in_unique_constraint", I4),
        ],
    },
    SystemTable {
        name: "referential_constraints",
        oid: 13102,
        relkind: "v",
        columns: &[
            ("constraint_catalog", T),
            ("constraint_schema", T),
            ("constraint_name", T),
            ("unique_constraint_catalog", T),
            ("unique_constraint_schema", T),
            ("unique_constraint_name", T),
            ("match_option", T),
            ("update_rule", T),
            ("delete_rule", T),
        ],
    },
    SystemTable {
        name: "check_constraints",
        oid: 13103,
        relkind: "v",
        columns: &[("constraint_catalog", T), ("constraint_schema", T), ("constraint_name", T), ("check_clause", T)],
    },
    SystemTable {
        name: "constraint_column_usage",
        oid: 13104,
        relkind: "v",
        columns: &[
            ("table_catalog", T),
            ("table_schema", T),
            ("table_name", T),
            ("column_name", T),
            ("constraint_catalog", T),
            ("constraint_schema", T),
            ("constraint_name", T),
        ],
    },
];

/// The views of PostgreSQL's information_schema that Borealis computes
/// (DataFusion's own information_schema has tables, views and columns):
/// listed with the system tables, in namespace information_schema; a query
/// names them `information_schema.x`, which `crate::pg_rewrite` points here.
pub const INFORMATION_SCHEMA_VIEWS: &[&str] = &[
    "table_constraints",
    "key_column_usage",
    "referential_constraints",
    "check_constraints",
    "constraint_column_usage",
];

/// Whether `name` is a table of this schema.
pub fn is_system_table(name: &str) -> bool {
    SYSTEM_TABLES.iter().any(|t| t.name == name)
}

/// Rows of every system table for one catalog.
struct Rows(HashMap<&'static str, Vec<Vec<Value>>>);

impl Rows {
    fn push(&mut self, table: &'static str, row: Vec<Value>) {
        debug_assert!(is_system_table(table), "{table} is not a system table");
        self.0.entry(table).or_default().push(row);
    }
}

/// The system tables computed from `catalog`, as in-memory tables.
pub fn build(catalog: &Catalog) -> Result<HashMap<&'static str, Arc<dyn TableProvider>>, SqlError> {
    let mut rows = Rows(HashMap::new());
    fixed_rows(&mut rows);
    for system in SYSTEM_TABLES {
        let namespace = if INFORMATION_SCHEMA_VIEWS.contains(&system.name) {
            INFORMATION_SCHEMA_NAMESPACE
        } else {
            PG_CATALOG_NAMESPACE
        };
        relation_rows(&mut rows, system.oid, system.name, namespace, system.relkind, HEAP_AM, false);
        let columns = system.columns.iter().map(|(name, kind)| {
            let (type_oid, length) = kind.type_oid();
            (name.to_string(), type_oid, -1, length, false, 0)
        });
        attribute_rows(&mut rows, system.oid, columns);
    }
    for entry in catalog.schemas() {
        let oid = schema_oid(&entry.def);
        rows.push("pg_namespace", vec![oid.into(), entry.def.name.as_str().into(), SUPERUSER_OID.into(), Value::Null]);
    }
    for entry in catalog.tables() {
        table_rows(&mut rows, &entry.def, &entry.schema_name, namespace_oid(catalog, &entry.schema_name));
    }
    for entry in catalog.views() {
        view_rows(&mut rows, &entry.def, &entry.schema_name, namespace_oid(catalog, &entry.schema_name));
    }
    for constraint in catalog.constraints() {
        constraint_row(&mut rows, catalog, &constraint.def);
    }
    information_schema_rows(&mut rows, catalog);
    for entry in catalog.roles() {
        let def = &entry.def;
        let role = RoleRow { name: &def.name, oid: role_oid(def), superuser: def.superuser, login: def.login };
        role_rows(&mut rows, &role, false);
    }
    for sequence in catalog.sequences() {
        let def = &sequence.def;
        let oid = crate::sequence::sequence_oid(def);
        let namespace = namespace_oid(catalog, &sequence.schema_name);
        relation_rows(&mut rows, oid, &def.name, namespace, "S", 0, false);
        rows.push(
            "pg_sequence",
            vec![
                oid.into(),
                type_of(def.ty).0.into(),
                Value::Int(def.start),
                Value::Int(def.increment),
                Value::Int(def.max_value),
                Value::Int(def.min_value),
                Value::Int(def.cache),
                false.into(),
            ],
        );
        // An owned sequence depends on its column: 'a' (auto) for SERIAL, 'i' (internal) for identity.
        let owner = def.owned_by.as_ref().and_then(|(table, column)| {
            let owner = tables(catalog).find(|t| t.id == *table)?;
            let index = owner.column_index(column)?;
            Some((owner, index))
        });
        if let Some((owner, index)) = owner {
            let deptype = if owner.columns[index].identity.is_some() { "i" } else { "a" };
            let pg_class = SYSTEM_TABLES[1].oid;
            rows.push(
                "pg_depend",
                vec![
                    pg_class.into(),
                    oid.into(),
                    0.into(),
                    pg_class.into(),
                    table_oid(owner).into(),
                    i32::from(owner.attnum(index)).into(),
                    deptype.into(),
                ],
            );
        }
    }
    let mut built = HashMap::new();
    for system in SYSTEM_TABLES {
        let table_rows = rows.0.remove(system.name).unwrap_or_default();
        let batch = batch(system, &table_rows)?;
        let table = MemTable::try_new(system.schema(), vec![vec![batch]])?;
        built.insert(system.name, Arc::new(table) as Arc<dyn TableProvider>);
    }
    Ok(built)
}

/// One role as the role catalogs show it.
struct RoleRow<'a> {
    name: &'a str,
    oid: i32,
    superuser: bool,
    login: bool,
}

/// The rows of one role in pg_roles, pg_user (roles that may log in) and
/// pg_authid. `bootstrap` gives the built-in superuser every attribute, as
/// initdb does. Passwords show as `********` in pg_roles and pg_user, as in
/// PostgreSQL; pg_authid shows NULL: verifiers never leave the server.
fn role_rows(rows: &mut Rows, role: &RoleRow<'_>, bootstrap: bool) {
    let RoleRow { name, oid, superuser, login } = *role;
    // CREATEROLE, CREATEDB, REPLICATION and BYPASSRLS are not stored.
    let granted = bootstrap;
    rows.push(
        "pg_roles",
        vec![
            name.into(),
            superuser.into(),
            true.into(),
            granted.into(),
            granted.into(),
            login.into(),
            granted.into(),
            (-1).into(),
            "********".into(),
            Value::Null,
            granted.into(),
            Value::Null,
            oid.into(),
        ],
    );
    if login {
        rows.push(
            "pg_user",
            vec![
                name.into(),
                oid.into(),
                granted.into(),
                superuser.into(),
                granted.into(),
                granted.into(),
                "********".into(),
                Value::Null,
                Value::Null,
            ],
        );
    }
    rows.push(
        "pg_authid",
        vec![
            oid.into(),
            name.into(),
            superuser.into(),
            true.into(),
            granted.into(),
            granted.into(),
            login.into(),
            granted.into(),
            granted.into(),
            (-1).into(),
            Value::Null,
            Value::Null,
        ],
    );
}

/// The oid of a stored role: as tables (role ids come from the same counter).
pub fn role_oid(def: &RoleDef) -> i32 {
    i32::try_from(FIRST_NORMAL_OID + def.id.0 as i64 * OIDS_PER_TABLE).unwrap_or(0)
}

/// Rows that do not depend on the user's tables: namespaces, roles, the database, types.
fn fixed_rows(rows: &mut Rows) {
    for &(oid, name, owner) in NAMESPACES {
        rows.push("pg_namespace", vec![oid.into(), name.into(), owner.into(), Value::Null]);
    }
    let superuser =
        RoleRow { name: crate::functions::SUPERUSER_NAME, oid: SUPERUSER_OID, superuser: true, login: true };
    role_rows(rows, &superuser, true);
    let owner = RoleRow { name: "pg_database_owner", oid: DATABASE_OWNER_OID, superuser: false, login: false };
    role_rows(rows, &owner, false);
    rows.push(
        "pg_database",
        vec![
            DATABASE_OID.into(),
            DATABASE_NAME.into(),
            SUPERUSER_OID.into(),
            UTF8_ENCODING.into(),
            "c".into(),
            false.into(),
            true.into(),
            (-1).into(),
            1663.into(),
            "C.UTF-8".into(),
            "C.UTF-8".into(),
            Value::Null,
            Value::Null,
            Value::Null,
        ],
    );
    for (oid, name, handler, kind) in
        [(HEAP_AM, "heap", "heap_tableam_handler", "t"), (BTREE_AM, "btree", "bthandler", "i")]
    {
        rows.push("pg_am", vec![oid.into(), name.into(), handler.into(), kind.into()]);
    }
    // The defaults: pg_settings is built per catalog, not per session, so
    // a session's SET shows in SHOW but not here.
    for (name, value, internal) in crate::settings::defaults() {
        let vartype = if value.parse::<i64>().is_ok() { "integer" } else { "string" };
        rows.push(
            "pg_settings",
            vec![
                name.into(),
                value.into(),
                Value::Null,
                "".into(),
                "".into(),
                if internal { "internal" } else { "user" }.into(),
                vartype.into(),
                "default".into(),
                value.into(),
                value.into(),
                false.into(),
            ],
        );
    }
    for &(oid, name, family, input_type) in BTREE_OPCLASSES {
        rows.push(
            "pg_opclass",
            vec![
                oid.into(),
                BTREE_AM.into(),
                name.into(),
                PG_CATALOG_NAMESPACE.into(),
                SUPERUSER_OID.into(),
                family.into(),
                input_type.into(),
                true.into(),
                0.into(),
            ],
        );
    }
    for (oid, name) in [(1663, "pg_default"), (1664, "pg_global")] {
        rows.push("pg_tablespace", vec![oid.into(), name.into(), SUPERUSER_OID.into(), Value::Null, Value::Null]);
    }
    for (oid, name, provider, collate) in
        [(DEFAULT_COLLATION, "default", "d", ""), (950, "C", "c", "C"), (951, "POSIX", "c", "POSIX")]
    {
        let collate = if collate.is_empty() { Value::Null } else { collate.into() };
        rows.push(
            "pg_collation",
            vec![
                oid.into(),
                name.into(),
                PG_CATALOG_NAMESPACE.into(),
                SUPERUSER_OID.into(),
                provider.into(),
                true.into(),
                (-1).into(),
                collate.clone(),
                collate,
            ],
        );
    }
    for &(oid, name, length, by_value, category, collation, array, element) in TYPES {
        let (input, output) = if category == "A" { ("array_in", "array_out") } else { ("", "") };
        let io =
            |fixed: &str, suffix: &str| if fixed.is_empty() { format!("{name}{suffix}") } else { fixed.to_string() };
        rows.push(
            "pg_type",
            vec![
                oid.into(),
                name.into(),
                PG_CATALOG_NAMESPACE.into(),
                SUPERUSER_OID.into(),
                length.into(),
                by_value.into(),
                "b".into(),
                category.into(),
                false.into(),
                true.into(),
                ",".into(),
                0.into(),
                element.into(),
                array.into(),
                io(input, "in").into(),
                io(output, "out").into(),
                false.into(),
                0.into(),
                (-1).into(),
                0.into(),
                collation.into(),
                Value::Null,
            ],
        );
    }
}

/// pg_class, pg_attribute, pg_index, pg_constraint, pg_tables and pg_indexes rows of one user table.
fn table_rows(rows: &mut Rows, def: &TableDef, schema: &str, namespace: i32) {
    let oid = table_oid(def);
    relation_rows(rows, oid, &def.name, namespace, "r", HEAP_AM, !def.indexes.is_empty());
    let columns = def.columns.iter().enumerate().map(|(i, c)| (def.attnum(i), column_attribute(c), false));
    // A dropped column keeps its number, as PostgreSQL shows it: no type, attisdropped.
    let dropped = def
        .dropped_attnums
        .iter()
        .map(|&attnum| (attnum, (format!("........pg.dropped.{attnum}........"), 0, -1, -1, false, 0), true));
    numbered_attribute_rows(rows, oid, columns.chain(dropped));
    default_rows(rows, def, oid);
    rows.push(
        "pg_tables",
        vec![
            schema.into(),
            def.name.as_str().into(),
            crate::functions::SUPERUSER_NAME.into(),
            Value::Null,
            (!def.indexes.is_empty()).into(),
            false.into(),
            false.into(),
            false.into(),
        ],
    );
    for (position, index) in def.indexes.iter().enumerate() {
        let index_oid = index_oid(def, position);
        relation_rows(rows, index_oid, &index.name, namespace, "i", BTREE_AM, false);
        let columns = index.columns.iter().map(|&i| {
            let mut attribute = column_attribute(&def.columns[i]);
            attribute.4 = false;
            attribute
        });
        attribute_rows(rows, index_oid, columns);
        let key: Vec<i64> = index.columns.iter().map(|&i| i64::from(def.attnum(i))).collect();
        let count = key.len() as i16;
        let key_attributes: Vec<Attribute> = index.columns.iter().map(|&i| column_attribute(&def.columns[i])).collect();
        let collations = key_attributes.iter().map(|a| i64::from(a.5)).collect();
        let opclasses = key_attributes.iter().map(|a| i64::from(default_opclass(a.1))).collect();
        rows.push(
            "pg_index",
            vec![
                index_oid.into(),
                oid.into(),
                count.into(),
                count.into(),
                index.unique.into(),
                false.into(),
                index.primary.into(),
                false.into(),
                true.into(),
                false.into(),
                true.into(),
                false.into(),
                true.into(),
                true.into(),
                false.into(),
                Value::IntList(key.clone()),
                Value::IntList(collations),
                Value::IntList(opclasses),
                Value::IntList(vec![0; key.len()]),
                Value::Null,
                Value::Null,
            ],
        );
        rows.push(
            "pg_indexes",
            vec![
                schema.into(),
                def.name.as_str().into(),
                index.name.as_str().into(),
                Value::Null,
                index_definition(schema, def, index).into(),
            ],
        );
        if is_unique_constraint(def, index) {
            rows.push(
                "pg_constraint",
                vec![
                    constraint_oid(def, position).into(),
                    index.name.as_str().into(),
                    namespace.into(),
                    if index.primary { "p" } else { "u" }.into(),
                    false.into(),
                    false.into(),
                    true.into(),
                    oid.into(),
                    0.into(),
                    index_oid.into(),
                    0.into(),
                    0.into(),
                    " ".into(),
                    " ".into(),
                    " ".into(),
                    true.into(),
                    0.into(),
                    true.into(),
                    Value::IntList(key),
                    Value::Null,
                    Value::Null,
                ],
            );
        }
    }
}

/// The oid of a CHECK or FOREIGN KEY constraint.
pub fn check_or_foreign_key_oid(def: &ConstraintDef) -> i32 {
    clamp_oid(FIRST_NORMAL_OID + def.id.0 as i64 * OIDS_PER_TABLE)
}

/// Changes column `column` of relation `oid`'s pg_class row.
fn update_class_row(rows: &mut Rows, oid: i32, column: &str, change: impl FnOnce(&mut Value)) {
    let at = SYSTEM_TABLES[1].columns.iter().position(|(n, _)| *n == column).expect("pg_class column");
    if let Some(row) =
        rows.0.get_mut("pg_class").and_then(|r| r.iter_mut().rev().find(|row| row[0] == Value::from(oid)))
    {
        change(&mut row[at]);
    }
}

/// The pg_constraint row of a CHECK or FOREIGN KEY constraint. Also counts
/// a CHECK in its table's relchecks, and marks both tables of a foreign key
/// relhastriggers (PostgreSQL enforces foreign keys with triggers; psql
/// looks for foreign keys only on tables that have some).
fn constraint_row(rows: &mut Rows, catalog: &Catalog, constraint: &ConstraintDef) {
    let Some(table) = catalog.table_by_id(constraint.table) else { return };
    match &constraint.kind {
        ConstraintKind::Check { .. } => update_class_row(rows, table_oid(&table.def), "relchecks", |value| {
            if let Value::Int(count) = value {
                *count += 1;
            }
        }),
        ConstraintKind::ForeignKey(key) => {
            update_class_row(rows, table_oid(&table.def), "relhastriggers", |value| *value = true.into());
            if let Some(parent) = catalog.table_by_id(key.referenced_table) {
                update_class_row(rows, table_oid(&parent.def), "relhastriggers", |value| *value = true.into());
            }
        }
    }
    let attnums =
        |def: &TableDef, columns: &[usize]| Value::IntList(columns.iter().map(|&c| i64::from(def.attnum(c))).collect());
    let (contype, key, referenced, index, references, actions, expression) = match &constraint.kind {
        ConstraintKind::Check { expression } => {
            let columns = crate::constraint::check_columns(&table.def, expression);
            ("c", attnums(&table.def, &columns), Value::Null, 0, 0, (" ", " ", " "), Value::from(expression.as_str()))
        }
        ConstraintKind::ForeignKey(key) => {
            let parent = catalog.table_by_id(key.referenced_table);
            let parent_oid = parent.map_or(0, |p| table_oid(&p.def));
            let index_oid = parent
                .and_then(|p| {
                    let index = crate::constraint::referenced_index(&p.def, &key.referenced_columns)?;
                    let position = p.def.indexes.iter().position(|i| i.name == index.name)?;
                    Some(index_oid(&p.def, position))
                })
                .unwrap_or(0);
            let actions = (key.on_update.code(), key.on_delete.code(), "s");
            let referenced = parent.map_or(Value::Null, |p| attnums(&p.def, &key.referenced_columns));
            ("f", attnums(&table.def, &key.columns), referenced, index_oid, parent_oid, actions, Value::Null)
        }
    };
    rows.push(
        "pg_constraint",
        vec![
            check_or_foreign_key_oid(constraint).into(),
            constraint.name.as_str().into(),
            namespace_oid(catalog, &table.schema_name).into(),
            contype.into(),
            false.into(),
            false.into(),
            true.into(),
            table_oid(&table.def).into(),
            0.into(),
            index.into(),
            0.into(),
            references.into(),
            actions.0.into(),
            actions.1.into(),
            actions.2.into(),
            true.into(),
            0.into(),
            false.into(),
            key,
            referenced,
            expression,
        ],
    );
}

/// The information_schema constraint views' rows: primary keys and unique
/// constraints (their indexes), CHECK and FOREIGN KEY constraints.
fn information_schema_rows(rows: &mut Rows, catalog: &Catalog) {
    // A constraint is in its table's schema.
    let names = |constraint: &str, table: &TableDef| -> Vec<Value> {
        let schema = schema_of(catalog, table.id);
        vec![
            DATABASE_NAME.into(),
            schema.into(),
            constraint.into(),
            DATABASE_NAME.into(),
            schema.into(),
            table.name.as_str().into(),
        ]
    };
    let usage = |rows: &mut Rows, table: &TableDef, column: &str, constraint: &str, owner: &TableDef| {
        let (schema, owner_schema) = (schema_of(catalog, table.id), schema_of(catalog, owner.id));
        let mut row: Vec<Value> = vec![DATABASE_NAME.into(), schema.into(), table.name.as_str().into(), column.into()];
        row.extend([DATABASE_NAME.into(), owner_schema.into(), constraint.into()]);
        rows.push("constraint_column_usage", row);
    };
    let rule = |action: crate::catalog::ReferentialAction| match action.sql() {
        None => "NO ACTION",
        Some(words) => words,
    };
    for def in tables(catalog) {
        for index in def.indexes.iter().filter(|index| is_unique_constraint(def, index)) {
            let kind = if index.primary { "PRIMARY KEY" } else { "UNIQUE" };
            let mut row = names(&index.name, def);
            let nulls_distinct = if index.primary { Value::Null } else { "YES".into() };
            row.extend([kind.into(), "NO".into(), "NO".into(), "YES".into(), nulls_distinct]);
            rows.push("table_constraints", row);
            for (position, &column) in index.columns.iter().enumerate() {
                let mut row = names(&index.name, def);
                row.extend([def.columns[column].name.as_str().into(), (position as i32 + 1).into(), Value::Null]);
                rows.push("key_column_usage", row);
                usage(rows, def, &def.columns[column].name, &index.name, def);
            }
        }
    }
    for constraint in catalog.constraints() {
        let constraint = &constraint.def;
        let Some(table) = catalog.table_by_id(constraint.table) else { continue };
        let def = &table.def;
        let kind = match &constraint.kind {
            ConstraintKind::Check { .. } => "CHECK",
            ConstraintKind::ForeignKey(_) => "FOREIGN KEY",
        };
        let mut row = names(&constraint.name, def);
        row.extend([kind.into(), "NO".into(), "NO".into(), "YES".into(), Value::Null]);
        rows.push("table_constraints", row);
        match &constraint.kind {
            ConstraintKind::Check { expression } => {
                let definition = crate::constraint::check_definition(expression, false);
                let clause = definition.strip_prefix("CHECK ").unwrap_or(&definition);
                let schema = schema_of(catalog, def.id);
                let mut row: Vec<Value> = vec![DATABASE_NAME.into(), schema.into(), constraint.name.as_str().into()];
                row.push(clause.into());
                rows.push("check_constraints", row);
                for column in crate::constraint::check_columns(def, expression) {
                    usage(rows, def, &def.columns[column].name, &constraint.name, def);
                }
            }
            ConstraintKind::ForeignKey(key) => {
                let Some(parent) = catalog.table_by_id(key.referenced_table) else { continue };
                let parent = &parent.def;
                let index = crate::constraint::referenced_index(parent, &key.referenced_columns);
                for (position, (&column, referenced)) in key.columns.iter().zip(&key.referenced_columns).enumerate() {
                    let in_unique = index.and_then(|i| i.columns.iter().position(|c| c == referenced));
                    let mut row = names(&constraint.name, def);
                    row.extend([
                        def.columns[column].name.as_str().into(),
                        (position as i32 + 1).into(),
                        in_unique.map_or(Value::Null, |p| (p as i32 + 1).into()),
                    ]);
                    rows.push("key_column_usage", row);
                    usage(rows, parent, &parent.columns[*referenced].name, &constraint.name, def);
                }
                let (schema, parent_schema) = (schema_of(catalog, def.id), schema_of(catalog, parent.id));
                let mut row: Vec<Value> = vec![DATABASE_NAME.into(), schema.into(), constraint.name.as_str().into()];
                row.extend([DATABASE_NAME.into(), parent_schema.into()]);
                row.push(index.map_or(Value::Null, |i| i.name.as_str().into()));
                row.extend(["NONE".into(), rule(key.on_update).into(), rule(key.on_delete).into()]);
                rows.push("referential_constraints", row);
            }
        }
    }
}

/// First oid of column defaults (pg_attrdef), far above table oids.
const ATTRDEF_FIRST_OID: i64 = 1 << 30;

/// A default as PostgreSQL shows it: a sequence is named as a regclass.
fn default_definition(text: &str) -> String {
    match text.strip_prefix("nextval('").and_then(|t| t.strip_suffix("')")) {
        Some(name) if !name.contains('\'') => format!("nextval('{name}'::regclass)"),
        _ => text.to_string(),
    }
}

/// pg_attrdef rows of a table's defaults, and atthasdef and attidentity of
/// its pg_attribute rows (an identity column has no pg_attrdef row).
fn default_rows(rows: &mut Rows, def: &TableDef, oid: i32) {
    let position =
        |name: &str| SYSTEM_TABLES[2].columns.iter().position(|(n, _)| *n == name).expect("pg_attribute column");
    let (relid, number, has_default, identity_at) =
        (position("attrelid"), position("attnum"), position("atthasdef"), position("attidentity"));
    for (index, column) in def.columns.iter().enumerate() {
        let Some(text) = &column.default else { continue };
        let attnum = def.attnum(index);
        let Some(row) = rows.0.get_mut("pg_attribute").and_then(|r| {
            r.iter_mut().rev().find(|row| row[relid] == Value::from(oid) && row[number] == Value::from(attnum))
        }) else {
            continue;
        };
        match column.identity {
            Some(identity) => {
                row[identity_at] = if identity == crate::catalog::Identity::Always { "a" } else { "d" }.into();
            }
            None => {
                row[has_default] = true.into();
                let default_oid =
                    clamp_oid(ATTRDEF_FIRST_OID + def.id.0 as i64 * crate::ddl::COLUMNS_MAX as i64 + i64::from(attnum));
                rows.push(
                    "pg_attrdef",
                    vec![default_oid.into(), oid.into(), attnum.into(), default_definition(text).into()],
                );
            }
        }
    }
}

/// (name, type oid, typmod, length, not null, collation) of a column.
type Attribute = (String, i32, i32, i16, bool, i32);

/// The oid of view `def` (views take table ids, so oids never collide).
pub fn view_oid(def: &ViewDef) -> i32 {
    clamp_oid(FIRST_NORMAL_OID + def.id.0 as i64 * OIDS_PER_TABLE)
}

/// A view's pg_class, pg_attribute and pg_views rows.
fn view_rows(rows: &mut Rows, def: &ViewDef, schema: &str, namespace: i32) {
    let oid = view_oid(def);
    relation_rows(rows, oid, &def.name, namespace, "v", 0, false);
    let attributes = def.columns.iter().map(|(name, type_oid)| {
        // Length and collation as pg_type has them.
        let (length, collation) = TYPES
            .iter()
            .find(|t| t.0 == *type_oid)
            .map_or((-1, 0), |&(_, _, length, _, _, collation, ..)| (length, collation));
        (name.clone(), *type_oid, -1, length, false, collation)
    });
    attribute_rows(rows, oid, attributes);
    rows.push(
        "pg_views",
        vec![
            schema.into(),
            def.name.as_str().into(),
            crate::functions::SUPERUSER_NAME.into(),
            format!(" {};", def.query).into(),
        ],
    );
}

fn column_attribute(column: &ColumnDef) -> Attribute {
    let (type_oid, typmod) = type_of(column.ty);
    let length = column.ty.fixed_width_bytes().map_or(-1, |bytes| bytes as i16);
    let length = if matches!(column.ty, SqlType::Numeric { .. }) { -1 } else { length };
    let collation =
        if matches!(column.ty, SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_)) { DEFAULT_COLLATION } else { 0 };
    (column.name.clone(), type_oid, typmod, length, !column.nullable, collation)
}

fn relation_rows(
    rows: &mut Rows,
    oid: i32,
    name: &str,
    namespace: i32,
    relkind: &str,
    access_method: i32,
    has_index: bool,
) {
    let access_method = if relkind == "v" { 0 } else { access_method };
    rows.push(
        "pg_class",
        vec![
            oid.into(),
            name.into(),
            namespace.into(),
            0.into(),
            0.into(),
            SUPERUSER_OID.into(),
            access_method.into(),
            oid.into(),
            0.into(),
            0.into(),
            (-1.0f32).into(),
            0.into(),
            0.into(),
            has_index.into(),
            false.into(),
            "p".into(),
            relkind.into(),
            0i16.into(),
            0i16.into(),
            false.into(),
            false.into(),
            false.into(),
            false.into(),
            false.into(),
            true.into(),
            if relkind == "i" { "n" } else { "d" }.into(),
            false.into(),
            0.into(),
            Value::Null,
            Value::Null,
            Value::Null,
        ],
    );
}

/// pg_attribute rows of relation `oid`, numbered from 1; also sets the relation's relnatts.
fn attribute_rows(rows: &mut Rows, oid: i32, attributes: impl Iterator<Item = Attribute>) {
    numbered_attribute_rows(rows, oid, attributes.enumerate().map(|(i, a)| (i as i16 + 1, a, false)));
}

/// pg_attribute rows of relation `oid`: (attnum, attribute, attisdropped).
fn numbered_attribute_rows(rows: &mut Rows, oid: i32, attributes: impl Iterator<Item = (i16, Attribute, bool)>) {
    let mut count: i16 = 0;
    for (attnum, (name, type_oid, typmod, length, not_null, collation), dropped) in attributes {
        count = count.max(attnum);
        let by_value = length > 0 && length <= 8;
        let (align, storage) = match length {
            1 => ("c", "p"),
            2 => ("s", "p"),
            4 => ("i", "p"),
            8 => ("d", "p"),
            _ => ("i", "x"),
        };
        rows.push(
            "pg_attribute",
            vec![
                oid.into(),
                name.into(),
                type_oid.into(),
                (-1).into(),
                length.into(),
                attnum.into(),
                0.into(),
                typmod.into(),
                by_value.into(),
                align.into(),
                storage.into(),
                not_null.into(),
                false.into(),
                false.into(),
                "".into(),
                "".into(),
                dropped.into(),
                true.into(),
                0.into(),
                collation.into(),
                Value::Null,
                Value::Null,
            ],
        );
    }
    let relnatts =
        SYSTEM_TABLES[1].columns.iter().position(|(name, _)| *name == "relnatts").expect("pg_class has relnatts");
    if let Some(row) =
        rows.0.get_mut("pg_class").and_then(|r| r.iter_mut().rev().find(|row| row[0] == Value::from(oid)))
    {
        row[relnatts] = count.into();
    }
}

/// Arrow batch of `rows` for `table`.
fn batch(table: &SystemTable, rows: &[Vec<Value>]) -> Result<RecordBatch, SqlError> {
    let columns: Vec<ArrayRef> = table
        .columns
        .iter()
        .enumerate()
        .map(|(index, &(name, kind))| {
            assert!(rows.iter().all(|row| row.len() == table.columns.len()), "{}: row width", table.name);
            column(kind, rows.iter().map(|row| &row[index]), name)
        })
        .collect();
    RecordBatch::try_new(table.schema(), columns).map_err(|e| SqlError::from_arrow(&e))
}

fn column<'a>(kind: Kind, values: impl Iterator<Item = &'a Value>, name: &str) -> ArrayRef {
    let int = |value: &Value| match value {
        Value::Int(v) => Some(*v),
        Value::Null => None,
        other => panic!("{name}: {other:?} is not an integer"),
    };
    match kind {
        Kind::Oid | Kind::Int4 => {
            let mut b = Int32Builder::new();
            values.for_each(|v| b.append_option(int(v).map(|v| v as i32)));
            Arc::new(b.finish())
        }
        Kind::Int2 => {
            let mut b = Int16Builder::new();
            values.for_each(|v| b.append_option(int(v).map(|v| v as i16)));
            Arc::new(b.finish())
        }
        Kind::Int8 => {
            let mut b = Int64Builder::new();
            values.for_each(|v| b.append_option(int(v)));
            Arc::new(b.finish())
        }
        Kind::Float4 => {
            let mut b = Float32Builder::new();
            values.for_each(|v| b.append_option(if let Value::Float(f) = v { Some(*f) } else { None }));
            Arc::new(b.finish())
        }
        Kind::Bool => {
            let mut b = BooleanBuilder::new();
            values.for_each(|v| b.append_option(if let Value::Bool(f) = v { Some(*f) } else { None }));
            Arc::new(b.finish())
        }
        Kind::Text => {
            let mut b = StringBuilder::new();
            values.for_each(|v| b.append_option(if let Value::Text(s) = v { Some(s) } else { None }));
            Arc::new(b.finish())
        }
        Kind::TimestampTz => {
            let mut b = TimestampMicrosecondBuilder::new().with_timezone("+00:00");
            values.for_each(|v| b.append_option(int(v)));
            Arc::new(b.finish())
        }
        Kind::TextArray => {
            let mut b = ListBuilder::new(StringBuilder::new());
            values.for_each(|_| b.append_null());
            Arc::new(b.finish())
        }
        Kind::OidArray | Kind::OidVector => {
            let mut b = ListBuilder::new(Int32Builder::new());
            if kind == Kind::OidVector {
                b = b.with_field(Arc::new(Field::new(OIDVECTOR_ITEM, DataType::Int32, true)));
            }
            for value in values {
                match value {
                    Value::IntList(items) => b.append_value(items.iter().map(|&i| Some(i as i32))),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Int2Array | Kind::Int2Vector => {
            let mut b = ListBuilder::new(Int16Builder::new());
            if kind == Kind::Int2Vector {
                b = b.with_field(Arc::new(Field::new(INT2VECTOR_ITEM, DataType::Int16, true)));
            }
            for value in values {
                match value {
                    Value::IntList(items) => b.append_value(items.iter().map(|&i| Some(i as i16))),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
    }
}

/// The system tables of one catalog, by name.
type SystemTables = Arc<HashMap<&'static str, Arc<dyn TableProvider>>>;
/// The built tables and the catalog they were built from.
type Built = (Arc<Catalog>, SystemTables);

/// The `pg_catalog` schema of one session: system tables for the catalog
/// the session's statement sees, rebuilt when that catalog changes.
#[derive(Debug)]
pub struct PgCatalogSchema {
    view: Arc<CatalogView>,
    /// The last build. Keyed by the catalog `Arc` (and its version): the
    /// engine shares one `Arc` per committed catalog version, and a catalog
    /// with uncommitted DDL is a fresh `Arc` every statement, never reused.
    built: Mutex<Option<Built>>,
}

impl PgCatalogSchema {
    /// The schema over `view`.
    pub fn new(view: Arc<CatalogView>) -> PgCatalogSchema {
        PgCatalogSchema { view, built: Mutex::new(None) }
    }

    fn tables(&self) -> Result<SystemTables, SqlError> {
        let catalog = self.view.get();
        let mut built = self.built.lock().expect("pg_catalog cache lock poisoned");
        if let Some((from, tables)) = built.as_ref()
            && Arc::ptr_eq(from, &catalog)
            && from.version == catalog.version
        {
            return Ok(Arc::clone(tables));
        }
        let tables = Arc::new(build(&catalog)?);
        tracing::debug!(catalog_version = catalog.version, "pg_catalog built");
        *built = Some((catalog, Arc::clone(&tables)));
        Ok(tables)
    }

    /// The system table called `name`, built for the current catalog.
    pub fn system_table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if !is_system_table(name) {
            return Ok(None);
        }
        Ok(self.tables()?.get(name).cloned())
    }
}

#[async_trait]
impl SchemaProvider for PgCatalogSchema {
    fn table_names(&self) -> Vec<String> {
        SYSTEM_TABLES.iter().map(|t| t.name.to_string()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        self.system_table(name)
    }

    fn table_exist(&self, name: &str) -> bool {
        is_system_table(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::TableId;
    use borealis_storage::ids::PageId;

    fn accounts() -> TableDef {
        let column = |name: &str, ty, nullable| ColumnDef::new(name, ty, nullable);
        let index = |name: &str, columns: Vec<usize>, unique, primary| IndexDef {
            name: name.into(),
            columns,
            unique,
            primary,
            root: PageId(9),
        };
        TableDef {
            id: TableId(3),
            name: "accounts".into(),
            columns: vec![
                column("id", SqlType::Int4, false),
                column("email", SqlType::Varchar(100), false),
                column("Name", SqlType::Text, true),
            ],
            primary_key: vec![0],
            indexes: vec![
                index("accounts_pkey", vec![0], true, true),
                index("accounts_email_key", vec![1], true, false),
                index("by_name", vec![2, 0], false, false),
                index("accounts_email_key1", vec![1], true, false),
                index("unique_email", vec![1], true, false),
            ],
            first_page: PageId(2),
            dropped_attnums: Vec::new(),
        }
    }

    #[test]
    fn oids_follow_table_ids() {
        let def = accounts();
        assert_eq!(table_oid(&def), 16384 + 3 * 1024);
        assert_eq!(index_oid(&def, 0), table_oid(&def) + 1);
        assert_eq!(constraint_oid(&def, 1), table_oid(&def) + 513);
    }

    #[test]
    fn definitions_match_postgres() {
        let def = accounts();
        assert_eq!(
            index_definition("public", &def, &def.indexes[0]),
            "CREATE UNIQUE INDEX accounts_pkey ON public.accounts USING btree (id)"
        );
        assert_eq!(
            index_definition("public", &def, &def.indexes[2]),
            "CREATE INDEX by_name ON public.accounts USING btree (\"Name\", id)"
        );
        assert_eq!(constraint_definition(&def, &def.indexes[0]), "PRIMARY KEY (id)");
        let constraints: Vec<bool> = def.indexes.iter().map(|i| is_unique_constraint(&def, i)).collect();
        assert_eq!(constraints, [true, true, false, true, false]);
    }

    #[test]
    fn types_format_as_postgres() {
        for (ty, want) in [
            (SqlType::Int4, "integer"),
            (SqlType::Varchar(100), "character varying(100)"),
            (SqlType::Char(4), "character(4)"),
            (SqlType::Numeric { precision: 12, scale: 2 }, "numeric(12,2)"),
            (SqlType::Timestamp, "timestamp without time zone"),
            (SqlType::Timestamptz, "timestamp with time zone"),
            (SqlType::Jsonb, "jsonb"),
            (SqlType::Float8, "double precision"),
            (SqlType::Uuid, "uuid"),
            (SqlType::Bytea, "bytea"),
            (SqlType::Time, "time without time zone"),
            (SqlType::Interval, "interval"),
            (SqlType::Array(crate::types::Element::Int4), "integer[]"),
            (SqlType::Array(crate::types::Element::Text), "text[]"),
        ] {
            let (oid, typmod) = type_of(ty);
            assert_eq!(format_type(oid.into(), Some(typmod.into())), want);
        }
        assert_eq!(format_type(1007, None), "integer[]");
        assert_eq!(format_type(1043, None), "character varying");
        assert_eq!(format_type(4242, None), "???");
    }

    #[test]
    fn quote_ident_quotes_only_when_needed() {
        assert_eq!(quote_ident("accounts"), "accounts");
        assert_eq!(quote_ident("Name"), "\"Name\"");
        assert_eq!(quote_ident("user"), "\"user\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
