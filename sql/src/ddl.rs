//! CREATE TABLE, DROP TABLE, TRUNCATE, CREATE INDEX and DROP INDEX (ALTER
//! TABLE is `crate::alter`'s).
//!
//! All run inside a write transaction (`crate::engine`), change the catalog
//! rows and bump the catalog version (`crate::catalog`). Names follow
//! PostgreSQL: unquoted identifiers fold to lower case, quoted ones are kept.
//! Supported column options: NULL, NOT NULL, PRIMARY KEY, UNIQUE, DEFAULT
//! expr, GENERATED {ALWAYS | BY DEFAULT} AS IDENTITY; types SERIAL,
//! BIGSERIAL, SMALLSERIAL; table constraints: PRIMARY KEY (cols), UNIQUE
//! (cols). A primary key or unique constraint creates a B+tree index named
//! as PostgreSQL names it (`t_pkey`, `t_a_b_key`); a SERIAL or identity
//! column a sequence owned by the column (`t_col_seq`), dropped with the
//! table. CHECK and REFERENCES (column or table constraints, and ALTER TABLE
//! ADD / DROP CONSTRAINT) are `crate::constraint`'s. Anything else (CREATE
//! TABLE AS, ...) is refused with 0A000 rather than silently ignored.
//!
//! Also CREATE SEQUENCE and DROP SEQUENCE (`crate::sequence`).

use crate::catalog::{
    self, Catalog, CatalogEntry, ColumnDef, Identity, IndexDef, QualifiedName, SearchPath, SequenceDef, TableDef,
    TableId,
};
use crate::constraint::{self, Declared};
use crate::engine::{Planner, QueryOutput, WriteTxn};
use crate::error::{SqlError, sqlstate};
use crate::index;
use crate::types::SqlType;
use borealis_storage::ids::PageId;
use borealis_storage::page::PageKind;
use datafusion::sql::sqlparser::ast::{
    self, ColumnOption, CreateIndex, CreateTable, DataType, Expr, GeneratedAs, Ident, IndexColumn, IndexType,
    ObjectName, ObjectNamePart, ObjectType, SchemaName, SequenceOptions, TableConstraint, Truncate,
    visit_expressions_mut,
};
use std::ops::ControlFlow;

/// Columns a table may have (PostgreSQL's limit).
pub const COLUMNS_MAX: usize = 1600;

/// An identifier as PostgreSQL resolves it.
pub fn normalize(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// The relation `name` names: `t`, `s.t` or `borealis.s.t`, normalised.
pub fn qualified_name(name: &ObjectName) -> Result<QualifiedName, SqlError> {
    let parts: Vec<&Ident> = name
        .0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => Ok(ident),
            ObjectNamePart::Function(_) => Err(SqlError::unsupported("computed object names")),
        })
        .collect::<Result<_, _>>()?;
    match parts.as_slice() {
        [table] => Ok(QualifiedName::bare(normalize(table))),
        [schema, table] => Ok(QualifiedName { schema: Some(normalize(schema)), name: normalize(table) }),
        [database, schema, table] if normalize(database) == crate::functions::DATABASE_NAME => {
            Ok(QualifiedName { schema: Some(normalize(schema)), name: normalize(table) })
        }
        _ => Err(SqlError::new(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!("cross-database references are not implemented: {name}"),
        )),
    }
}

/// The relation a text argument names (`'t'`, `'s.t'`, `'"Mixed"'`, as
/// nextval and regclass take them); text that is no name is taken as is.
pub fn text_name(text: &str) -> QualifiedName {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let parsed = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text.trim())
        .and_then(|mut parser| parser.parse_object_name(false))
        .ok()
        .and_then(|name| qualified_name(&name).ok());
    parsed.unwrap_or_else(|| QualifiedName::bare(text.trim()))
}

/// CREATE SCHEMA [IF NOT EXISTS] name.
pub(crate) async fn create_schema(
    txn: &mut WriteTxn,
    catalog: &Catalog,
    name: &SchemaName,
    if_not_exists: bool,
) -> Result<QueryOutput, SqlError> {
    let SchemaName::Simple(name) = name else {
        return Err(SqlError::unsupported("CREATE SCHEMA AUTHORIZATION"));
    };
    let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() else {
        return Err(SqlError::new(sqlstate::SYNTAX_ERROR, format!("improper qualified name: {name}")));
    };
    let name = normalize(ident);
    if catalog.schema_exists(&name) {
        if if_not_exists {
            crate::notice::raise(format!("schema \"{name}\" already exists, skipping"));
            return Ok(QueryOutput::command("CREATE SCHEMA"));
        }
        return Err(SqlError::new(sqlstate::DUPLICATE_SCHEMA, format!("schema \"{name}\" already exists")));
    }
    if name.starts_with("pg_") {
        return Err(SqlError::new(sqlstate::RESERVED_NAME, format!("unacceptable schema name \"{name}\""))
            .with_detail("The prefix \"pg_\" is reserved for system schemas."));
    }
    catalog::create_schema(&mut txn.writes, &name).await?;
    Ok(QueryOutput::command("CREATE SCHEMA"))
}

/// DROP SCHEMA [IF EXISTS] names [CASCADE | RESTRICT]: with CASCADE its
/// tables (and what depends on them) and sequences go too; without, a
/// schema that holds any is refused (2BP01).
async fn drop_schemas(
    txn: &mut WriteTxn,
    catalog: &Catalog,
    (if_exists, cascade): (bool, bool),
    names: &[ObjectName],
) -> Result<QueryOutput, SqlError> {
    let mut entries = Vec::with_capacity(names.len());
    for name in names {
        let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() else {
            return Err(SqlError::new(sqlstate::SYNTAX_ERROR, format!("improper qualified name: {name}")));
        };
        let name = normalize(ident);
        match catalog.schema(&name) {
            Some(entry) => {
                if !entries.iter().any(|e: &catalog::SchemaEntry| e.def.id == entry.def.id) {
                    entries.push(entry.clone());
                }
            }
            None if name == catalog::PUBLIC_SCHEMA || catalog::RESERVED_SCHEMAS.contains(&name.as_str()) => {
                return Err(SqlError::new(
                    sqlstate::DEPENDENT_OBJECTS_STILL_EXIST,
                    format!("cannot drop schema {name} because it is required by the database system"),
                ));
            }
            None if if_exists => crate::notice::raise(format!("schema \"{name}\" does not exist, skipping")),
            None => return Err(SqlError::undefined_schema(&name)),
        }
    }
    // The relations of every named schema, dropped together (foreign keys
    // between them go once).
    let mut tables: Vec<CatalogEntry> = Vec::new();
    let mut in_schema_views: Vec<catalog::ViewEntry> = Vec::new();
    for entry in &entries {
        let (in_schema, sequences) = catalog.relations_in(&entry.def.name);
        if !cascade
            && let Some(first) =
                in_schema.first().map(|t| t.def.name.clone()).or_else(|| sequences.first().map(|s| s.def.name.clone()))
        {
            let kind = if in_schema.is_empty() { "sequence" } else { "table" };
            return Err(SqlError::new(
                sqlstate::DEPENDENT_OBJECTS_STILL_EXIST,
                format!("cannot drop schema {} because other objects depend on it", entry.def.name),
            )
            .with_detail(format!("{kind} {}.{first} depends on schema {}", entry.def.name, entry.def.name)));
        }
        tables.extend(in_schema.into_iter().cloned());
        let views = catalog.views_in(&entry.def.name);
        if let (false, Some(view)) = (cascade, views.first()) {
            return Err(SqlError::new(
                sqlstate::DEPENDENT_OBJECTS_STILL_EXIST,
                format!("cannot drop schema {} because other objects depend on it", entry.def.name),
            )
            .with_detail(format!("view {}.{} depends on schema {}", entry.def.name, view.def.name, entry.def.name)));
        }
        in_schema_views.extend(views.into_iter().cloned());
    }
    // Views elsewhere that read what goes are dropped with it (CASCADE).
    let gone: Vec<_> = tables.iter().map(|t| t.def.id).chain(in_schema_views.iter().map(|v| v.def.id)).collect();
    crate::views::drop_readers(txn, catalog, &gone, true, "schema").await?;
    for view in &in_schema_views {
        catalog::drop_view(&mut txn.writes, catalog, view).await?;
    }
    constraint::drop_dependents(&mut txn.writes, catalog, &tables, true).await?;
    for table in &tables {
        catalog::drop_table(&mut txn.writes, catalog, table).await?;
    }
    let in_dropped_schema = |s: &&catalog::SequenceEntry| entries.iter().any(|e| e.def.name == s.schema_name);
    let owned_by_dropped = |s: &&catalog::SequenceEntry| {
        s.def.owned_by.as_ref().is_some_and(|(id, _)| tables.iter().any(|t| t.def.id == *id))
    };
    let sequences: Vec<&catalog::SequenceEntry> =
        catalog.sequences().filter(|s| in_dropped_schema(s) || owned_by_dropped(s)).collect();
    for sequence in sequences {
        catalog::drop_sequence(&mut txn.writes, catalog, sequence).await?;
    }
    for entry in &entries {
        catalog::drop_schema(&mut txn.writes, entry).await?;
    }
    Ok(QueryOutput::command("DROP SCHEMA"))
}

/// CREATE TABLE [IF NOT EXISTS].
pub(crate) async fn create_table(
    txn: &mut WriteTxn,
    planner: &Planner,
    catalog: &Catalog,
    create: &CreateTable,
) -> Result<QueryOutput, SqlError> {
    refuse_unsupported_create(create)?;
    let name = qualified_name(&create.name)?;
    let schema = catalog.creation_schema(planner.search_path(), &name)?;
    let (def, sequences, declared) = table_def(create, catalog, &schema)?;
    if create.if_not_exists && catalog.get(&schema, &def.name).is_some() {
        crate::notice::raise(format!("relation \"{}\" already exists, skipping", def.name));
        return Ok(QueryOutput::command("CREATE TABLE"));
    }
    let mut created = def.clone();
    let id = catalog::create_table(&mut txn.writes, catalog, &schema, def).await?;
    created.id = id;
    for (column, mut sequence) in sequences {
        sequence.owned_by = Some((id, column));
        catalog::create_sequence(&mut txn.writes, catalog, &schema, sequence, None).await?;
    }
    if !declared.is_empty() {
        constraint::add(&mut txn.writes, planner, catalog, &std::sync::Arc::new(created), declared, false).await?;
    }
    Ok(QueryOutput::command("CREATE TABLE"))
}

/// The SQL text a DEFAULT expression is stored as. `'s'::regclass` becomes
/// `'s'`: the sequence functions take a name, and the write path does not
/// rewrite regclass casts. A column reference is refused (0A000), as in
/// PostgreSQL: a default is computed without the row.
pub fn default_text(expr: &Expr) -> Result<String, SqlError> {
    let mut refused = None;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(expr, |e| {
        if matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
            refused = Some(SqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "cannot use column reference in default expression",
            ));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    if let Some(error) = refused {
        return Err(error);
    }
    let mut expr = expr.clone();
    let _ = visit_expressions_mut(&mut expr, |e| {
        if let Expr::Cast { expr: inner, data_type: DataType::Regclass, .. } = e {
            *e = (**inner).clone();
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(expr.to_string())
}

/// The default of a column whose values come from sequence `name` of `schema`.
pub(crate) fn nextval_default(schema: &str, name: &str) -> String {
    format!("nextval('{}')", catalog::display_name(schema, name).replace('\'', "''"))
}

/// The integer type of SERIAL, BIGSERIAL and SMALLSERIAL (and serial2/4/8).
fn serial_type(data_type: &DataType) -> Option<SqlType> {
    let DataType::Custom(name, modifiers) = data_type else { return None };
    if !modifiers.is_empty() {
        return None;
    }
    match name.to_string().to_lowercase().as_str() {
        "serial" | "serial4" => Some(SqlType::Int4),
        "bigserial" | "serial8" => Some(SqlType::Int8),
        "smallserial" | "serial2" => Some(SqlType::Int2),
        _ => None,
    }
}

/// CREATE SEQUENCE [IF NOT EXISTS] name [AS type] [options].
pub(crate) async fn create_sequence(
    txn: &mut WriteTxn,
    catalog: &Catalog,
    path: &SearchPath,
    if_not_exists: bool,
    name: &ObjectName,
    data_type: Option<&DataType>,
    options: &[SequenceOptions],
) -> Result<QueryOutput, SqlError> {
    let name = qualified_name(name)?;
    let schema = catalog.creation_schema(path, &name)?;
    let name = name.name;
    if catalog.relation_exists(&schema, &name) {
        if if_not_exists {
            crate::notice::raise(format!("relation \"{name}\" already exists, skipping"));
            return Ok(QueryOutput::command("CREATE SEQUENCE"));
        }
        return Err(catalog::relation_exists(&name));
    }
    let ty = data_type.map(SqlType::from_ast).transpose()?.unwrap_or(SqlType::Int8);
    let def = crate::sequence::sequence_def(name, ty, options)?;
    catalog::create_sequence(&mut txn.writes, catalog, &schema, def, None).await?;
    Ok(QueryOutput::command("CREATE SEQUENCE"))
}

/// DROP SEQUENCE [IF EXISTS] names. A sequence owned by a column goes only
/// with its table (or the column's default would name a missing sequence).
async fn drop_sequences(
    txn: &mut WriteTxn,
    catalog: &Catalog,
    path: &SearchPath,
    if_exists: bool,
    names: &[ObjectName],
) -> Result<QueryOutput, SqlError> {
    let mut dropped: Vec<u64> = Vec::new();
    for name in names {
        let name = qualified_name(name)?;
        if !if_exists {
            catalog.check_schema(&name)?;
        }
        let Some(entry) = catalog.find_sequence(path, &name) else {
            if if_exists {
                crate::notice::raise(format!("sequence \"{name}\" does not exist, skipping"));
                continue;
            }
            if catalog.find_relation(path, &name).is_some() {
                return Err(SqlError::new(sqlstate::WRONG_OBJECT_TYPE, format!("\"{name}\" is not a sequence")));
            }
            return Err(SqlError::new(sqlstate::UNDEFINED_TABLE, format!("sequence \"{name}\" does not exist")));
        };
        if let Some((table, column)) = &entry.def.owned_by
            && let Some(owner) = catalog.table_by_id(*table)
        {
            return Err(SqlError::new(
                sqlstate::DEPENDENT_OBJECTS_STILL_EXIST,
                format!(
                    "cannot drop sequence {name} because other objects depend on it: default value for column {column} of table {} depends on sequence {name}",
                    owner.def.name
                ),
            ));
        }
        if dropped.contains(&entry.def.uid) {
            continue;
        }
        dropped.push(entry.def.uid);
        catalog::drop_sequence(&mut txn.writes, catalog, entry).await?;
    }
    Ok(QueryOutput::command("DROP SEQUENCE"))
}

fn refuse_unsupported_create(create: &CreateTable) -> Result<(), SqlError> {
    if create.like.is_some() || create.clone.is_some() {
        return Err(SqlError::unsupported("CREATE TABLE LIKE/CLONE"));
    }
    if create.temporary {
        return Err(SqlError::unsupported("temporary tables"));
    }
    if create.or_replace {
        return Err(SqlError::unsupported("CREATE OR REPLACE TABLE"));
    }
    Ok(())
}

/// What CREATE TABLE describes: the table, the sequences its SERIAL and
/// identity columns need (by column name; ids and pages assigned later), and
/// its CHECK and FOREIGN KEY constraints.
type TableParts = (TableDef, Vec<(String, SequenceDef)>, Vec<Declared>);

/// The table CREATE TABLE describes (see [`TableParts`]).
fn table_def(create: &CreateTable, catalog: &Catalog, schema: &str) -> Result<TableParts, SqlError> {
    let name = qualified_name(&create.name)?.name;
    if create.columns.len() > COLUMNS_MAX {
        return Err(SqlError::new(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            format!("tables can have at most {COLUMNS_MAX} columns"),
        ));
    }
    let mut columns: Vec<ColumnDef> = Vec::with_capacity(create.columns.len());
    let mut primary_key: Option<(Option<String>, Vec<usize>)> = None;
    let mut unique: Vec<(Option<String>, Vec<usize>)> = Vec::new();
    // Columns that take their values from a sequence of their own, with its options.
    let mut sequenced: Vec<(usize, Vec<SequenceOptions>)> = Vec::new();
    let mut declared: Vec<Declared> = Vec::new();
    for (index, column) in create.columns.iter().enumerate() {
        let column_name = normalize(&column.name);
        if columns.iter().any(|c| c.name == column_name) {
            return Err(SqlError::new(
                sqlstate::DUPLICATE_COLUMN,
                format!("column \"{column_name}\" specified more than once"),
            ));
        }
        let parts = column_parts(column, &name)?;
        if let Some(options) = parts.sequence {
            sequenced.push((index, options));
        }
        for given in parts.primary {
            set_primary_key(&mut primary_key, given, vec![index], &name)?;
        }
        unique.extend(parts.unique.into_iter().map(|given| (given, vec![index])));
        declared.extend(parts.declared);
        columns.push(parts.column);
    }
    for constraint in &create.constraints {
        match constraint {
            TableConstraint::PrimaryKey(pk) => {
                let indexes = key_columns(&pk.columns, &columns)?;
                set_primary_key(&mut primary_key, pk.name.as_ref().map(normalize), indexes, &name)?;
            }
            TableConstraint::Unique(constraint) => {
                unique.push((constraint.name.as_ref().map(normalize), key_columns(&constraint.columns, &columns)?));
            }
            TableConstraint::Check(_) | TableConstraint::ForeignKey(_) => {
                declared.extend(Declared::from_table_constraint(constraint));
            }
            other => return Err(SqlError::unsupported(format_args!("table constraint {other}"))),
        }
    }
    let mut indexes: Vec<IndexDef> = Vec::new();
    let mut taken = vec![name.clone()];
    let mut add_index = |given: Option<String>, key: Vec<usize>, primary: bool| {
        let index_name = given.unwrap_or_else(|| {
            let names: Vec<&str> = key.iter().map(|&i| columns[i].name.as_str()).collect();
            let base = index::default_name(&name, &names, if primary { "pkey" } else { "key" });
            index::choose_name(catalog, schema, &taken, &base)
        });
        if taken.contains(&index_name) {
            return Err(catalog::relation_exists(&index_name));
        }
        if let Some(&column) = key.iter().find(|&&c| !crate::keys::is_indexable(columns[c].ty)) {
            return Err(crate::keys::not_indexable(columns[column].ty));
        }
        taken.push(index_name.clone());
        indexes.push(IndexDef { name: index_name, columns: key, unique: true, primary, root: PageId(0) });
        Ok(())
    };
    let primary_key = match primary_key {
        Some((given, key)) => {
            add_index(given, key.clone(), true)?;
            key
        }
        None => Vec::new(),
    };
    for (given, key) in unique {
        add_index(given, key, false)?;
    }
    for &index in &primary_key {
        columns[index].nullable = false;
    }
    let mut sequences = Vec::with_capacity(sequenced.len());
    for (index, options) in sequenced {
        let column = &mut columns[index];
        let base = format!("{name}_{}_seq", column.name);
        let sequence_name = index::choose_name(catalog, schema, &taken, &base);
        taken.push(sequence_name.clone());
        let def = crate::sequence::sequence_def(sequence_name.clone(), column.ty, &options)?;
        column.default = Some(nextval_default(schema, &sequence_name));
        sequences.push((column.name.clone(), def));
    }
    let def = TableDef {
        id: TableId(0),
        name,
        columns,
        primary_key,
        indexes,
        first_page: PageId(0),
        dropped_attnums: Vec::new(),
    };
    Ok((def, sequences, declared))
}

/// One column of CREATE TABLE or ALTER TABLE ADD COLUMN, and what its
/// options ask of the table.
pub(crate) struct ColumnParts {
    pub column: ColumnDef,
    /// SERIAL or identity: the options of the sequence it takes values from.
    pub sequence: Option<Vec<SequenceOptions>>,
    /// One per PRIMARY KEY option, with its constraint name if given.
    pub primary: Vec<Option<String>>,
    /// One per UNIQUE option, with its constraint name if given.
    pub unique: Vec<Option<String>>,
    /// Its CHECK and REFERENCES options.
    pub declared: Vec<Declared>,
}

/// The column `column` of table `table` describes (a SERIAL or identity
/// column gets its default when its sequence is named).
pub(crate) fn column_parts(column: &ast::ColumnDef, table: &str) -> Result<ColumnParts, SqlError> {
    let column_name = normalize(&column.name);
    let serial = serial_type(&column.data_type);
    let ty = match serial {
        Some(ty) => ty,
        None => SqlType::from_ast(&column.data_type)?,
    };
    let mut nullable = serial.is_none();
    let mut default = None;
    let mut identity = None;
    let mut parts = ColumnParts {
        column: ColumnDef::new(column_name.clone(), ty, true),
        sequence: serial.map(|_| Vec::new()),
        primary: Vec::new(),
        unique: Vec::new(),
        declared: Vec::new(),
    };
    for option in &column.options {
        match &option.option {
            ColumnOption::Null => {}
            ColumnOption::NotNull => nullable = false,
            ColumnOption::Default(expr) => default = Some(default_text(expr)?),
            ColumnOption::Generated {
                generated_as: generated @ (GeneratedAs::Always | GeneratedAs::ByDefault),
                sequence_options,
                generation_expr: None,
                ..
            } => {
                if !matches!(ty, SqlType::Int2 | SqlType::Int4 | SqlType::Int8) {
                    return Err(SqlError::new(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        format!("identity column type must be smallint, integer, or bigint (column \"{column_name}\")"),
                    ));
                }
                identity = Some(match generated {
                    GeneratedAs::Always => Identity::Always,
                    _ => Identity::ByDefault,
                });
                nullable = false;
                parts.sequence = Some(sequence_options.clone().unwrap_or_default());
            }
            ColumnOption::PrimaryKey(pk) => parts.primary.push(pk.name.as_ref().map(normalize)),
            ColumnOption::Unique(constraint) => parts.unique.push(constraint.name.as_ref().map(normalize)),
            ColumnOption::Check(_) | ColumnOption::ForeignKey(_) => {
                parts.declared.extend(Declared::from_column_option(&column.name, option));
            }
            other => return Err(SqlError::unsupported(format_args!("column option {other}"))),
        }
    }
    if parts.sequence.is_some() && default.is_some() {
        return Err(SqlError::new(
            sqlstate::SYNTAX_ERROR,
            format!("multiple default values specified for column \"{column_name}\" of table \"{table}\""),
        ));
    }
    parts.column = ColumnDef { name: column_name, ty, nullable, default, identity };
    Ok(parts)
}

pub(crate) fn key_columns(key: &[IndexColumn], columns: &[ColumnDef]) -> Result<Vec<usize>, SqlError> {
    key.iter().map(|c| key_column(&c.column.expr, columns)).collect()
}

fn set_primary_key(
    slot: &mut Option<(Option<String>, Vec<usize>)>,
    name: Option<String>,
    key: Vec<usize>,
    table: &str,
) -> Result<(), SqlError> {
    if slot.is_some() {
        return Err(SqlError::new(
            sqlstate::INVALID_TABLE_DEFINITION,
            format!("multiple primary keys for table \"{table}\" are not allowed"),
        ));
    }
    let mut unique = key.clone();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != key.len() {
        return Err(SqlError::new(sqlstate::DUPLICATE_COLUMN, "column appears twice in primary key constraint"));
    }
    *slot = Some((name, key));
    Ok(())
}

fn key_column(expr: &Expr, columns: &[ColumnDef]) -> Result<usize, SqlError> {
    let Expr::Identifier(ident) = expr else {
        return Err(SqlError::unsupported("expressions in an index key"));
    };
    let name = normalize(ident);
    columns.iter().position(|c| c.name == name).ok_or_else(|| {
        SqlError::new(sqlstate::UNDEFINED_COLUMN, format!("column \"{name}\" named in key does not exist"))
    })
}

/// DROP TABLE [IF EXISTS] names, and DROP INDEX.
pub(crate) async fn drop_tables(
    txn: &mut WriteTxn,
    catalog: &Catalog,
    path: &SearchPath,
    object_type: ObjectType,
    (if_exists, cascade): (bool, bool),
    names: &[ObjectName],
) -> Result<QueryOutput, SqlError> {
    match object_type {
        ObjectType::Table => {}
        ObjectType::Index => return drop_indexes(txn, catalog, path, if_exists, names).await,
        ObjectType::Sequence => return drop_sequences(txn, catalog, path, if_exists, names).await,
        ObjectType::Schema => return drop_schemas(txn, catalog, (if_exists, cascade), names).await,
        other => return Err(SqlError::unsupported(format_args!("DROP {other}"))),
    }
    let mut entries = Vec::with_capacity(names.len());
    for name in names {
        let name = qualified_name(name)?;
        if !if_exists {
            catalog.check_schema(&name)?;
        }
        match catalog.find_table(path, &name) {
            Some(entry) if entries.iter().any(|e: &CatalogEntry| e.def.id == entry.def.id) => {}
            Some(entry) => entries.push(entry.clone()),
            None if if_exists => crate::notice::raise(format!("table \"{name}\" does not exist, skipping")),
            None => return Err(SqlError::undefined_table(&name.to_string())),
        }
    }
    constraint::drop_dependents(&mut txn.writes, catalog, &entries, cascade).await?;
    let ids: Vec<_> = entries.iter().map(|entry| entry.def.id).collect();
    crate::views::drop_readers(txn, catalog, &ids, cascade, "table").await?;
    for entry in &entries {
        catalog::drop_table(&mut txn.writes, catalog, entry).await?;
        let owned = catalog.sequences().filter(|s| s.def.owned_by.as_ref().is_some_and(|(id, _)| *id == entry.def.id));
        for sequence in owned {
            catalog::drop_sequence(&mut txn.writes, catalog, sequence).await?;
        }
    }
    Ok(QueryOutput::command("DROP TABLE"))
}

/// CREATE [UNIQUE] INDEX [IF NOT EXISTS] [name] ON t [USING btree] (cols):
/// a B+tree filled from the table's rows in the same transaction.
pub(crate) async fn create_index(
    txn: &mut WriteTxn,
    catalog: &Catalog,
    path: &SearchPath,
    create: &CreateIndex,
) -> Result<QueryOutput, SqlError> {
    if !matches!(create.using, None | Some(IndexType::BTree)) {
        return Err(SqlError::unsupported(format_args!("index method {}", create.using.as_ref().expect("some"))));
    }
    if !create.include.is_empty() || create.predicate.is_some() || create.nulls_distinct == Some(false) {
        return Err(SqlError::unsupported("INCLUDE, partial indexes and NULLS NOT DISTINCT"));
    }
    let table_name = qualified_name(&create.table_name)?;
    catalog.check_schema(&table_name)?;
    let entry = catalog.resolve_table(path, &table_name)?;
    let schema = entry.schema_name.as_str();
    let table = entry.def.name.clone();
    let mut def = (*entry.def).clone();
    let mut key = Vec::with_capacity(create.columns.len());
    for column in &create.columns {
        if column.column.options.asc == Some(false) || column.column.options.nulls_first == Some(true) {
            return Err(SqlError::unsupported("DESC and NULLS FIRST index columns"));
        }
        key.push(key_column(&column.column.expr, &def.columns)?);
    }
    let name = match &create.name {
        Some(name) => {
            let name = qualified_name(name)?;
            if name.schema.as_deref().is_some_and(|given| given != schema) {
                return Err(SqlError::new(
                    sqlstate::SYNTAX_ERROR,
                    "index name may not be qualified by a schema other than its table's",
                ));
            }
            let name = name.name;
            if catalog.relation_exists(schema, &name) {
                if create.if_not_exists {
                    crate::notice::raise(format!("relation \"{name}\" already exists, skipping"));
                    return Ok(QueryOutput::command("CREATE INDEX"));
                }
                return Err(catalog::relation_exists(&name));
            }
            name
        }
        None => {
            let names: Vec<&str> = key.iter().map(|&i| def.columns[i].name.as_str()).collect();
            index::choose_name(catalog, schema, &[], &index::default_name(&table, &names, "idx"))
        }
    };
    if let Some(&column) = key.iter().find(|&&c| !crate::keys::is_indexable(def.columns[c].ty)) {
        return Err(crate::keys::not_indexable(def.columns[column].ty));
    }
    let root = crate::btree::create(&mut txn.writes).await?;
    let index = IndexDef { name, columns: key, unique: create.unique, primary: false, root };
    index::build(&mut txn.writes, &def, &index).await?;
    def.indexes.push(index);
    catalog::update_table(&mut txn.writes, entry, &def).await?;
    Ok(QueryOutput::command("CREATE INDEX"))
}

/// DROP INDEX [IF EXISTS] names. A primary key's index goes only with its table.
async fn drop_indexes(
    txn: &mut WriteTxn,
    catalog: &Catalog,
    path: &SearchPath,
    if_exists: bool,
    names: &[ObjectName],
) -> Result<QueryOutput, SqlError> {
    // Several indexes of one table: each drop must see the previous ones.
    let mut changed: Vec<(CatalogEntry, TableDef)> = Vec::new();
    for name in names {
        let name = qualified_name(name)?;
        if !if_exists {
            catalog.check_schema(&name)?;
        }
        let Some((entry, index)) = catalog.find_index(path, &name) else {
            if if_exists {
                crate::notice::raise(format!("index \"{name}\" does not exist, skipping"));
                continue;
            }
            return Err(SqlError::new(sqlstate::UNDEFINED_OBJECT, format!("index \"{name}\" does not exist")));
        };
        if index.primary {
            return Err(SqlError::new(
                sqlstate::DEPENDENT_OBJECTS_STILL_EXIST,
                format!("cannot drop index {name} because constraint {name} on table {} requires it", entry.def.name),
            ));
        }
        let position = match changed.iter().position(|(e, _)| e.def.id == entry.def.id) {
            Some(position) => position,
            None => {
                changed.push((entry.clone(), (*entry.def).clone()));
                changed.len() - 1
            }
        };
        changed[position].1.indexes.retain(|i| i.name != name.name);
    }
    for (entry, def) in &changed {
        catalog::update_table(&mut txn.writes, entry, def).await?;
    }
    Ok(QueryOutput::command("DROP INDEX"))
}

/// TRUNCATE [TABLE] names: each table gets a new empty page chain and new
/// empty indexes. The old pages are not reclaimed: they leave every chain
/// (page ids are never reused), and VACUUM drops the old chain from the
/// free space map.
pub(crate) async fn truncate(
    txn: &mut WriteTxn,
    catalog: &Catalog,
    path: &SearchPath,
    truncate: &Truncate,
) -> Result<QueryOutput, SqlError> {
    let mut entries: Vec<&CatalogEntry> = Vec::with_capacity(truncate.table_names.len());
    for target in &truncate.table_names {
        let name = qualified_name(&target.name)?;
        catalog.check_schema(&name)?;
        let entry = catalog.resolve_table(path, &name)?;
        if !entries.iter().any(|e| e.def.id == entry.def.id) {
            entries.push(entry);
        }
    }
    constraint::refuse_truncate(catalog, &entries)?;
    for entry in entries {
        let mut def = (*entry.def).clone();
        def.first_page = txn.writes.allocate_page(PageKind::Heap).await?;
        txn.writes.new_chain(def.first_page);
        for index in &mut def.indexes {
            index.root = crate::btree::create(&mut txn.writes).await?;
        }
        catalog::update_table(&mut txn.writes, entry, &def).await?;
    }
    Ok(QueryOutput::command("TRUNCATE TABLE"))
}
