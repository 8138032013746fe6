//! CREATE TABLE and DROP TABLE.
//!
//! Both run inside a write transaction (`crate::engine`), change the catalog
//! rows and bump the catalog version (`crate::catalog`). Names follow
//! PostgreSQL: unquoted identifiers fold to lower case, quoted ones are kept.
//! Supported column options: NULL, NOT NULL, PRIMARY KEY; table constraint:
//! PRIMARY KEY (cols). Anything else (DEFAULT, UNIQUE, CHECK, REFERENCES,
//! CREATE TABLE AS, ...) is refused with 0A000 rather than silently ignored.

use crate::catalog::{self, Catalog, CatalogEntry, ColumnDef, TableDef, TableId};
use crate::engine::{QueryOutput, WriteTxn};
use crate::error::{SqlError, sqlstate};
use crate::types::SqlType;
use borealis_storage::ids::PageId;
use datafusion::sql::sqlparser::ast::{
    ColumnOption, CreateTable, Expr, Ident, ObjectName, ObjectNamePart, ObjectType, TableConstraint,
};

/// Columns a table may have (PostgreSQL's limit).
pub const COLUMNS_MAX: usize = 1600;

/// An identifier as PostgreSQL resolves it.
pub fn normalize(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// The table name of `name`: `t` or `public.t`.
pub fn table_name(name: &ObjectName) -> Result<String, SqlError> {
    let parts: Vec<&Ident> = name
        .0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => Ok(ident),
            ObjectNamePart::Function(_) => Err(SqlError::unsupported("computed object names")),
        })
        .collect::<Result<_, _>>()?;
    match parts.as_slice() {
        [table] => Ok(normalize(table)),
        [schema, table] if normalize(schema) == "public" => Ok(normalize(table)),
        _ => Err(SqlError::new(
            sqlstate::UNDEFINED_TABLE,
            format!("relation \"{name}\" does not exist (only schema public exists)"),
        )),
    }
}

/// CREATE TABLE [IF NOT EXISTS].
pub(crate) async fn create_table(
    txn: &mut WriteTxn,
    catalog: &Catalog,
    create: &CreateTable,
) -> Result<QueryOutput, SqlError> {
    refuse_unsupported_create(create)?;
    let def = table_def(create)?;
    if create.if_not_exists && catalog.get(&def.name).is_some() {
        tracing::debug!(table = %def.name, "CREATE TABLE IF NOT EXISTS: already exists");
        return Ok(QueryOutput::command("CREATE TABLE"));
    }
    catalog::create_table(&mut txn.writes, catalog, def).await?;
    Ok(QueryOutput::command("CREATE TABLE"))
}

fn refuse_unsupported_create(create: &CreateTable) -> Result<(), SqlError> {
    if create.query.is_some() {
        return Err(SqlError::unsupported("CREATE TABLE AS"));
    }
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

fn table_def(create: &CreateTable) -> Result<TableDef, SqlError> {
    let name = table_name(&create.name)?;
    if create.columns.len() > COLUMNS_MAX {
        return Err(SqlError::new(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            format!("tables can have at most {COLUMNS_MAX} columns"),
        ));
    }
    let mut columns: Vec<ColumnDef> = Vec::with_capacity(create.columns.len());
    let mut primary_key: Option<Vec<usize>> = None;
    for (index, column) in create.columns.iter().enumerate() {
        let column_name = normalize(&column.name);
        if columns.iter().any(|c| c.name == column_name) {
            return Err(SqlError::new(
                sqlstate::DUPLICATE_COLUMN,
                format!("column \"{column_name}\" specified more than once"),
            ));
        }
        let ty = SqlType::from_ast(&column.data_type)?;
        let mut nullable = true;
        for option in &column.options {
            match &option.option {
                ColumnOption::Null => {}
                ColumnOption::NotNull => nullable = false,
                ColumnOption::PrimaryKey(_) => {
                    set_primary_key(&mut primary_key, vec![index], &name)?;
                }
                other => return Err(SqlError::unsupported(format_args!("column option {other}"))),
            }
        }
        columns.push(ColumnDef { name: column_name, ty, nullable });
    }
    for constraint in &create.constraints {
        match constraint {
            TableConstraint::PrimaryKey(pk) => {
                let indexes =
                    pk.columns.iter().map(|c| key_column(&c.column.expr, &columns)).collect::<Result<Vec<_>, _>>()?;
                set_primary_key(&mut primary_key, indexes, &name)?;
            }
            other => return Err(SqlError::unsupported(format_args!("table constraint {other}"))),
        }
    }
    let primary_key = primary_key.unwrap_or_default();
    for &index in &primary_key {
        columns[index].nullable = false;
    }
    Ok(TableDef { id: TableId(0), name, columns, primary_key, first_page: PageId(0) })
}

fn set_primary_key(slot: &mut Option<Vec<usize>>, key: Vec<usize>, table: &str) -> Result<(), SqlError> {
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
    *slot = Some(key);
    Ok(())
}

fn key_column(expr: &Expr, columns: &[ColumnDef]) -> Result<usize, SqlError> {
    let Expr::Identifier(ident) = expr else {
        return Err(SqlError::unsupported("expressions in a primary key"));
    };
    let name = normalize(ident);
    columns.iter().position(|c| c.name == name).ok_or_else(|| {
        SqlError::new(sqlstate::UNDEFINED_COLUMN, format!("column \"{name}\" named in key does not exist"))
    })
}

/// DROP TABLE [IF EXISTS] names.
pub(crate) async fn drop_tables(
    txn: &mut WriteTxn,
    catalog: &Catalog,
    object_type: ObjectType,
    if_exists: bool,
    names: &[ObjectName],
) -> Result<QueryOutput, SqlError> {
    if object_type != ObjectType::Table {
        return Err(SqlError::unsupported(format_args!("DROP {object_type}")));
    }
    let mut entries = Vec::with_capacity(names.len());
    for name in names {
        let name = table_name(name)?;
        match catalog.get(&name) {
            Some(entry) if entries.iter().any(|e: &CatalogEntry| e.def.id == entry.def.id) => {}
            Some(entry) => entries.push(entry.clone()),
            None if if_exists => tracing::debug!(table = %name, "DROP TABLE IF EXISTS: no such table"),
            None => return Err(SqlError::undefined_table(&name)),
        }
    }
    for entry in &entries {
        catalog::drop_table(&mut txn.writes, entry).await?;
    }
    Ok(QueryOutput::command("DROP TABLE"))
}
