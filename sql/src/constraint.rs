//! CHECK and FOREIGN KEY constraints: declaring them (CREATE TABLE, ALTER
//! TABLE ADD CONSTRAINT, which validates the rows already there), naming
//! them as PostgreSQL does, and enforcing them on every row change.
//!
//! A CHECK's expression is stored as SQL text over the table's columns; a
//! statement that writes the table compiles it once into a DataFusion
//! physical expression ([`RowChecks`]) and evaluates it over each batch of
//! new rows before they are written. A row fails only if the expression is
//! false: NULL passes, as in PostgreSQL (23514).
//!
//! A FOREIGN KEY is enforced from both ends, after the statement's own
//! writes (so a row may reference a row of the same statement, and deleting
//! a whole self-referencing table succeeds):
//! - referencing side: each new or updated row whose key columns are all
//!   non-NULL (MATCH SIMPLE) must find its key in the referenced table's
//!   unique index, looked up in the transaction's pages (23503);
//! - referenced side ([`after_delete`], [`after_update`]): for each removed
//!   key that no other row still holds, the referencing rows are found
//!   through an index of the referencing table that starts with the key
//!   columns (else by one scan of that table for all the statement's keys)
//!   and the constraint's action runs: NO ACTION and RESTRICT fail (23503),
//!   CASCADE deletes them, SET NULL clears their key columns. Cascaded
//!   changes are themselves removals, handled in turn from a work queue.
//!
//! A key is compared in the referenced index's encoding: each referencing
//! value is encoded as the referenced column's type (`keys::scalar_key`),
//! so an integer column may reference a bigint key.

use crate::btree::{self, KeyRange};
use crate::catalog::{
    self, Catalog, CatalogEntry, ConstraintDef, ConstraintKind, ForeignKey, IndexDef, ReferentialAction, SearchPath,
    TableDef, TableId,
};
use crate::ddl::{normalize, qualified_name};
use crate::engine::Planner;
use crate::error::{SqlError, sqlstate};
use crate::heap::{RowAddress, WriteSet};
use crate::index;
use crate::keys::{row_key, scalar_key};
use crate::locks::{LockMode, LockTag};
use crate::pg_catalog::quote_ident;
use crate::row::{OutputColumn, RowDecoder, encode_row};
use crate::types::SqlType;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, new_null_array};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::sqlparser::ast::{self as ast, CheckConstraint, Expr, ForeignKeyConstraint, Ident, UnaryOperator};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use std::collections::{HashSet, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;

/// Most rows removed by one statement's cascades before it is refused: a
/// bound on the work queue (each entry holds the removed rows' bytes).
pub const CASCADE_ROWS_MAX: usize = 10_000_000;

/// A constraint as declared, before it is checked against the catalog.
#[derive(Clone, Debug)]
pub enum Declared {
    /// `CHECK (expr)`.
    Check { name: Option<String>, expression: Box<Expr> },
    /// `FOREIGN KEY (columns) REFERENCES table (columns)` or a column's `REFERENCES`.
    ForeignKey { name: Option<String>, columns: Vec<Ident>, constraint: Box<ForeignKeyConstraint> },
}

impl Declared {
    /// From a table constraint; None for kinds this module does not own.
    pub fn from_table_constraint(constraint: &ast::TableConstraint) -> Option<Declared> {
        match constraint {
            ast::TableConstraint::Check(check) => Some(Declared::check(None, check)),
            ast::TableConstraint::ForeignKey(key) => Some(Declared::ForeignKey {
                name: key.name.as_ref().map(normalize),
                columns: key.columns.clone(),
                constraint: Box::new(key.clone()),
            }),
            _ => None,
        }
    }

    /// From a column option (`CHECK`, `REFERENCES`) of column `column`.
    pub fn from_column_option(column: &Ident, option: &ast::ColumnOptionDef) -> Option<Declared> {
        let given = option.name.as_ref().map(normalize);
        match &option.option {
            ast::ColumnOption::Check(check) => Some(Declared::check(given, check)),
            ast::ColumnOption::ForeignKey(key) => Some(Declared::ForeignKey {
                name: given.or_else(|| key.name.as_ref().map(normalize)),
                columns: vec![column.clone()],
                constraint: Box::new(key.clone()),
            }),
            _ => None,
        }
    }

    fn check(given: Option<String>, check: &CheckConstraint) -> Declared {
        Declared::Check { name: given.or_else(|| check.name.as_ref().map(normalize)), expression: check.expr.clone() }
    }
}

/// Adds declared constraints to table `def` (already in the catalog or in
/// `writes`). `validate` checks the table's existing rows (ALTER TABLE);
/// `created` is the catalog entry of a table created by the same statement,
/// which `catalog` does not hold yet (a self-referencing CREATE TABLE).
pub(crate) async fn add(
    writes: &mut WriteSet,
    planner: &Planner,
    catalog: &Catalog,
    def: &Arc<TableDef>,
    declared: Vec<Declared>,
    validate: bool,
) -> Result<(), SqlError> {
    let mut taken: Vec<String> = catalog.constraints().map(|c| c.def.name.clone()).collect();
    taken.extend(catalog.tables().flat_map(|e| e.def.indexes.iter().map(|i| i.name.clone())));
    taken.extend(def.indexes.iter().map(|i| i.name.clone()));
    let mut own: Vec<String> = catalog.constraints_of(def.id).map(|c| c.def.name.clone()).collect();
    own.extend(def.indexes.iter().map(|i| i.name.clone()));
    for declared in declared {
        let (given, kind, compiled) = match declared {
            Declared::Check { name, expression } => {
                let expression = check_text(&expression)?;
                // Compiling reports unknown columns and type errors now, not at the first INSERT.
                let compiled = compile(planner, def, &expression)?;
                (name, ConstraintKind::Check { expression }, Some(compiled))
            }
            Declared::ForeignKey { name, columns, constraint } => {
                let key = foreign_key(catalog, planner.search_path(), def, &columns, &constraint, name.as_deref())?;
                (name, ConstraintKind::ForeignKey(key), None)
            }
        };
        let name = match given {
            Some(name) if own.contains(&name) => {
                return Err(SqlError::new(
                    sqlstate::DUPLICATE_OBJECT,
                    format!("constraint \"{name}\" for relation \"{}\" already exists", def.name),
                ));
            }
            Some(name) => name,
            None => choose_name(&taken, &default_name(def, &kind)),
        };
        if validate {
            match (&kind, &compiled) {
                (ConstraintKind::Check { .. }, Some(check)) => validate_check(writes, def, &name, check).await?,
                (ConstraintKind::ForeignKey(key), _) => validate_foreign_key(writes, catalog, def, &name, key).await?,
                (ConstraintKind::Check { .. }, None) => {}
            }
        }
        taken.push(name.clone());
        own.push(name.clone());
        catalog::create_constraint(writes, ConstraintDef { id: TableId(0), name, table: def.id, kind }).await?;
    }
    Ok(())
}

/// PostgreSQL's name for a constraint without one: `t_x_check` for a CHECK
/// on one column, `t_check` for one on several or none, `t_a_b_fkey`.
fn default_name(def: &TableDef, kind: &ConstraintKind) -> String {
    match kind {
        ConstraintKind::Check { expression } => match check_columns(def, expression).as_slice() {
            [column] => format!("{}_{}_check", def.name, def.columns[*column].name),
            _ => format!("{}_check", def.name),
        },
        ConstraintKind::ForeignKey(key) => {
            let names: Vec<&str> = key.columns.iter().map(|&c| def.columns[c].name.as_str()).collect();
            format!("{}_{}_fkey", def.name, names.join("_"))
        }
    }
}

/// `base`, else `base1`, `base2`... (PostgreSQL's ChooseConstraintName).
fn choose_name(taken: &[String], base: &str) -> String {
    if !taken.iter().any(|t| t == base) {
        return base.to_string();
    }
    (1..).map(|n| format!("{base}{n}")).find(|name| !taken.contains(name)).expect("some suffix is free")
}

/// The distinct table columns a CHECK expression reads, in order of first use.
pub fn check_columns(def: &TableDef, expression: &str) -> Vec<usize> {
    let Ok(expr) = parse_expr(expression) else { return Vec::new() };
    let mut columns = Vec::new();
    let _ = ast::visit_expressions(&expr, |e| {
        let ident = match e {
            Expr::Identifier(ident) => Some(ident),
            Expr::CompoundIdentifier(parts) => parts.last(),
            _ => None,
        };
        if let Some(column) = ident.and_then(|i| def.column_index(&normalize(i)))
            && !columns.contains(&column)
        {
            columns.push(column);
        }
        ControlFlow::<()>::Continue(())
    });
    columns
}

pub(crate) fn parse_expr(text: &str) -> Result<Expr, SqlError> {
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect).try_with_sql(text).map_err(|e| SqlError::syntax(&e))?;
    parser.parse_expr().map_err(|e| SqlError::syntax(&e))
}

/// The stored text of a CHECK expression, refusing what PostgreSQL refuses
/// (subqueries, 0A000) and what a row check cannot evaluate here.
fn check_text(expression: &Expr) -> Result<String, SqlError> {
    let mut refused = None;
    let _ = ast::visit_expressions(expression, |e| {
        if matches!(e, Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }) {
            refused = Some(SqlError::new(sqlstate::FEATURE_NOT_SUPPORTED, "cannot use subquery in check constraint"));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    if let Some(error) = refused {
        return Err(error);
    }
    Ok(expression.to_string())
}

/// A CHECK expression as pg_get_constraintdef prints it: every operator
/// application in parentheses (`(x > 0)`, `((a > 0) AND (b > 0))`).
pub fn check_definition(expression: &str, pretty: bool) -> String {
    let Ok(expr) = parse_expr(expression) else { return format!("CHECK ({expression})") };
    if pretty {
        return format!("CHECK ({})", strip_nested(&expr));
    }
    format!("CHECK ({})", deparse(&expr))
}

fn strip_nested(expr: &Expr) -> String {
    match expr {
        Expr::Nested(inner) => strip_nested(inner),
        other => other.to_string(),
    }
}

fn deparse(expr: &Expr) -> String {
    match expr {
        Expr::Nested(inner) => deparse(inner),
        Expr::BinaryOp { left, op, right } => format!("({} {op} {})", deparse(left), deparse(right)),
        Expr::UnaryOp { op: UnaryOperator::Not, expr } => format!("(NOT {})", deparse(expr)),
        Expr::IsNull(inner) => format!("({} IS NULL)", deparse(inner)),
        Expr::IsNotNull(inner) => format!("({} IS NOT NULL)", deparse(inner)),
        Expr::Between { expr, negated, low, high } => format!(
            "(({} {} {}) {} ({} {} {}))",
            deparse(expr),
            if *negated { "<" } else { ">=" },
            deparse(low),
            if *negated { "OR" } else { "AND" },
            deparse(expr),
            if *negated { ">" } else { "<=" },
            deparse(high)
        ),
        other => other.to_string(),
    }
}

/// `FOREIGN KEY (a) REFERENCES p(id) ON DELETE CASCADE`, as pg_get_constraintdef prints it.
pub fn foreign_key_definition(catalog: &Catalog, def: &TableDef, key: &ForeignKey) -> String {
    let columns: Vec<String> = key.columns.iter().map(|&c| quote_ident(&def.columns[c].name)).collect();
    let (parent, parent_columns) = match catalog.table_by_id(key.referenced_table) {
        Some(parent) => (
            quote_ident(&parent.def.name),
            key.referenced_columns.iter().map(|&c| quote_ident(&parent.def.columns[c].name)).collect::<Vec<_>>(),
        ),
        None => ("?".to_string(), Vec::new()),
    };
    let mut text = format!("FOREIGN KEY ({}) REFERENCES {parent}({})", columns.join(", "), parent_columns.join(", "));
    if let Some(action) = key.on_update.sql() {
        text.push_str(&format!(" ON UPDATE {action}"));
    }
    if let Some(action) = key.on_delete.sql() {
        text.push_str(&format!(" ON DELETE {action}"));
    }
    text
}

/// pg_get_constraintdef of a CHECK or FOREIGN KEY constraint.
pub fn definition(catalog: &Catalog, constraint: &ConstraintDef, pretty: bool) -> Option<String> {
    let table = catalog.table_by_id(constraint.table)?;
    Some(match &constraint.kind {
        ConstraintKind::Check { expression } => check_definition(expression, pretty),
        ConstraintKind::ForeignKey(key) => foreign_key_definition(catalog, &table.def, key),
    })
}

/// Resolves a declared foreign key against the catalog.
fn foreign_key(
    catalog: &Catalog,
    path: &SearchPath,
    def: &Arc<TableDef>,
    columns: &[Ident],
    constraint: &ForeignKeyConstraint,
    given: Option<&str>,
) -> Result<ForeignKey, SqlError> {
    if constraint.match_kind.is_some_and(|m| !matches!(m, ast::ConstraintReferenceMatchKind::Simple)) {
        return Err(SqlError::unsupported("MATCH FULL and MATCH PARTIAL"));
    }
    if constraint.characteristics.as_ref().is_some_and(|c| c.deferrable == Some(true) || c.initially.is_some()) {
        return Err(SqlError::unsupported("DEFERRABLE foreign keys"));
    }
    let parent_name = qualified_name(&constraint.foreign_table)?;
    let found = catalog.find_table(path, &parent_name);
    // The table being created is not in the catalog yet: a name that finds
    // no other table and is its own refers to itself.
    let parent: Arc<TableDef> = match found {
        Some(entry) if entry.def.id != def.id => Arc::clone(&entry.def),
        None if parent_name.name != def.name => return Err(SqlError::undefined_table(&parent_name.to_string())),
        _ => Arc::clone(def),
    };
    let columns = column_indexes(def, columns)?;
    let referenced_columns = if constraint.referred_columns.is_empty() {
        if parent.primary_key.is_empty() {
            return Err(SqlError::new(
                sqlstate::INVALID_FOREIGN_KEY,
                format!("there is no primary key for referenced table \"{}\"", parent.name),
            ));
        }
        parent.primary_key.clone()
    } else {
        column_indexes(&parent, &constraint.referred_columns)?
    };
    if columns.len() != referenced_columns.len() {
        return Err(SqlError::new(
            sqlstate::INVALID_FOREIGN_KEY,
            "number of referencing and referenced columns for foreign key disagree",
        ));
    }
    if referenced_index(&parent, &referenced_columns).is_none() {
        return Err(SqlError::new(
            sqlstate::INVALID_FOREIGN_KEY,
            format!("there is no unique constraint matching given keys for referenced table \"{}\"", parent.name),
        ));
    }
    for (&child, &referenced) in columns.iter().zip(&referenced_columns) {
        let (child_ty, parent_ty) = (def.columns[child].ty, parent.columns[referenced].ty);
        if !key_compatible(child_ty, parent_ty) {
            let names: Vec<&str> = columns.iter().map(|&c| def.columns[c].name.as_str()).collect();
            let name = given.map_or_else(|| format!("{}_{}_fkey", def.name, names.join("_")), str::to_string);
            return Err(SqlError::new(
                sqlstate::DATATYPE_MISMATCH,
                format!("foreign key constraint \"{name}\" cannot be implemented"),
            )
            .with_detail(format!(
                "Key columns \"{}\" and \"{}\" are of incompatible types: {child_ty} and {parent_ty}.",
                def.columns[child].name, parent.columns[referenced].name
            )));
        }
    }
    let action = |action: Option<ast::ReferentialAction>, what: &str| match action {
        None | Some(ast::ReferentialAction::NoAction) => Ok(ReferentialAction::NoAction),
        Some(ast::ReferentialAction::Restrict) => Ok(ReferentialAction::Restrict),
        Some(ast::ReferentialAction::Cascade) if what == "DELETE" => Ok(ReferentialAction::Cascade),
        Some(ast::ReferentialAction::SetNull) if what == "DELETE" => Ok(ReferentialAction::SetNull),
        Some(other) => Err(SqlError::unsupported(format_args!("ON {what} {other}"))),
    };
    Ok(ForeignKey {
        columns,
        referenced_table: parent.id,
        referenced_columns,
        on_delete: action(constraint.on_delete, "DELETE")?,
        on_update: action(constraint.on_update, "UPDATE")?,
    })
}

/// Whether a value of type `child` can be looked up in an index on `parent`:
/// integers of any width, numerics, floats and strings among themselves;
/// blank-padded char(n) not at all (its stored values keep the padding).
fn key_compatible(child: SqlType, parent: SqlType) -> bool {
    use SqlType::*;
    match (child, parent) {
        (Char(_), _) | (_, Char(_)) => false,
        (Int2 | Int4 | Int8, Int2 | Int4 | Int8) => true,
        (Text | Varchar(_), Text | Varchar(_)) => true,
        (Numeric { .. }, Numeric { .. }) | (Float4 | Float8, Float4 | Float8) => true,
        (a, b) => a == b,
    }
}

fn column_indexes(def: &TableDef, names: &[Ident]) -> Result<Vec<usize>, SqlError> {
    names
        .iter()
        .map(|ident| {
            let name = normalize(ident);
            def.column_index(&name).ok_or_else(|| {
                SqlError::new(
                    sqlstate::UNDEFINED_COLUMN,
                    format!("column \"{name}\" referenced in foreign key constraint does not exist"),
                )
            })
        })
        .collect()
}

/// The unique index of `parent` whose columns are exactly `columns` (in any order).
pub fn referenced_index<'a>(parent: &'a TableDef, columns: &[usize]) -> Option<&'a IndexDef> {
    let mut wanted = columns.to_vec();
    wanted.sort_unstable();
    parent.indexes.iter().find(|index| {
        let mut have = index.columns.clone();
        have.sort_unstable();
        index.unique && have == wanted
    })
}

/// The Arrow schema of a table's rows as statements write them (every column nullable).
pub fn table_schema(def: &TableDef) -> SchemaRef {
    let fields: Vec<Field> = def.columns.iter().map(|c| Field::new(&c.name, c.ty.arrow_type(), true)).collect();
    Arc::new(Schema::new(fields))
}

/// A CHECK expression compiled for batches of the table's rows.
fn compile(planner: &Planner, def: &TableDef, expression: &str) -> Result<Arc<dyn PhysicalExpr>, SqlError> {
    let schema = DFSchema::try_from_qualified_schema(def.name.as_str(), &table_schema(def))?;
    planner.physical_expr(parse_expr(expression)?, &schema)
}

/// The rows of `batch` (table columns) for which `check` is false.
fn failing_rows(check: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<Vec<usize>, SqlError> {
    let result = check.evaluate(batch)?.into_array(batch.num_rows())?;
    let result = datafusion::arrow::compute::cast(&result, &datafusion::arrow::datatypes::DataType::Boolean)
        .map_err(|e| SqlError::from_arrow(&e))?;
    let result = result.as_boolean();
    Ok((0..batch.num_rows()).filter(|&row| result.is_valid(row) && !result.value(row)).collect())
}

/// `(1, abc, null)`: a row as PostgreSQL's "Failing row contains" shows it.
fn row_text(batch: &RecordBatch, row: usize) -> String {
    let values: Vec<String> = batch.columns().iter().map(|column| value_text(column, row)).collect();
    format!("({})", values.join(", "))
}

fn value_text(column: &ArrayRef, row: usize) -> String {
    if column.is_null(row) {
        return "null".to_string();
    }
    array_value_to_string(column, row).unwrap_or_default()
}

fn check_violation(def: &TableDef, name: &str, batch: &RecordBatch, row: usize) -> SqlError {
    SqlError::new(
        sqlstate::CHECK_VIOLATION,
        format!("new row for relation \"{}\" violates check constraint \"{name}\"", def.name),
    )
    .with_detail(format!("Failing row contains {}.", row_text(batch, row)))
}

/// The rows of a table as batches of its columns, a page chain at a time,
/// as the transaction sees them.
pub(crate) struct StoredBatches {
    snapshot: crate::heap::Snapshot,
    schema: SchemaRef,
    decoder: RowDecoder,
    next: Option<borealis_storage::ids::PageId>,
}

impl StoredBatches {
    pub(crate) fn new(writes: &WriteSet, def: &TableDef) -> StoredBatches {
        let outputs = (0..def.columns.len()).map(OutputColumn::Stored).collect();
        StoredBatches {
            snapshot: writes.snapshot(),
            schema: table_schema(def),
            decoder: RowDecoder::new(def.types(), outputs),
            next: Some(def.first_page),
        }
    }

    /// The next batch of about [`crate::provider::SCAN_BATCH_ROWS`] rows; None at the end.
    pub(crate) async fn next(&mut self) -> Result<Option<RecordBatch>, SqlError> {
        while let Some(id) = self.next {
            let page = self.snapshot.page(id).await?;
            for (_, tuple) in page.tuples() {
                self.decoder.append(tuple, 0)?;
            }
            self.next = page.next_page();
            if self.decoder.rows() >= crate::provider::SCAN_BATCH_ROWS {
                break;
            }
        }
        if self.decoder.rows() == 0 {
            return Ok(None);
        }
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), self.decoder.finish()?);
        Ok(Some(batch.map_err(|e| SqlError::from_arrow(&e))?))
    }
}

/// Checks a new CHECK constraint against the rows already in the table.
async fn validate_check(
    writes: &WriteSet,
    def: &TableDef,
    name: &str,
    check: &Arc<dyn PhysicalExpr>,
) -> Result<(), SqlError> {
    let mut batches = StoredBatches::new(writes, def);
    while let Some(batch) = batches.next().await? {
        if !failing_rows(check, &batch)?.is_empty() {
            return Err(SqlError::new(
                sqlstate::CHECK_VIOLATION,
                format!("check constraint \"{name}\" of relation \"{}\" is violated by some row", def.name),
            ));
        }
    }
    Ok(())
}

/// Checks every CHECK constraint of table `def` against its rows (after
/// ALTER COLUMN TYPE rewrote them): each must still compile and hold.
pub(crate) async fn validate_checks(
    writes: &WriteSet,
    planner: &Planner,
    catalog: &Catalog,
    def: &TableDef,
) -> Result<(), SqlError> {
    for constraint in catalog.constraints_of(def.id) {
        if let ConstraintKind::Check { expression } = &constraint.def.kind {
            let check = compile(planner, def, expression)?;
            validate_check(writes, def, &constraint.def.name, &check).await?;
        }
    }
    Ok(())
}

/// Checks a new foreign key against the rows already in the table.
async fn validate_foreign_key(
    writes: &WriteSet,
    catalog: &Catalog,
    def: &Arc<TableDef>,
    name: &str,
    key: &ForeignKey,
) -> Result<(), SqlError> {
    let checker = ReferenceCheck::new(catalog, def, name, key)?;
    let mut batches = StoredBatches::new(writes, def);
    while let Some(batch) = batches.next().await? {
        checker.check(writes, &batch).await?;
    }
    Ok(())
}

/// One foreign key, checked from its referencing table.
struct ReferenceCheck {
    name: String,
    table: String,
    columns: Vec<(usize, String)>,
    parent_name: String,
    /// Per column of the referenced index, in its order: the referencing
    /// column and the referenced column's type.
    key_parts: Vec<(usize, SqlType)>,
    root: borealis_storage::ids::PageId,
    /// The referenced table's first page (its key locks are taken under it).
    parent_first: borealis_storage::ids::PageId,
}

impl ReferenceCheck {
    fn new(catalog: &Catalog, def: &Arc<TableDef>, name: &str, key: &ForeignKey) -> Result<ReferenceCheck, SqlError> {
        let parent: Arc<TableDef> = if key.referenced_table == def.id {
            Arc::clone(def)
        } else {
            Arc::clone(
                &catalog
                    .table_by_id(key.referenced_table)
                    .ok_or_else(|| SqlError::internal(format_args!("foreign key {name} references a missing table")))?
                    .def,
            )
        };
        let index = referenced_index(&parent, &key.referenced_columns)
            .ok_or_else(|| SqlError::internal(format_args!("foreign key {name} lost its referenced index")))?;
        let key_parts = index
            .columns
            .iter()
            .map(|column| {
                let at = key.referenced_columns.iter().position(|c| c == column).expect("index has the key's columns");
                (key.columns[at], parent.columns[*column].ty)
            })
            .collect();
        Ok(ReferenceCheck {
            name: name.to_string(),
            table: def.name.clone(),
            columns: key.columns.iter().map(|&c| (c, def.columns[c].name.clone())).collect(),
            parent_name: parent.name.clone(),
            key_parts,
            root: index.root,
            parent_first: parent.first_page,
        })
    }

    /// 23503 unless every row of `batch` (table columns) with a complete key finds it.
    async fn check(&self, writes: &WriteSet, batch: &RecordBatch) -> Result<(), SqlError> {
        'rows: for row in 0..batch.num_rows() {
            let mut key = Vec::new();
            for &(column, ty) in &self.key_parts {
                let array = batch.column(column);
                if array.is_null(row) {
                    continue 'rows;
                }
                let value = ScalarValue::try_from_array(array, row)?;
                match scalar_key(ty, &value) {
                    Some(part) => key.extend_from_slice(&part),
                    None => return Err(self.violation(batch, row)),
                }
            }
            // The parent's key may not go (or change) until this transaction ends.
            let tag = LockTag::Key { table: self.parent_first, index: self.root, key };
            writes.lock(tag.clone(), LockMode::Share)?;
            let LockTag::Key { key, .. } = tag else { unreachable!("built above") };
            if !btree::contains(writes, self.root, &key).await? {
                return Err(self.violation(batch, row));
            }
        }
        Ok(())
    }

    fn violation(&self, batch: &RecordBatch, row: usize) -> SqlError {
        let names: Vec<&str> = self.columns.iter().map(|(_, n)| n.as_str()).collect();
        let values: Vec<String> = self.columns.iter().map(|(c, _)| value_text(batch.column(*c), row)).collect();
        SqlError::new(
            sqlstate::FOREIGN_KEY_VIOLATION,
            format!("insert or update on table \"{}\" violates foreign key constraint \"{}\"", self.table, self.name),
        )
        .with_detail(format!(
            "Key ({})=({}) is not present in table \"{}\".",
            names.join(", "),
            values.join(", "),
            self.parent_name
        ))
    }
}

/// The constraints a statement's new rows of one table must satisfy,
/// compiled once per statement.
pub(crate) struct RowChecks {
    def: Arc<TableDef>,
    checks: Vec<(String, Arc<dyn PhysicalExpr>)>,
    references: Vec<ReferenceCheck>,
}

impl RowChecks {
    /// The checks of table `def`; None if it has no CHECK or FOREIGN KEY constraint.
    pub(crate) fn new(
        planner: &Planner,
        catalog: &Catalog,
        def: &Arc<TableDef>,
    ) -> Result<Option<RowChecks>, SqlError> {
        let mut checks = Vec::new();
        let mut references = Vec::new();
        for constraint in catalog.constraints_of(def.id) {
            match &constraint.def.kind {
                ConstraintKind::Check { expression } => {
                    checks.push((constraint.def.name.clone(), compile(planner, def, expression)?));
                }
                ConstraintKind::ForeignKey(key) => {
                    references.push(ReferenceCheck::new(catalog, def, &constraint.def.name, key)?);
                }
            }
        }
        if checks.is_empty() && references.is_empty() {
            return Ok(None);
        }
        Ok(Some(RowChecks { def: Arc::clone(def), checks, references }))
    }

    /// 23514 if a CHECK is false for a row of `batch` (the table's columns,
    /// before the rows are written).
    pub(crate) fn check_values(&self, batch: &RecordBatch) -> Result<(), SqlError> {
        for (name, check) in &self.checks {
            if let Some(&row) = failing_rows(check, batch)?.first() {
                return Err(check_violation(&self.def, name, batch, row));
            }
        }
        Ok(())
    }

    /// 23503 if a row of `batch` references a missing key (after the rows are written).
    pub(crate) async fn check_references(&self, writes: &WriteSet, batch: &RecordBatch) -> Result<(), SqlError> {
        for reference in &self.references {
            reference.check(writes, batch).await?;
        }
        Ok(())
    }
}

/// Rows a statement removed or changed in a table that foreign keys may reference.
enum Removal {
    Deleted {
        def: Arc<TableDef>,
        rows: Vec<Vec<u8>>,
    },
    /// (old, new) tuples of updated rows.
    Updated {
        def: Arc<TableDef>,
        rows: Vec<(Vec<u8>, Vec<u8>)>,
    },
}

/// Whether rows of `def` are referenced by any foreign key (so that DELETE
/// and UPDATE must keep the old rows for [`after_delete`] / [`after_update`]).
pub(crate) fn is_referenced(catalog: &Catalog, def: &TableDef) -> bool {
    catalog.referencing(def.id).next().is_some()
}

/// Enforces the foreign keys referencing `def` after a statement deleted
/// `rows` (their stored tuples) from it.
pub(crate) async fn after_delete(
    writes: &mut WriteSet,
    catalog: &Catalog,
    def: &Arc<TableDef>,
    rows: Vec<Vec<u8>>,
) -> Result<(), SqlError> {
    enforce(writes, catalog, Removal::Deleted { def: Arc::clone(def), rows }).await
}

/// Enforces the foreign keys referencing `def` after a statement updated
/// rows of it (old and new tuples).
pub(crate) async fn after_update(
    writes: &mut WriteSet,
    catalog: &Catalog,
    def: &Arc<TableDef>,
    rows: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<(), SqlError> {
    enforce(writes, catalog, Removal::Updated { def: Arc::clone(def), rows }).await
}

/// A NO ACTION check left for the end of the statement: the keys that went
/// from a referenced table, looked up again once every cascade has run.
struct Deferred {
    parent: Arc<TableDef>,
    child: Arc<TableDef>,
    name: String,
    key: ForeignKey,
    gone: Vec<Vec<ScalarValue>>,
}

async fn enforce(writes: &mut WriteSet, catalog: &Catalog, first: Removal) -> Result<(), SqlError> {
    let mut queue = VecDeque::from([first]);
    let mut deferred = Vec::new();
    let mut cascaded_rows = 0usize;
    while let Some(removal) = queue.pop_front() {
        let (def, removed, deleting) = match removal {
            Removal::Deleted { def, rows } => (def, rows, true),
            Removal::Updated { def, rows } => {
                let kept = rows.into_iter().map(|(old, _)| old).collect();
                (def, kept, false)
            }
        };
        let references: Vec<(String, TableId, ForeignKey)> =
            catalog.referencing(def.id).map(|(c, key)| (c.def.name.clone(), c.def.table, key.clone())).collect();
        for (name, table, key) in references {
            let child = catalog
                .table_by_id(table)
                .ok_or_else(|| SqlError::internal(format_args!("foreign key {name} on a missing table")))?;
            let child = Arc::clone(&child.def);
            let gone = gone_keys(writes, &def, &key, &removed).await?;
            if gone.is_empty() {
                continue;
            }
            let action = if deleting { key.on_delete } else { key.on_update };
            if action == ReferentialAction::NoAction {
                deferred.push(Deferred { parent: Arc::clone(&def), child, name, key, gone });
                continue;
            }
            let found = referencing_rows(writes, &child, &key, &gone).await?;
            let Some((_, tuple)) = found.first() else { continue };
            match action {
                ReferentialAction::NoAction | ReferentialAction::Restrict => {
                    return Err(still_referenced(&def, &child, &name, &key, tuple)?);
                }
                ReferentialAction::Cascade => {
                    let mut rows = Vec::with_capacity(found.len());
                    for (address, tuple) in found {
                        index::delete_row(writes, &child, &tuple, address).await?;
                        writes.delete(child.first_page, address).await?;
                        rows.push(tuple);
                    }
                    cascaded_rows += rows.len();
                    queue.push_back(Removal::Deleted { def: child, rows });
                }
                ReferentialAction::SetNull => {
                    let rows = set_null(writes, &child, &key, found).await?;
                    cascaded_rows += rows.len();
                    queue.push_back(Removal::Updated { def: child, rows });
                }
            }
            if cascaded_rows > CASCADE_ROWS_MAX {
                return Err(SqlError::new(
                    sqlstate::PROGRAM_LIMIT_EXCEEDED,
                    format!("a statement may cascade to at most {CASCADE_ROWS_MAX} rows"),
                ));
            }
        }
    }
    for check in deferred {
        let found = referencing_rows(writes, &check.child, &check.key, &check.gone).await?;
        if let Some((_, tuple)) = found.first() {
            return Err(still_referenced(&check.parent, &check.child, &check.name, &check.key, tuple)?);
        }
    }
    Ok(())
}

/// The referenced-column values of removed rows whose key no row of the
/// table holds any more, deduplicated; complete keys only (no NULL).
async fn gone_keys(
    writes: &WriteSet,
    parent: &TableDef,
    key: &ForeignKey,
    removed: &[Vec<u8>],
) -> Result<Vec<Vec<ScalarValue>>, SqlError> {
    let index = referenced_index(parent, &key.referenced_columns)
        .ok_or_else(|| SqlError::internal("foreign key lost its referenced index"))?;
    let types = parent.types();
    let outputs = key.referenced_columns.iter().map(|&c| OutputColumn::Stored(c)).collect();
    let mut decoder = RowDecoder::new(types.clone(), outputs);
    let mut keys = Vec::new();
    let mut seen = HashSet::new();
    for tuple in removed {
        let (index_key, has_null) = row_key(&types, &index.columns, tuple)?;
        if has_null || !seen.insert(index_key.clone()) || btree::contains(writes, index.root, &index_key).await? {
            continue;
        }
        decoder.append(tuple, 0)?;
    }
    let arrays = decoder.finish()?;
    let rows = arrays.first().map_or(0, |a| a.len());
    for row in 0..rows {
        keys.push(arrays.iter().map(|a| ScalarValue::try_from_array(a, row)).collect::<Result<Vec<_>, _>>()?);
    }
    Ok(keys)
}

/// The rows of `child` whose key columns equal one of `keys` (referenced
/// values, pairwise with `key.columns`): through an index of `child` that
/// starts with the key columns, else by one scan of its heap.
async fn referencing_rows(
    writes: &WriteSet,
    child: &TableDef,
    key: &ForeignKey,
    keys: &[Vec<ScalarValue>],
) -> Result<Vec<(RowAddress, Vec<u8>)>, SqlError> {
    let encode = |values: &[ScalarValue], order: &[usize]| -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for &column in order {
            let at = key.columns.iter().position(|c| *c == column)?;
            out.extend_from_slice(&scalar_key(child.columns[column].ty, &values[at])?);
        }
        Some(out)
    };
    let width = key.columns.len();
    let leading = child.indexes.iter().find(|index| {
        index.columns.len() >= width && {
            let mut have = index.columns[..width].to_vec();
            let mut want = key.columns.clone();
            have.sort_unstable();
            want.sort_unstable();
            have == want
        }
    });
    let mut found = Vec::new();
    if let Some(index) = leading {
        let order = &index.columns[..width];
        let mut addresses = Vec::new();
        for values in keys {
            // A value the child's column type cannot hold matches no child row.
            let Some(prefix) = encode(values, order) else { continue };
            btree::scan(writes, index.root, &KeyRange::prefix(prefix), |entry| {
                addresses.push(btree::entry_address(entry)?);
                Ok(true)
            })
            .await?;
        }
        for address in addresses {
            let page = writes.page(address.page).await?;
            if let Some(tuple) = page.tuple(address.slot) {
                found.push((address, tuple.to_vec()));
            }
        }
        return Ok(found);
    }
    let wanted: HashSet<Vec<u8>> = keys.iter().filter_map(|values| encode(values, &key.columns)).collect();
    let types = child.types();
    writes
        .snapshot()
        .for_each_tuple(child.first_page, |address, tuple| {
            let (row_key, has_null) = row_key(&types, &key.columns, tuple)?;
            if !has_null && wanted.contains(&row_key) {
                found.push((address, tuple.to_vec()));
            }
            Ok(())
        })
        .await?;
    Ok(found)
}

/// 23503 for a referenced row that goes while `tuple` of `child` references it.
fn still_referenced(
    parent: &TableDef,
    child: &TableDef,
    name: &str,
    key: &ForeignKey,
    tuple: &[u8],
) -> Result<SqlError, SqlError> {
    let outputs = key.columns.iter().map(|&c| OutputColumn::Stored(c)).collect();
    let mut decoder = RowDecoder::new(child.types(), outputs);
    decoder.append(tuple, 0)?;
    let values: Vec<String> = decoder.finish()?.iter().map(|a| value_text(a, 0)).collect();
    let names: Vec<&str> = key.referenced_columns.iter().map(|&c| parent.columns[c].name.as_str()).collect();
    Ok(SqlError::new(
        sqlstate::FOREIGN_KEY_VIOLATION,
        format!(
            "update or delete on table \"{}\" violates foreign key constraint \"{name}\" on table \"{}\"",
            parent.name, child.name
        ),
    )
    .with_detail(format!(
        "Key ({})=({}) is still referenced from table \"{}\".",
        names.join(", "),
        values.join(", "),
        child.name
    )))
}

/// ON DELETE SET NULL: clears the key columns of `rows` of `child`; returns (old, new) tuples.
async fn set_null(
    writes: &mut WriteSet,
    child: &TableDef,
    key: &ForeignKey,
    rows: Vec<(RowAddress, Vec<u8>)>,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, SqlError> {
    for &column in &key.columns {
        if !child.columns[column].nullable {
            return Err(SqlError::new(
                sqlstate::NOT_NULL_VIOLATION,
                format!(
                    "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                    child.columns[column].name, child.name
                ),
            ));
        }
    }
    let outputs = (0..child.columns.len()).map(OutputColumn::Stored).collect();
    let mut decoder = RowDecoder::new(child.types(), outputs);
    for (_, tuple) in &rows {
        decoder.append(tuple, 0)?;
    }
    let mut arrays: Vec<ArrayRef> = decoder.finish()?;
    for &column in &key.columns {
        arrays[column] = new_null_array(arrays[column].data_type(), rows.len());
    }
    let mut changed = Vec::with_capacity(rows.len());
    let mut pending = Vec::new();
    for (row, (address, old)) in rows.into_iter().enumerate() {
        let new = encode_row(child, &arrays, row)?;
        let moved_to = writes.update(child.first_page, address, new.clone()).await?;
        pending.extend(index::update_row(writes, child, (&old, address), (&new, moved_to)).await?);
        changed.push((old, new));
    }
    index::add_pending(writes, child, pending).await?;
    Ok(changed)
}

/// 2BP01 unless every table referencing one of `dropped` is dropped too;
/// with `cascade`, the foreign keys of tables that stay are dropped instead.
pub(crate) async fn drop_dependents(
    writes: &mut WriteSet,
    catalog: &Catalog,
    dropped: &[CatalogEntry],
    cascade: bool,
) -> Result<(), SqlError> {
    let is_dropped = |id: TableId| dropped.iter().any(|e| e.def.id == id);
    for entry in dropped {
        for constraint in catalog.constraints_of(entry.def.id) {
            catalog::drop_constraint(writes, constraint).await?;
        }
    }
    for entry in dropped {
        for (constraint, _) in catalog.referencing(entry.def.id) {
            if is_dropped(constraint.def.table) {
                continue;
            }
            let child = catalog.table_by_id(constraint.def.table).map_or("?", |c| c.def.name.as_str());
            if !cascade {
                return Err(SqlError::new(
                    sqlstate::DEPENDENT_OBJECTS_STILL_EXIST,
                    format!("cannot drop table {} because other objects depend on it", entry.def.name),
                )
                .with_detail(format!(
                    "constraint {} on table {child} depends on table {}",
                    constraint.def.name, entry.def.name
                )));
            }
            tracing::debug!(constraint = %constraint.def.name, table = %child, "DROP TABLE CASCADE drops a foreign key");
            catalog::drop_constraint(writes, constraint).await?;
        }
    }
    Ok(())
}

/// 0A000 if a table referenced by a foreign key is truncated without its referencing table.
pub(crate) fn refuse_truncate(catalog: &Catalog, truncated: &[&CatalogEntry]) -> Result<(), SqlError> {
    for entry in truncated {
        for (constraint, _) in catalog.referencing(entry.def.id) {
            if truncated.iter().any(|e| e.def.id == constraint.def.table) {
                continue;
            }
            let child = catalog.table_by_id(constraint.def.table).map_or("?", |c| c.def.name.as_str());
            return Err(SqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "cannot truncate a table referenced in a foreign key constraint",
            )
            .with_detail(format!("Table \"{child}\" references \"{}\".", entry.def.name)));
        }
    }
    Ok(())
}

/// ALTER TABLE DROP CONSTRAINT of a CHECK or FOREIGN KEY constraint; false
/// if the table has no such constraint.
pub(crate) async fn drop_named(
    writes: &mut WriteSet,
    catalog: &Catalog,
    def: &TableDef,
    name: &str,
) -> Result<bool, SqlError> {
    match catalog.constraints_of(def.id).find(|c| c.def.name == name) {
        Some(constraint) => {
            catalog::drop_constraint(writes, constraint).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_definitions_parenthesize_as_postgres() {
        assert_eq!(check_definition("x > 0", false), "CHECK ((x > 0))");
        assert_eq!(check_definition("x > 0", true), "CHECK (x > 0)");
        assert_eq!(check_definition("(a > 0) AND b < 10", false), "CHECK (((a > 0) AND (b < 10)))");
        assert_eq!(check_definition("a IS NOT NULL", false), "CHECK ((a IS NOT NULL))");
    }

    #[test]
    fn names_take_a_free_suffix() {
        let taken = vec!["t_x_check".to_string(), "t_x_check1".to_string()];
        assert_eq!(choose_name(&taken, "t_x_check"), "t_x_check2");
        assert_eq!(choose_name(&taken, "t_check"), "t_check");
    }
}
