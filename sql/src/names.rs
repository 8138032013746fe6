//! PostgreSQL's names for result columns.
//!
//! DataFusion names an unaliased output column after its whole expression
//! (`count(*)`, `t.a + Int64(1)`); PostgreSQL names it after the function
//! (`count`), the column (`a`), the cast type of a literal (`int4`), or
//! `?column?`. Clients and ORMs read rows by these names, so results are
//! renamed to PostgreSQL's before they leave the engine. Aliased columns and
//! `*` keep their names.

use crate::error::SqlError;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{
    CastKind, DataType as SqlType, Expr, ObjectNamePart, Query, SelectItem, SetExpr, Statement,
};
use std::sync::Arc;

/// The name PostgreSQL gives each output column of `statement`, or None when
/// DataFusion's names should stand (not a plain SELECT, or a `*` item whose
/// expansion we do not track).
pub fn postgres_column_names(statement: &Statement) -> Option<Vec<Option<String>>> {
    let Statement::Query(query) = statement else { return None };
    select_names(query)
}

/// [`postgres_column_names`]; when two output columns would have one name
/// (`SELECT x, x::text`), which PostgreSQL allows and DataFusion refuses,
/// or a cast of a column is sorted by that column (`SELECT x::int8 ...
/// ORDER BY x`: DataFusion names the cast as the column it adds to sort),
/// the unnamed ones get distinct internal aliases, and the names returned
/// put PostgreSQL's back on the result.
pub fn postgres_column_names_aliasing(statement: &mut Statement) -> Option<Vec<Option<String>>> {
    let names = postgres_column_names(statement)?;
    let mut seen = std::collections::HashSet::new();
    let duplicated = names.iter().flatten().any(|name| !seen.insert(name.as_str()));
    let Statement::Query(query) = statement else { return Some(names) };
    let sorted = query.order_by.is_some();
    let SetExpr::Select(select) = query.body.as_mut() else { return Some(names) };
    let cast_sorted =
        sorted && select.projection.iter().any(|item| matches!(item, SelectItem::UnnamedExpr(Expr::Cast { .. })));
    if duplicated || cast_sorted {
        for (position, item) in select.projection.iter_mut().enumerate() {
            if let SelectItem::UnnamedExpr(expr) = item {
                let alias = datafusion::sql::sqlparser::ast::Ident::new(format!("__borealis_column_{position}"));
                *item = SelectItem::ExprWithAlias { expr: expr.clone(), alias };
            }
        }
    }
    Some(names)
}

fn select_names(query: &Query) -> Option<Vec<Option<String>>> {
    let select = match query.body.as_ref() {
        SetExpr::Select(select) => select,
        SetExpr::Query(inner) => return select_names(inner),
        _ => return None,
    };
    select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(expr) => Some(Some(expression_name(expr))),
            SelectItem::ExprWithAlias { .. } => Some(None),
            _ => None,
        })
        .collect()
}

/// PostgreSQL's FigureColname, for the expressions we can name.
fn expression_name(expr: &Expr) -> String {
    match expr {
        Expr::Identifier(ident) => folded(ident),
        Expr::CompoundIdentifier(parts) => parts.last().map_or_else(unknown, folded),
        Expr::Function(function) => match function.name.0.last() {
            Some(ObjectNamePart::Identifier(ident)) => ident.value.to_lowercase(),
            _ => unknown(),
        },
        Expr::Nested(inner) => expression_name(inner),
        Expr::Cast { kind: CastKind::DoubleColon | CastKind::Cast, expr, data_type, .. } => match expr.as_ref() {
            Expr::Value(_) => type_name(data_type),
            inner => expression_name(inner),
        },
        Expr::Case { .. } => "case".to_string(),
        Expr::Exists { .. } => "exists".to_string(),
        Expr::Array(_) => "array".to_string(),
        Expr::Extract { .. } => "extract".to_string(),
        Expr::Substring { .. } => "substring".to_string(),
        Expr::Trim { .. } => "btrim".to_string(),
        Expr::Position { .. } => "position".to_string(),
        Expr::Ceil { .. } => "ceil".to_string(),
        Expr::Floor { .. } => "floor".to_string(),
        _ => unknown(),
    }
}

/// An identifier as PostgreSQL names a column after it: folded to lower case unless quoted.
fn folded(ident: &datafusion::sql::sqlparser::ast::Ident) -> String {
    if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() }
}

fn unknown() -> String {
    "?column?".to_string()
}

/// The type name PostgreSQL shows for a cast literal (`'1'::int` is `int4`).
fn type_name(data_type: &SqlType) -> String {
    match data_type {
        SqlType::Int(_) | SqlType::Integer(_) | SqlType::Int4(_) => "int4".into(),
        SqlType::BigInt(_) | SqlType::Int8(_) => "int8".into(),
        SqlType::SmallInt(_) | SqlType::Int2(_) => "int2".into(),
        SqlType::Boolean | SqlType::Bool => "bool".into(),
        SqlType::Double(_) | SqlType::DoublePrecision | SqlType::Float8 => "float8".into(),
        SqlType::Real | SqlType::Float4 => "float4".into(),
        SqlType::Varchar(_) | SqlType::CharacterVarying(_) => "varchar".into(),
        SqlType::Numeric(_) | SqlType::Decimal(_) => "numeric".into(),
        other => other.to_string().to_lowercase(),
    }
}

/// `schema` with the fields renamed where `names` has a name.
pub fn rename(schema: &SchemaRef, names: &[Option<String>]) -> SchemaRef {
    if names.len() != schema.fields().len() || names.iter().all(Option::is_none) {
        return schema.clone();
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(names)
        .map(|(field, name)| match name {
            Some(name) => field.as_ref().clone().with_name(name),
            None => field.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batches` of `schema` with the fields renamed where `names` has a name.
pub fn rename_batches(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    names: Option<Vec<Option<String>>>,
) -> Result<(SchemaRef, Vec<RecordBatch>), SqlError> {
    let Some(names) = names else { return Ok((schema, batches)) };
    let renamed = rename(&schema, &names);
    let batches = batches
        .into_iter()
        .map(|batch| RecordBatch::try_new(renamed.clone(), batch.columns().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SqlError::from_arrow(&e))?;
    Ok((renamed, batches))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn names(sql: &str) -> Option<Vec<Option<String>>> {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        postgres_column_names(&statement)
    }

    #[test]
    fn names_follow_postgres() {
        let got =
            names("SELECT count(*), t.a, b, a + 1, 'x'::int, a::text, CASE WHEN a THEN 1 END, sum(x) AS s FROM t");
        let want = ["count", "a", "b", "?column?", "int4", "a", "case"].map(|s| Some(s.to_string()));
        let mut want = want.to_vec();
        want.push(None);
        assert_eq!(got, Some(want));
    }

    #[test]
    fn unquoted_identifiers_fold_to_lower_case() {
        let want = ["table_cat", "Quoted", "x"].map(|s| Some(s.to_string())).to_vec();
        assert_eq!(names("SELECT result.TABLE_CAT, r.\"Quoted\", X FROM t"), Some(want));
    }

    #[test]
    fn wildcards_and_non_queries_keep_their_names() {
        assert_eq!(names("SELECT *, count(*) FROM t"), None);
        assert_eq!(names("INSERT INTO t VALUES (1)"), None);
        assert_eq!(names("SELECT 1 UNION SELECT 2"), None);
    }
}
