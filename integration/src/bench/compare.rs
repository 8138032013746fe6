//! Comparing query answers between Borealis and PostgreSQL.
//!
//! Answers are fetched as text (simple query protocol) from both systems and
//! compared cell by cell: NULL equals only NULL; two numbers are equal within
//! a tolerance (the systems may print a different scale, e.g. "25.5" and
//! "25.5000000000", or round an average differently in the last digits);
//! other text is equal after trailing blanks are trimmed (char(n) padding).
//! Rows are compared in order first; if only their order differs the answer
//! still counts as right (ties under ORDER BY may come out in either order),
//! and the caller is told so.

use tokio_postgres::{Client, SimpleQueryMessage};

/// Rows of text cells; `None` is SQL NULL.
pub type Rows = Vec<Vec<Option<String>>>;

/// Absolute tolerance for numbers: half a cent (the precision of TPC-H's
/// money columns, and of answers rounded to 2 decimals), plus float slack.
const ABSOLUTE_TOLERANCE: f64 = 0.0051;
/// Relative tolerance for non-integer numbers: a float8 sum added up in
/// another order. Tight, so that money sums must agree to the cent.
const RELATIVE_TOLERANCE: f64 = 1e-12;

/// How two answers matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// Same rows in the same order.
    Exact,
    /// Same rows, different order.
    Unordered,
}

/// Runs `sql` with the simple query protocol and returns its rows as text.
pub async fn query_rows(client: &Client, sql: &str) -> Result<Rows, tokio_postgres::Error> {
    let messages = client.simple_query(sql).await?;
    Ok(messages
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => {
                Some((0..row.len()).map(|index| row.get(index).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect())
}

/// Compares `actual` (Borealis) with `expected` (PostgreSQL); on a mismatch
/// returns a one-line description of the first difference.
pub fn compare(expected: &Rows, actual: &Rows) -> Result<Match, String> {
    if expected.len() != actual.len() {
        return Err(format!("{} rows, expected {}", actual.len(), expected.len()));
    }
    let Some(first_difference) = expected.iter().zip(actual).position(|(want, have)| !rows_equal(want, have)) else {
        return Ok(Match::Exact);
    };
    let mut expected_sorted = expected.clone();
    let mut actual_sorted = actual.clone();
    expected_sorted.sort();
    actual_sorted.sort();
    if expected_sorted.iter().zip(&actual_sorted).all(|(want, have)| rows_equal(want, have)) {
        return Ok(Match::Unordered);
    }
    Err(format!(
        "row {} is {}, expected {}",
        first_difference + 1,
        show(&actual[first_difference]),
        show(&expected[first_difference])
    ))
}

fn rows_equal(expected: &[Option<String>], actual: &[Option<String>]) -> bool {
    expected.len() == actual.len()
        && expected.iter().zip(actual).all(|(want, have)| cells_equal(want.as_deref(), have.as_deref()))
}

/// Whether two text cells hold the same value (see the module doc).
pub fn cells_equal(expected: Option<&str>, actual: Option<&str>) -> bool {
    match (expected, actual) {
        (None, None) => true,
        (Some(want), Some(have)) => {
            let (want, have) = (want.trim_end(), have.trim_end());
            if want == have {
                return true;
            }
            if is_integer(want) && is_integer(have) {
                // Counts and keys must match exactly (they already differ as text).
                return want.trim_start_matches('+') == have.trim_start_matches('+');
            }
            match (want.parse::<f64>(), have.parse::<f64>()) {
                (Ok(want), Ok(have)) => numbers_close(want, have),
                _ => false,
            }
        }
        _ => false,
    }
}

fn is_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit())
}

fn numbers_close(expected: f64, actual: f64) -> bool {
    let difference = (expected - actual).abs();
    difference <= ABSOLUTE_TOLERANCE || difference <= RELATIVE_TOLERANCE * expected.abs().max(actual.abs())
}

fn show(row: &[Option<String>]) -> String {
    let cells: Vec<&str> = row.iter().map(|cell| cell.as_deref().unwrap_or("NULL")).collect();
    let text = format!("({})", cells.join(", "));
    if text.chars().count() > 200 { format!("{}…", text.chars().take(200).collect::<String>()) } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(cells: &[&[Option<&str>]]) -> Rows {
        cells.iter().map(|row| row.iter().map(|cell| cell.map(str::to_string)).collect()).collect()
    }

    #[test]
    fn cells() {
        assert!(cells_equal(Some("25.5"), Some("25.5000000000")));
        assert!(cells_equal(Some("38273.129734621672"), Some("38273.13")));
        assert!(cells_equal(Some("4995000000"), Some("4.995e9")));
        assert!(cells_equal(Some("BUILDING  "), Some("BUILDING")));
        assert!(cells_equal(None, None));
        assert!(!cells_equal(Some("1"), None));
        assert!(!cells_equal(Some("25.52"), Some("25.53")));
        assert!(!cells_equal(Some("1478493"), Some("1478494")));
        assert!(!cells_equal(Some("BUILDING"), Some("MACHINERY")));
        assert!(cells_equal(Some("56586554400.73"), Some("56586554400.7299")));
        assert!(!cells_equal(Some("56586554400.73"), Some("56586554401.73")));
        assert!(cells_equal(Some("99900000"), Some("99900000.0")));
    }

    #[test]
    fn ordered_unordered_and_wrong() {
        let expected = rows(&[&[Some("a"), Some("1")], &[Some("b"), Some("2")]]);
        assert_eq!(compare(&expected, &expected.clone()), Ok(Match::Exact));
        let swapped = rows(&[&[Some("b"), Some("2")], &[Some("a"), Some("1")]]);
        assert_eq!(compare(&expected, &swapped), Ok(Match::Unordered));
        let wrong = rows(&[&[Some("a"), Some("1")], &[Some("b"), Some("3")]]);
        assert_eq!(compare(&expected, &wrong), Err("row 2 is (b, 3), expected (b, 2)".to_string()));
        let short = rows(&[&[Some("a"), Some("1")]]);
        assert_eq!(compare(&expected, &short), Err("1 rows, expected 2".to_string()));
    }
}
