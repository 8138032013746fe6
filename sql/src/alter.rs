//! ALTER TABLE: columns (ADD, DROP, RENAME, ALTER COLUMN SET/DROP DEFAULT,
//! SET/DROP NOT NULL and TYPE), constraints (ADD PRIMARY KEY, UNIQUE, CHECK and
//! FOREIGN KEY; DROP CONSTRAINT of a CHECK or FOREIGN KEY) and RENAME TO.
//!
//! The actions of one statement run in the order written, each over the
//! catalog as the ones before it left it (reloaded from the write set), all
//! in the statement's write transaction. So they apply together or not at
//! all: a failing action fails the statement, whose write set is then never
//! committed (an autocommit statement's transaction is dropped; a block
//! fails, or goes back to its savepoint).
//!
//! A table's columns are positions in its rows (`crate::row`). ADD COLUMN
//! without a default writes no row: rows stored before it have fewer
//! columns and read the new one as NULL. ADD COLUMN with a default, DROP
//! COLUMN and ALTER COLUMN TYPE rewrite the table (see [`rewrite`]).

use crate::catalog::{
    self, Catalog, CatalogEntry, ConstraintDef, ConstraintEntry, ConstraintKind, IndexDef, SequenceDef, TableDef,
};
use crate::constraint::{self, Declared, StoredBatches};
use crate::ddl::{self, normalize, qualified_name};
use crate::engine::{Planner, QueryOutput, WriteTxn};
use crate::error::{SqlError, sqlstate};
use crate::heap::WriteSet;
use crate::index;
use crate::types::SqlType;
use borealis_storage::page::PageKind;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::sqlparser::ast::{
    self, AlterColumnOperation, AlterTable, AlterTableOperation, DropBehavior, Expr, Ident, ObjectName,
    RenameTableNameKind, TableConstraint, visit_expressions_mut,
};
use std::ops::ControlFlow;
use std::sync::Arc;

/// ALTER TABLE [IF EXISTS] name action [, ...] (see the module docs).
pub(crate) async fn alter_table(
    txn: &mut WriteTxn,
    planner: &Planner,
    catalog: &Catalog,
    alter: &AlterTable,
) -> Result<QueryOutput, SqlError> {
    let qualified = qualified_name(&alter.name)?;
    if !alter.if_exists {
        catalog.check_schema(&qualified)?;
    }
    let Some(entry) = catalog.find_table(planner.search_path(), &qualified) else {
        if alter.if_exists {
            crate::notice::raise(format!("relation \"{qualified}\" does not exist, skipping"));
            return Ok(QueryOutput::command("ALTER TABLE"));
        }
        return Err(SqlError::undefined_table(&qualified.to_string()));
    };
    let id = entry.def.id;
    let mut reloaded: Option<Catalog> = None;
    for (position, operation) in alter.operations.iter().enumerate() {
        if position > 0 {
            reloaded = Some(Catalog::load(&txn.writes.snapshot()).await?);
        }
        let current = reloaded.as_ref().unwrap_or(catalog);
        let entry = current.table_by_id(id).ok_or_else(|| SqlError::internal("altered table left the catalog"))?;
        alter_one(txn, planner, current, entry, operation).await?;
    }
    Ok(QueryOutput::command("ALTER TABLE"))
}

/// One action of ALTER TABLE on the table `entry`, as `catalog` has it.
async fn alter_one(
    txn: &mut WriteTxn,
    planner: &Planner,
    catalog: &Catalog,
    entry: &CatalogEntry,
    operation: &AlterTableOperation,
) -> Result<(), SqlError> {
    match operation {
        AlterTableOperation::AddColumn { if_not_exists, column_def, column_position: None, .. } => {
            add_column(txn, planner, catalog, entry, *if_not_exists, column_def).await
        }
        AlterTableOperation::DropColumn { column_names, if_exists, drop_behavior, .. } => {
            let [column] = column_names.as_slice() else {
                return Err(SqlError::unsupported("DROP COLUMN of several columns in one action"));
            };
            let cascade = matches!(drop_behavior, Some(DropBehavior::Cascade));
            drop_column(&mut txn.writes, catalog, entry, column, *if_exists, cascade).await
        }
        AlterTableOperation::RenameColumn { old_column_name, new_column_name } => {
            rename_column(&mut txn.writes, catalog, entry, old_column_name, new_column_name).await
        }
        AlterTableOperation::RenameTable { table_name: RenameTableNameKind::To(name) } => {
            rename_table(&mut txn.writes, catalog, entry, name).await
        }
        AlterTableOperation::AlterColumn {
            column_name,
            op: AlterColumnOperation::SetDataType { data_type, using, .. },
        } => set_type(txn, planner, catalog, entry, column_name, data_type, using.as_ref()).await,
        AlterTableOperation::AlterColumn { column_name, op } => alter_column(txn, entry, column_name, op).await,
        AlterTableOperation::AddConstraint { constraint, .. } => {
            add_constraint(txn, planner, catalog, entry, constraint).await
        }
        AlterTableOperation::DropConstraint { if_exists, name, .. } => {
            drop_constraint(&mut txn.writes, catalog, entry, &normalize(name), *if_exists).await
        }
        other => Err(SqlError::unsupported(format_args!("ALTER TABLE {other}"))),
    }
}

/// 42703 for a column the table does not have.
fn undefined_column(table: &str, column: &str) -> SqlError {
    SqlError::new(sqlstate::UNDEFINED_COLUMN, format!("column \"{column}\" of relation \"{table}\" does not exist"))
}

/// 42701 for a column name the table already has.
fn duplicate_column(table: &str, column: &str) -> SqlError {
    SqlError::new(sqlstate::DUPLICATE_COLUMN, format!("column \"{column}\" of relation \"{table}\" already exists"))
}

/// ADD [COLUMN] [IF NOT EXISTS] name type [options].
///
/// The rows already stored get the column's default. A column without one
/// needs no write (those rows read it as NULL); a SERIAL or identity column
/// numbers them from its new sequence; with a default the table is
/// rewritten with the default evaluated per row, so a volatile default
/// (`random()`, `nextval`) gives each row its own value as in PostgreSQL.
/// PostgreSQL 11+ stores a constant default once in the catalog instead
/// (attmissingval) and makes ADD COLUMN O(1); Borealis rewrites because
/// every scan decodes rows positionally from pages, on the writer and on
/// every reader, and a per-column missing value would have to reach each of
/// those decoders. The rewrite costs one pass over the table, in one
/// transaction.
async fn add_column(
    txn: &mut WriteTxn,
    planner: &Planner,
    catalog: &Catalog,
    entry: &CatalogEntry,
    if_not_exists: bool,
    column: &ast::ColumnDef,
) -> Result<(), SqlError> {
    let table = entry.def.name.as_str();
    let name = normalize(&column.name);
    if entry.def.column_index(&name).is_some() {
        if if_not_exists {
            crate::notice::raise(format!("column \"{name}\" of relation \"{table}\" already exists, skipping"));
            return Ok(());
        }
        return Err(duplicate_column(table, &name));
    }
    if entry.def.columns.len() >= ddl::COLUMNS_MAX {
        return Err(SqlError::new(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            format!("tables can have at most {} columns", ddl::COLUMNS_MAX),
        ));
    }
    let mut parts = ddl::column_parts(column, table)?;
    let sequence = match &parts.sequence {
        Some(options) => {
            let base = format!("{table}_{name}_seq");
            let sequence_name = index::choose_name(catalog, &entry.schema_name, &[], &base);
            let mut sequence = crate::sequence::sequence_def(sequence_name.clone(), parts.column.ty, options)?;
            sequence.owned_by = Some((entry.def.id, name.clone()));
            parts.column.default = Some(ddl::nextval_default(&entry.schema_name, &sequence_name));
            Some(sequence)
        }
        None => None,
    };
    let mut def = (*entry.def).clone();
    def.columns.push(parts.column.clone());
    let position = def.columns.len() - 1;
    match (sequence, &parts.column.default) {
        (Some(sequence), _) => {
            let last_value = number_rows(&mut txn.writes, &entry.def, &mut def, &sequence).await?;
            catalog::create_sequence(&mut txn.writes, catalog, &entry.schema_name, sequence, last_value).await?;
        }
        (None, Some(text)) => {
            let default = compile(planner, &entry.def, text)?;
            let column = parts.column.clone();
            rewrite(&mut txn.writes, &entry.def, &mut def, |batch| {
                let values = default.evaluate(batch)?.into_array(batch.num_rows())?;
                let values = crate::dml::cast_column(&values, column.ty)?;
                if !column.nullable && values.null_count() > 0 {
                    return Err(contains_nulls(table, &column.name));
                }
                let mut columns = batch.columns().to_vec();
                columns.push(values);
                Ok(columns)
            })
            .await?;
        }
        (None, None) if !parts.column.nullable => refuse_nulls(txn, &def, position).await?,
        (None, None) => {}
    }
    for given in parts.primary {
        add_key(txn, catalog, &entry.schema_name, &mut def, given, vec![position], true).await?;
    }
    for given in parts.unique {
        add_key(txn, catalog, &entry.schema_name, &mut def, given, vec![position], false).await?;
    }
    catalog::update_table(&mut txn.writes, entry, &def).await?;
    if !parts.declared.is_empty() {
        constraint::add(&mut txn.writes, planner, catalog, &Arc::new(def), parts.declared, true).await?;
    }
    Ok(())
}

/// Rewrites the rows of `old` as rows of `new`, whose last column (SERIAL
/// or identity) takes the values of `sequence` in order, as nextval would
/// give them; returns the last value given (None for an empty table).
async fn number_rows(
    writes: &mut WriteSet,
    old: &TableDef,
    new: &mut TableDef,
    sequence: &SequenceDef,
) -> Result<Option<i64>, SqlError> {
    let mut last: Option<i64> = None;
    let ty = new.columns[new.columns.len() - 1].ty;
    rewrite(writes, old, new, |batch| {
        let mut values = Vec::with_capacity(batch.num_rows());
        for _ in 0..batch.num_rows() {
            let next = match last {
                None => Some(sequence.start),
                Some(last) => last.checked_add(sequence.increment),
            };
            let next =
                next.filter(|next| (sequence.min_value..=sequence.max_value).contains(next)).ok_or_else(|| {
                    let (bound, value) = match sequence.increment > 0 {
                        true => ("maximum", sequence.max_value),
                        false => ("minimum", sequence.min_value),
                    };
                    SqlError::new(
                        sqlstate::SEQUENCE_GENERATOR_LIMIT_EXCEEDED,
                        format!("nextval: reached {bound} value of sequence \"{}\" ({value})", sequence.name),
                    )
                })?;
            values.push(next);
            last = Some(next);
        }
        let values: ArrayRef = Arc::new(datafusion::arrow::array::Int64Array::from(values));
        let mut columns = batch.columns().to_vec();
        columns.push(crate::dml::cast_column(&values, ty)?);
        Ok(columns)
    })
    .await?;
    Ok(last)
}

/// A stored expression (a default) compiled for batches of `def`'s rows.
fn compile(planner: &Planner, def: &TableDef, text: &str) -> Result<Arc<dyn PhysicalExpr>, SqlError> {
    let schema =
        datafusion::common::DFSchema::try_from_qualified_schema(def.name.as_str(), &constraint::table_schema(def))?;
    planner.physical_expr(constraint::parse_expr(text)?, &schema)
}

/// Rewrites the rows of `old` into a fresh page chain as rows of `new`,
/// whose columns `convert` computes from each batch of the old ones, and
/// gives `new` fresh indexes built from the new rows (their addresses
/// changed). `new` is checked as each row is encoded (NOT NULL, varchar
/// lengths). The old pages are not reclaimed (no free space map yet), as
/// with TRUNCATE.
async fn rewrite(
    writes: &mut WriteSet,
    old: &TableDef,
    new: &mut TableDef,
    mut convert: impl FnMut(&RecordBatch) -> Result<Vec<ArrayRef>, SqlError>,
) -> Result<(), SqlError> {
    new.first_page = writes.allocate_page(PageKind::Heap).await?;
    writes.new_chain(new.first_page);
    let mut batches = StoredBatches::new(writes, old);
    while let Some(batch) = batches.next().await? {
        let columns = convert(&batch)?;
        for row in 0..batch.num_rows() {
            let tuple = crate::row::encode_row(new, &columns, row)?;
            writes.insert(new.first_page, tuple).await?;
        }
    }
    for position in 0..new.indexes.len() {
        new.indexes[position].root = crate::btree::create(writes).await?;
        let index = new.indexes[position].clone();
        index::build(writes, new, &index).await?;
    }
    Ok(())
}

/// DROP [COLUMN] [IF EXISTS] name [RESTRICT | CASCADE].
///
/// What depends on the column goes with it, as in PostgreSQL: the indexes
/// on it (a primary key's too), the table's CHECK constraints and foreign
/// keys over it, and the sequence it owns. Another table's foreign key that
/// references it needs CASCADE (2BP01 otherwise) and is then dropped with a
/// NOTICE.
///
/// PostgreSQL only marks the column dropped (attisdropped) and leaves its
/// bytes in the rows; Borealis rewrites the rows without it, because every
/// decoder and every position-keyed definition (indexes, foreign keys)
/// takes a table's columns as the positions of its rows. The positions
/// after the column move down by one in the indexes and foreign keys that
/// stay; the column's attnum is kept as dropped, so the others keep theirs
/// (and pg_attribute shows it as PostgreSQL does, attisdropped). A table cannot lose its last column (PostgreSQL allows a
/// zero-column table; nothing here could scan one).
async fn drop_column(
    writes: &mut WriteSet,
    catalog: &Catalog,
    entry: &CatalogEntry,
    column: &Ident,
    if_exists: bool,
    cascade: bool,
) -> Result<(), SqlError> {
    let table = entry.def.name.as_str();
    let name = normalize(column);
    let Some(position) = entry.def.column_index(&name) else {
        if if_exists {
            crate::notice::raise(format!("column \"{name}\" of relation \"{table}\" does not exist, skipping"));
            return Ok(());
        }
        return Err(undefined_column(table, &name));
    };
    let id = entry.def.id;
    for constraint in catalog.constraints() {
        match column_dependence(&entry.def, constraint, position) {
            Dependence::None => {}
            Dependence::Own => catalog::drop_constraint(writes, constraint).await?,
            Dependence::Referencing if !cascade => {
                let child = catalog.table_by_id(constraint.def.table).map_or("?", |c| c.def.name.as_str());
                return Err(SqlError::new(
                    sqlstate::DEPENDENT_OBJECTS_STILL_EXIST,
                    format!("cannot drop column {name} of table {table} because other objects depend on it"),
                )
                .with_detail(format!(
                    "constraint {} on table {child} depends on column {name} of table {table}",
                    constraint.def.name
                )));
            }
            Dependence::Referencing => {
                let child = catalog.table_by_id(constraint.def.table).map_or("?", |c| c.def.name.as_str());
                crate::notice::raise(format!("drop cascades to constraint {} on table {child}", constraint.def.name));
                catalog::drop_constraint(writes, constraint).await?;
            }
            Dependence::Shifted(changed) => catalog::update_constraint(writes, constraint, &changed).await?,
        }
    }
    if entry.def.columns.len() == 1 {
        return Err(SqlError::new(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!(
                "cannot drop column \"{name}\", the last column of table \"{table}\": tables without columns are not supported"
            ),
        ));
    }
    let owned: Vec<_> = catalog
        .sequences()
        .filter(|s| s.def.owned_by.as_ref().is_some_and(|(table, column)| *table == id && *column == name))
        .collect();
    for sequence in owned {
        catalog::drop_sequence(writes, catalog, sequence).await?;
    }
    let mut def = (*entry.def).clone();
    def.dropped_attnums.push(def.attnum(position));
    def.dropped_attnums.sort_unstable();
    def.columns.remove(position);
    def.indexes.retain(|index| !index.columns.contains(&position));
    for index in &mut def.indexes {
        index.columns = shifted(&index.columns, position);
    }
    def.primary_key = match def.primary_key.contains(&position) {
        true => Vec::new(),
        false => shifted(&def.primary_key, position),
    };
    rewrite(writes, &entry.def, &mut def, |batch| {
        let mut columns = batch.columns().to_vec();
        columns.remove(position);
        Ok(columns)
    })
    .await?;
    catalog::update_table(writes, entry, &def).await
}

/// How a constraint depends on the column at `position` of table `def`.
enum Dependence {
    /// Not at all, and it names no column after it.
    None,
    /// It is the table's own and involves the column: it goes with it.
    Own,
    /// A foreign key (of another table, or of this one over other
    /// columns) references the column: it goes only with CASCADE.
    Referencing,
    /// It stays, with the positions after the column moved down by one.
    Shifted(ConstraintDef),
}

fn column_dependence(def: &TableDef, constraint: &ConstraintEntry, position: usize) -> Dependence {
    let own = constraint.def.table == def.id;
    match &constraint.def.kind {
        ConstraintKind::Check { expression } if own => {
            if constraint::check_columns(def, expression).contains(&position) {
                return Dependence::Own;
            }
            Dependence::None
        }
        ConstraintKind::Check { .. } => Dependence::None,
        ConstraintKind::ForeignKey(key) => {
            let referenced = key.referenced_table == def.id;
            if own && key.columns.contains(&position) {
                return Dependence::Own;
            }
            if referenced && key.referenced_columns.contains(&position) {
                return Dependence::Referencing;
            }
            let mut changed = key.clone();
            if own {
                changed.columns = shifted(&key.columns, position);
            }
            if referenced {
                changed.referenced_columns = shifted(&key.referenced_columns, position);
            }
            if changed == *key {
                return Dependence::None;
            }
            let kind = ConstraintKind::ForeignKey(changed);
            Dependence::Shifted(ConstraintDef { kind, ..(*constraint.def).clone() })
        }
    }
}

/// Column positions with the one at `removed` gone (it is not among them).
fn shifted(columns: &[usize], removed: usize) -> Vec<usize> {
    columns.iter().map(|&c| if c > removed { c - 1 } else { c }).collect()
}

/// RENAME [COLUMN] old TO new. Indexes and foreign keys name columns by
/// position and need nothing; CHECK expressions name them in their text,
/// which is rewritten, and a sequence owned by the column follows it.
async fn rename_column(
    writes: &mut WriteSet,
    catalog: &Catalog,
    entry: &CatalogEntry,
    old: &Ident,
    new: &Ident,
) -> Result<(), SqlError> {
    let (old, new) = (normalize(old), normalize(new));
    let table = entry.def.name.as_str();
    let Some(position) = entry.def.column_index(&old) else {
        return Err(SqlError::new(sqlstate::UNDEFINED_COLUMN, format!("column \"{old}\" does not exist")));
    };
    if entry.def.column_index(&new).is_some() {
        return Err(duplicate_column(table, &new));
    }
    let mut def = (*entry.def).clone();
    def.columns[position].name = new.clone();
    catalog::update_table(writes, entry, &def).await?;
    for constraint in catalog.constraints_of(def.id) {
        let ConstraintKind::Check { expression } = &constraint.def.kind else { continue };
        let renamed = rename_in_expression(expression, &old, &new)?;
        if renamed != *expression {
            let changed =
                ConstraintDef { kind: ConstraintKind::Check { expression: renamed }, ..(*constraint.def).clone() };
            catalog::update_constraint(writes, constraint, &changed).await?;
        }
    }
    for sequence in catalog.sequences() {
        if sequence.def.owned_by.as_ref().is_some_and(|(id, column)| *id == def.id && *column == old) {
            let changed = SequenceDef { owned_by: Some((def.id, new.clone())), ..(*sequence.def).clone() };
            catalog::update_sequence(writes, sequence, &changed).await?;
        }
    }
    Ok(())
}

/// `expression` (SQL text over a table's columns) with column `old` named `new`.
fn rename_in_expression(expression: &str, old: &str, new: &str) -> Result<String, SqlError> {
    let mut expr = constraint::parse_expr(expression)?;
    let replacement =
        if crate::pg_catalog::quote_ident(new) == new { Ident::new(new) } else { Ident::with_quote('"', new) };
    let _ = visit_expressions_mut(&mut expr, |e| {
        let ident = match e {
            Expr::Identifier(ident) => Some(ident),
            Expr::CompoundIdentifier(parts) => parts.last_mut(),
            _ => None,
        };
        if let Some(ident) = ident
            && normalize(ident) == old
        {
            *ident = replacement.clone();
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(expr.to_string())
}

/// RENAME TO new_name: the table only (its indexes, constraints and
/// sequences keep their names, as in PostgreSQL).
async fn rename_table(
    writes: &mut WriteSet,
    catalog: &Catalog,
    entry: &CatalogEntry,
    name: &ObjectName,
) -> Result<(), SqlError> {
    let name = qualified_name(name)?;
    if name.schema.is_some() {
        return Err(SqlError::new(sqlstate::SYNTAX_ERROR, "ALTER TABLE ... RENAME TO takes an unqualified name"));
    }
    if catalog.relation_exists(&entry.schema_name, &name.name) {
        return Err(catalog::relation_exists(&name.name));
    }
    let mut def = (*entry.def).clone();
    def.name = name.name;
    catalog::update_table(writes, entry, &def).await
}

/// ALTER [COLUMN] name SET DEFAULT expr | DROP DEFAULT | SET NOT NULL | DROP NOT NULL.
async fn alter_column(
    txn: &mut WriteTxn,
    entry: &CatalogEntry,
    column: &Ident,
    operation: &AlterColumnOperation,
) -> Result<(), SqlError> {
    let table = entry.def.name.as_str();
    let name = normalize(column);
    let position = entry.def.column_index(&name).ok_or_else(|| undefined_column(table, &name))?;
    let mut def = (*entry.def).clone();
    let identity_column = || {
        SqlError::new(
            sqlstate::SYNTAX_ERROR,
            format!("column \"{name}\" of relation \"{table}\" is an identity column"),
        )
    };
    let column = &mut def.columns[position];
    match operation {
        AlterColumnOperation::SetDefault { .. } | AlterColumnOperation::DropDefault if column.identity.is_some() => {
            return Err(identity_column());
        }
        AlterColumnOperation::SetDefault { value } => column.default = Some(ddl::default_text(value)?),
        AlterColumnOperation::DropDefault => column.default = None,
        AlterColumnOperation::SetNotNull => {
            refuse_nulls(txn, &entry.def, position).await?;
            column.nullable = false;
        }
        AlterColumnOperation::DropNotNull if def.primary_key.contains(&position) => {
            return Err(SqlError::new(
                sqlstate::INVALID_TABLE_DEFINITION,
                format!("column \"{name}\" is in a primary key"),
            ));
        }
        AlterColumnOperation::DropNotNull if column.identity.is_some() => return Err(identity_column()),
        AlterColumnOperation::DropNotNull => column.nullable = true,
        other => return Err(SqlError::unsupported(format_args!("ALTER COLUMN ... {other}"))),
    }
    catalog::update_table(&mut txn.writes, entry, &def).await
}

/// ALTER [COLUMN] name [SET DATA] TYPE type [USING expr]: the table is
/// rewritten with each value converted (by `expr` over the old row if
/// given, else by a cast PostgreSQL would apply on assignment; 42804 where
/// it has none), its indexes rebuilt and its CHECK constraints checked
/// again. A column in a foreign key keeps its type (0A000): both sides
/// would have to change together.
async fn set_type(
    txn: &mut WriteTxn,
    planner: &Planner,
    catalog: &Catalog,
    entry: &CatalogEntry,
    column: &Ident,
    data_type: &ast::DataType,
    using: Option<&Expr>,
) -> Result<(), SqlError> {
    let table = entry.def.name.as_str();
    let name = normalize(column);
    let position = entry.def.column_index(&name).ok_or_else(|| undefined_column(table, &name))?;
    let ty = SqlType::from_ast(data_type)?;
    let from = entry.def.columns[position].ty;
    let in_foreign_key = catalog.constraints().any(|c| match &c.def.kind {
        ConstraintKind::ForeignKey(key) => {
            (c.def.table == entry.def.id && key.columns.contains(&position))
                || (key.referenced_table == entry.def.id && key.referenced_columns.contains(&position))
        }
        ConstraintKind::Check { .. } => false,
    });
    if in_foreign_key {
        return Err(SqlError::unsupported("ALTER COLUMN TYPE of a column in a foreign key"));
    }
    if entry.def.columns[position].identity.is_some() && !matches!(ty, SqlType::Int2 | SqlType::Int4 | SqlType::Int8) {
        return Err(SqlError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("identity column type must be smallint, integer, or bigint (column \"{name}\")"),
        ));
    }
    let using = match using {
        Some(expr) => Some(compile(planner, &entry.def, &expr.to_string())?),
        None if casts_on_assignment(from, ty) => None,
        None => {
            return Err(SqlError::new(
                sqlstate::DATATYPE_MISMATCH,
                format!("column \"{name}\" cannot be cast automatically to type {ty}"),
            ));
        }
    };
    let mut def = (*entry.def).clone();
    def.columns[position].ty = ty;
    rewrite(&mut txn.writes, &entry.def, &mut def, |batch| {
        let old = match &using {
            Some(expr) => expr.evaluate(batch)?.into_array(batch.num_rows())?,
            None => Arc::clone(batch.column(position)),
        };
        let mut columns = batch.columns().to_vec();
        columns[position] = crate::dml::cast_column(&old, ty)?;
        Ok(columns)
    })
    .await?;
    catalog::update_table(&mut txn.writes, entry, &def).await?;
    constraint::validate_checks(&txn.writes, planner, catalog, &def).await
}

/// Whether PostgreSQL converts `from` to `to` on assignment (an implicit or
/// assignment cast): between numeric types, between string types, from
/// anything to a string type, and between date and timestamp.
fn casts_on_assignment(from: SqlType, to: SqlType) -> bool {
    let numeric = |ty| {
        matches!(
            ty,
            SqlType::Int2 | SqlType::Int4 | SqlType::Int8 | SqlType::Float4 | SqlType::Float8 | SqlType::Numeric { .. }
        )
    };
    let string = |ty| matches!(ty, SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_));
    from == to
        || (numeric(from) && numeric(to))
        || string(to)
        || matches!((from, to), (SqlType::Date, SqlType::Timestamp) | (SqlType::Timestamp, SqlType::Date))
}

/// ADD [CONSTRAINT name] PRIMARY KEY (cols) | UNIQUE (cols) | CHECK (expr)
/// | FOREIGN KEY (cols) REFERENCES ...; existing rows are checked.
async fn add_constraint(
    txn: &mut WriteTxn,
    planner: &Planner,
    catalog: &Catalog,
    entry: &CatalogEntry,
    constraint: &TableConstraint,
) -> Result<(), SqlError> {
    if let Some(declared) = Declared::from_table_constraint(constraint) {
        return constraint::add(&mut txn.writes, planner, catalog, &entry.def, vec![declared], true).await;
    }
    let (given, columns, primary) = match constraint {
        TableConstraint::PrimaryKey(pk) => (pk.name.as_ref().map(normalize), &pk.columns, true),
        TableConstraint::Unique(unique) => (unique.name.as_ref().map(normalize), &unique.columns, false),
        other => return Err(SqlError::unsupported(format_args!("constraint {other}"))),
    };
    let mut def = (*entry.def).clone();
    let key = ddl::key_columns(columns, &def.columns)?;
    add_key(txn, catalog, &entry.schema_name, &mut def, given, key, primary).await?;
    catalog::update_table(&mut txn.writes, entry, &def).await
}

/// Adds a primary key or unique constraint on `key` to `def`: its unique
/// index, built from the rows (a primary key's columns must hold no NULL
/// and become NOT NULL).
async fn add_key(
    txn: &mut WriteTxn,
    catalog: &Catalog,
    schema: &str,
    def: &mut TableDef,
    given: Option<String>,
    key: Vec<usize>,
    primary: bool,
) -> Result<(), SqlError> {
    if primary {
        if !def.primary_key.is_empty() {
            return Err(SqlError::new(
                sqlstate::INVALID_TABLE_DEFINITION,
                format!("multiple primary keys for table \"{}\" are not allowed", def.name),
            ));
        }
        for &column in &key {
            refuse_nulls(txn, def, column).await?;
            def.columns[column].nullable = false;
        }
        def.primary_key = key.clone();
    }
    let own: Vec<String> = def.indexes.iter().map(|i| i.name.clone()).collect();
    let name = match given {
        Some(given) if catalog.relation_exists(schema, &given) || own.contains(&given) => {
            return Err(catalog::relation_exists(&given));
        }
        Some(given) => given,
        None => {
            let names: Vec<&str> = key.iter().map(|&i| def.columns[i].name.as_str()).collect();
            let base = index::default_name(&def.name, &names, if primary { "pkey" } else { "key" });
            index::choose_name(catalog, schema, &own, &base)
        }
    };
    if let Some(&column) = key.iter().find(|&&c| !crate::keys::is_indexable(def.columns[c].ty)) {
        return Err(crate::keys::not_indexable(def.columns[column].ty));
    }
    let root = crate::btree::create(&mut txn.writes).await?;
    let index = IndexDef { name, columns: key, unique: true, primary, root };
    index::build(&mut txn.writes, def, &index).await?;
    def.indexes.push(index);
    Ok(())
}

/// DROP CONSTRAINT [IF EXISTS] name, of a CHECK or FOREIGN KEY constraint.
async fn drop_constraint(
    writes: &mut WriteSet,
    catalog: &Catalog,
    entry: &CatalogEntry,
    name: &str,
    if_exists: bool,
) -> Result<(), SqlError> {
    let table = entry.def.name.as_str();
    if constraint::drop_named(writes, catalog, &entry.def, name).await? {
        return Ok(());
    }
    if entry.def.indexes.iter().any(|i| i.name == name) {
        return Err(SqlError::unsupported("dropping a primary key or unique constraint (drop its index)"));
    }
    if !if_exists {
        return Err(SqlError::new(
            sqlstate::UNDEFINED_OBJECT,
            format!("constraint \"{name}\" of relation \"{table}\" does not exist"),
        ));
    }
    crate::notice::raise(format!("constraint \"{name}\" of relation \"{table}\" does not exist, skipping"));
    Ok(())
}

/// 23502 as PostgreSQL words it when a column to become NOT NULL holds NULLs.
fn contains_nulls(table: &str, column: &str) -> SqlError {
    SqlError::new(
        sqlstate::NOT_NULL_VIOLATION,
        format!("column \"{column}\" of relation \"{table}\" contains null values"),
    )
}

/// 23502 if `column` of the table holds a NULL (before it becomes NOT NULL).
async fn refuse_nulls(txn: &WriteTxn, def: &TableDef, column: usize) -> Result<(), SqlError> {
    let types = def.types();
    let mut has_null = false;
    txn.writes
        .snapshot()
        .for_each_tuple(def.first_page, |_, tuple| {
            has_null |= crate::row::column_slices(&types, tuple)?.get(column).is_none_or(Option::is_none);
            Ok(())
        })
        .await?;
    if has_null {
        return Err(contains_nulls(&def.name, &def.columns[column].name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renaming_reaches_every_mention_and_quotes_when_needed() {
        assert_eq!(rename_in_expression("x > 0 AND t.x < y", "x", "z").unwrap(), "z > 0 AND t.z < y");
        assert_eq!(rename_in_expression("x > 0", "x", "Big").unwrap(), "\"Big\" > 0");
        assert_eq!(rename_in_expression("\"X\" > x", "X", "w").unwrap(), "w > x");
    }
}
