//! Choosing an access path: from the filters DataFusion pushes into a table
//! scan, which index (if any) to read and which key ranges of it.
//!
//! Usable filters compare an indexed column with a literal: `=`, `<`, `<=`,
//! `>`, `>=`, `BETWEEN` and `IN (...)`. An index is usable when its leading
//! columns have equalities (any number, each one value or an IN list) and
//! optionally the next one a range. Bounds are inclusive even for `<` and
//! `>`: the ranges only have to contain every matching row, because
//! DataFusion still applies every filter to the rows (the pushdown is
//! `Inexact`). NULLs never satisfy a comparison and sort last in an index, so
//! a range with an upper bound excludes them.

use crate::btree::KeyRange;
use crate::catalog::TableDef;
use crate::keys::scalar_key;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::expr::{InList, Placeholder};
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use std::collections::HashMap;

/// Most key ranges one scan will probe (products of IN lists over several columns).
const RANGES_MAX: usize = 1024;

/// An index scan: the index (position in the table's indexes) and its ranges in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexChoice {
    pub index: usize,
    pub ranges: Vec<KeyRange>,
}

/// What one filter says about one column (encoded keys, marker included).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Constraint {
    Equal(Vec<Vec<u8>>),
    AtLeast(Vec<u8>),
    AtMost(Vec<u8>),
    Between(Vec<u8>, Vec<u8>),
}

/// The conjunction of the constraints on one column.
#[derive(Clone, Debug, Default)]
struct Bounds {
    equal: Option<Vec<Vec<u8>>>,
    low: Option<Vec<u8>>,
    high: Option<Vec<u8>>,
}

impl Bounds {
    fn add(&mut self, constraint: Constraint) {
        match constraint {
            Constraint::Equal(values) => {
                if self.equal.as_ref().is_none_or(|current| values.len() < current.len()) {
                    self.equal = Some(values);
                }
            }
            Constraint::AtLeast(low) => self.raise_low(low),
            Constraint::AtMost(high) => self.lower_high(high),
            Constraint::Between(low, high) => {
                self.raise_low(low);
                self.lower_high(high);
            }
        }
    }

    fn raise_low(&mut self, low: Vec<u8>) {
        if self.low.as_ref().is_none_or(|current| low > *current) {
            self.low = Some(low);
        }
    }

    fn lower_high(&mut self, high: Vec<u8>) {
        if self.high.as_ref().is_none_or(|current| high < *current) {
            self.high = Some(high);
        }
    }
}

/// Whether `filter` could narrow a scan of `def` through one of its indexes.
/// A typed parameter (`$1`) counts as the value it will be bound to: a
/// prepared statement's plan is optimised before its values are known (see
/// `Session::read`), and its scan chooses the index once they are.
pub fn is_usable(def: &TableDef, filter: &Expr) -> bool {
    let sample = sample_values(filter);
    constraint(def, &sample).is_some_and(|(column, _)| def.indexes.iter().any(|index| index.columns.contains(&column)))
}

/// `filter` with each typed parameter replaced by a value of its type.
fn sample_values(filter: &Expr) -> Expr {
    filter
        .clone()
        .transform(|expr| {
            if let Expr::Placeholder(Placeholder { field: Some(field), .. }) = &expr
                && let Ok(value) = ScalarValue::new_default(field.data_type())
            {
                return Ok(Transformed::yes(Expr::Literal(value, None)));
            }
            Ok(Transformed::no(expr))
        })
        .map_or_else(|_| filter.clone(), |transformed| transformed.data)
}

/// The best index scan for `filters`, or None for a full scan.
pub fn choose(def: &TableDef, filters: &[Expr]) -> Option<IndexChoice> {
    let mut bounds: HashMap<usize, Bounds> = HashMap::new();
    for (column, constraint) in filters.iter().filter_map(|filter| constraint(def, filter)) {
        bounds.entry(column).or_default().add(constraint);
    }
    if bounds.is_empty() {
        return None;
    }
    let mut best: Option<(usize, IndexChoice)> = None;
    for (position, index) in def.indexes.iter().enumerate() {
        let Some((equal_columns, ranges)) = ranges_for(&index.columns, &bounds) else { continue };
        // A unique index fully bound by equalities finds at most one row per value.
        let point = index.unique && equal_columns == index.columns.len();
        let score = usize::from(point) * 1000 + equal_columns * 2 + usize::from(equal_columns < index.columns.len());
        if best.as_ref().is_none_or(|(best_score, _)| score > *best_score) {
            best = Some((score, IndexChoice { index: position, ranges }));
        }
    }
    best.map(|(_, choice)| choice)
}

/// Ranges of an index on `columns` under `bounds`, and how many leading
/// columns are bound by equalities; None if the leading column is unbound.
fn ranges_for(columns: &[usize], bounds: &HashMap<usize, Bounds>) -> Option<(usize, Vec<KeyRange>)> {
    let mut prefixes: Vec<Vec<u8>> = vec![Vec::new()];
    let mut equal_columns = 0;
    for column in columns {
        let Some(bound) = bounds.get(column) else { break };
        if let Some(values) = &bound.equal
            && prefixes.len() * values.len() <= RANGES_MAX
        {
            let mut values = values.clone();
            values.sort_unstable();
            values.dedup();
            prefixes = prefixes.iter().flat_map(|p| values.iter().map(move |v| [p.as_slice(), v].concat())).collect();
            equal_columns += 1;
            continue;
        }
        if bound.low.is_none() && bound.high.is_none() {
            break;
        }
        let ranges = prefixes
            .iter()
            .map(|prefix| KeyRange {
                low: [prefix.as_slice(), bound.low.as_deref().unwrap_or_default()].concat(),
                high: match (&bound.high, prefix.is_empty()) {
                    (Some(high), _) => Some([prefix.as_slice(), high].concat()),
                    (None, true) => None,
                    (None, false) => Some(prefix.clone()),
                },
            })
            .collect();
        return Some((equal_columns, ranges));
    }
    if equal_columns == 0 {
        return None;
    }
    Some((equal_columns, prefixes.into_iter().map(KeyRange::prefix).collect()))
}

/// The column and constraint of a filter of the usable forms.
fn constraint(def: &TableDef, filter: &Expr) -> Option<(usize, Constraint)> {
    let key = |column: &Expr, value: &Expr| -> Option<(usize, Vec<u8>)> {
        let (Expr::Column(column), Expr::Literal(value, _)) = (column, value) else { return None };
        let index = def.column_index(&column.name)?;
        Some((index, scalar_key(def.columns[index].ty, value)?))
    };
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (column, key, op) = match key(left, right) {
                Some((column, key)) => (column, key, *op),
                None => {
                    let (column, key) = key(right, left)?;
                    (column, key, op.swap()?)
                }
            };
            let constraint = match op {
                Operator::Eq => Constraint::Equal(vec![key]),
                Operator::Lt | Operator::LtEq => Constraint::AtMost(key),
                Operator::Gt | Operator::GtEq => Constraint::AtLeast(key),
                _ => return None,
            };
            Some((column, constraint))
        }
        Expr::Between(Between { expr, negated: false, low, high }) => {
            let (column, low) = key(expr, low)?;
            let (_, high) = key(expr, high)?;
            Some((column, Constraint::Between(low, high)))
        }
        Expr::InList(InList { expr, list, negated: false }) if list.len() <= RANGES_MAX => {
            let mut column = None;
            let mut values = Vec::with_capacity(list.len());
            for item in list {
                let (index, value) = key(expr, item)?;
                column = Some(index);
                values.push(value);
            }
            Some((column?, Constraint::Equal(values)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ColumnDef, IndexDef, TableId};
    use crate::types::SqlType;
    use borealis_storage::ids::PageId;
    use datafusion::common::ScalarValue;
    use datafusion::prelude::{col, lit};

    fn table() -> TableDef {
        let column = |name: &str, ty| ColumnDef::new(name, ty, true);
        let index = |name: &str, columns: Vec<usize>, unique| IndexDef {
            name: name.into(),
            columns,
            unique,
            primary: false,
            root: PageId(9),
        };
        TableDef {
            id: TableId(1),
            name: "t".into(),
            columns: vec![column("a", SqlType::Int4), column("b", SqlType::Text), column("c", SqlType::Int8)],
            primary_key: vec![0],
            indexes: vec![index("t_pkey", vec![0], true), index("t_b_c_idx", vec![1, 2], false)],
            first_page: PageId(2),
            dropped_attnums: Vec::new(),
        }
    }

    fn int4(v: i32) -> Vec<u8> {
        scalar_key(SqlType::Int4, &ScalarValue::Int32(Some(v))).unwrap()
    }

    #[test]
    fn equality_on_the_primary_key_is_a_point_lookup() {
        let choice = choose(&table(), &[col("a").eq(lit(5i32)), col("c").gt(lit(1i64))]).unwrap();
        assert_eq!(choice, IndexChoice { index: 0, ranges: vec![KeyRange::prefix(int4(5))] });
        // Literal on the left, and of a wider type.
        let choice = choose(&table(), &[lit(5i64).eq(col("a"))]).unwrap();
        assert_eq!(choice.ranges, vec![KeyRange::prefix(int4(5))]);
    }

    #[test]
    fn ranges_in_lists_and_composite_prefixes() {
        let def = table();
        let between = choose(&def, &[col("a").between(lit(3i32), lit(7i32))]).unwrap();
        assert_eq!(between.ranges, vec![KeyRange { low: int4(3), high: Some(int4(7)) }]);
        let open = choose(&def, &[col("a").gt(lit(3i32)), col("a").gt_eq(lit(4i32))]).unwrap();
        assert_eq!(open.ranges, vec![KeyRange { low: int4(4), high: None }], "the tighter bound wins");
        let list = choose(&def, &[col("a").in_list(vec![lit(9i32), lit(2i32), lit(9i32)], false)]).unwrap();
        assert_eq!(list.ranges, vec![KeyRange::prefix(int4(2)), KeyRange::prefix(int4(9))]);
        let text = scalar_key(SqlType::Text, &ScalarValue::from("x")).unwrap();
        let int8 = |v| scalar_key(SqlType::Int8, &ScalarValue::Int64(Some(v))).unwrap();
        let composite = choose(&def, &[col("b").eq(lit("x")), col("c").lt(lit(10i64))]).unwrap();
        assert_eq!(composite.index, 1);
        assert_eq!(composite.ranges, vec![KeyRange { low: text.clone(), high: Some([text, int8(10)].concat()) }]);
    }

    #[test]
    fn unusable_filters_leave_a_full_scan() {
        let def = table();
        assert_eq!(choose(&def, &[col("c").eq(lit(1i64))]), None, "c is not a leading column");
        assert_eq!(choose(&def, &[col("a").not_eq(lit(1i32))]), None);
        assert_eq!(choose(&def, &[col("a").eq(lit(1.5f64))]), None, "lossy literal");
        assert_eq!(choose(&def, &[col("a").in_list(vec![lit(1i32)], true)]), None);
        assert!(!is_usable(&def, &(col("a") + lit(1i32)).eq(lit(2i32))));
        assert!(is_usable(&def, &col("c").eq(lit(1i64))), "c is in an index");
    }
}
