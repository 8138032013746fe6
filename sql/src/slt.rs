//! A small runner for sqllogictest-style files in `sql/tests/slt/`, each
//! file its own test over a fresh in-memory volume.
//!
//! Supported records (a subset of sqllogictest, blank-line separated):
//! - `statement ok` + SQL: must succeed;
//! - `statement error <SQLSTATE>` + SQL: must fail with that SQLSTATE;
//! - `query <types>` + SQL + `----` + rows: each row's values joined by one
//!   space, NULL as `NULL`, the empty string as `(empty)`; compared in order
//!   (use ORDER BY);
//! - `restart`: reopen the engine on the same volume (tests persistence);
//! - lines starting with `#` are comments.

use crate::testing::MemoryVolume;
use crate::{Engine, QueryOutput, Session};
use datafusion::arrow::util::display::array_value_to_string;
use std::path::Path;
use std::sync::Arc;

fn render(output: &QueryOutput) -> Vec<String> {
    let (QueryOutput::Rows { batches, .. } | QueryOutput::Returning { batches, .. }) = output else { return vec![] };
    let mut lines = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let values: Vec<String> = batch
                .columns()
                .iter()
                .map(|column| {
                    // Logical nulls: a NullArray (an untyped NULL column) has no null buffer.
                    if column.logical_nulls().is_some_and(|nulls| nulls.is_null(row)) {
                        return "NULL".to_string();
                    }
                    match array_value_to_string(column, row).expect("displayable") {
                        value if value.is_empty() => "(empty)".to_string(),
                        value => value,
                    }
                })
                .collect();
            lines.push(values.join(" "));
        }
    }
    lines
}

async fn run_record(session: &mut Session, header: &str, body: &[&str], location: &str) {
    let split = body.iter().position(|line| *line == "----");
    let sql = body[..split.unwrap_or(body.len())].join("\n");
    let result = session.execute(&sql).await;
    let mut words = header.split_whitespace();
    match (words.next(), words.next()) {
        (Some("statement"), Some("ok")) => {
            if let Err(e) = result {
                panic!("{location}: expected ok, got {e}\n{sql}");
            }
        }
        (Some("statement"), Some("error")) => {
            let want = words.next().unwrap_or_else(|| panic!("{location}: statement error needs a SQLSTATE"));
            match result {
                Ok(_) => panic!("{location}: expected error {want}, statement succeeded\n{sql}"),
                Err(e) => assert_eq!(e.sqlstate(), want, "{location}: {e}\n{sql}"),
            }
        }
        (Some("query"), _) => {
            let outputs = result.unwrap_or_else(|e| panic!("{location}: query failed: {e}\n{sql}"));
            let got: Vec<String> = outputs.iter().flat_map(render).collect();
            let want: Vec<String> = split.map_or(vec![], |at| body[at + 1..].iter().map(|l| l.to_string()).collect());
            assert_eq!(got, want, "{location}\n{sql}");
        }
        _ => panic!("{location}: unknown record {header:?}"),
    }
}

/// Runs one .slt file.
pub async fn run_file(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let volume = MemoryVolume::new();
    let mut engine = Engine::open(Arc::new(volume.clone()), false).await.expect("open");
    let mut session = engine.session();
    let lines: Vec<&str> = text.lines().collect();
    let mut at = 0;
    while at < lines.len() {
        let line = lines[at].trim_end();
        if line.is_empty() || line.starts_with('#') {
            at += 1;
            continue;
        }
        let start = at;
        let mut end = at + 1;
        while end < lines.len() && !lines[end].trim().is_empty() {
            end += 1;
        }
        let location = format!("{}:{}", path.display(), start + 1);
        if line == "restart" {
            drop(session);
            engine = Engine::open(Arc::new(volume.clone()), false).await.expect("reopen");
            session = engine.session();
        } else {
            run_record(&mut session, line, &lines[start + 1..end], &location).await;
        }
        at = end;
    }
}

macro_rules! slt_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt").join(concat!(stringify!($name), ".slt"));
            run_file(&path).await;
        }
    )*};
}

slt_tests!(
    basic,
    transactions,
    errors,
    indexes,
    maintenance,
    pg_catalog,
    drivers,
    reflection,
    sequences,
    check_constraints,
    foreign_keys,
    schemas,
    types,
    functions,
    json,
    arrays,
);
