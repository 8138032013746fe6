//! The TPC-H ceiling: DataFusion in this process over Parquet files of the
//! same generated data.
//!
//! Borealis plans and runs its queries with DataFusion, so DataFusion reading
//! compressed columnar files from the local disk, with no server, wire
//! protocol, snapshot, page store or row decoding in between, is about as
//! fast as Borealis's engine could answer the same query on this machine: a
//! ceiling to measure the distance to, not a third system under test.
//!
//! `Ceiling::prepare` writes the 8 tables with `tpchgen-arrow` (the same
//! generator and scale factor as the rows loaded into the two systems, so the
//! same rows) to one Parquet file each in a temporary directory under the
//! bench's work directory, and registers them in a `SessionContext`.
//! `Ceiling::query` runs one query text and returns its answer as the text a
//! PostgreSQL client would see (`text_rows`), so that `compare` checks it
//! against PostgreSQL's answer exactly as it checks Borealis's.
//!
//! The column types are the generator's Arrow types: keys Int64, money and
//! quantities Decimal128(15, 2), dates Date32, text Utf8View. They differ
//! from `tpch/schema.sql` only in integer width, which no answer shows.

use crate::bench::compare::Rows;
use anyhow::Context as _;
use datafusion::arrow::array::{Array, RecordBatch, RecordBatchReader};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::path::Path;
use std::time::{Duration, Instant};
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator, PartSuppGenerator,
    RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow, SupplierArrow,
};

/// Rows per generated batch: tpchgen-arrow's own default, large enough that
/// per-batch overhead vanishes, small enough to keep memory flat.
const BATCH_ROWS: usize = 8192;
/// Rows per Parquet row group: the parquet crate's default (1 Mi), written
/// down so the file layout does not change under us. At SF 1 lineitem gets
/// 6 row groups, enough for every core to scan its own.
const ROW_GROUP_ROWS_MAX: usize = 1024 * 1024;

/// What writing the Parquet files took.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// Rows in all 8 files.
    pub rows: u64,
    /// Size of all 8 files.
    pub bytes: u64,
    pub elapsed: Duration,
}

/// The 8 tables as Parquet files, registered in a DataFusion session.
pub struct Ceiling {
    context: SessionContext,
    /// Owns the files; they are removed when the ceiling is dropped.
    _directory: tempfile::TempDir,
    pub written: Written,
}

impl Ceiling {
    /// Writes `tables` at `scale_factor` to Parquet files in a new directory
    /// under `work_dir` and registers each under its table name.
    pub async fn prepare(work_dir: &Path, scale_factor: f64, tables: &[&'static str]) -> anyhow::Result<Ceiling> {
        let directory = tempfile::Builder::new()
            .prefix("borealis-bench-tpch-parquet-")
            .tempdir_in(work_dir)
            .with_context(|| format!("failed to create a directory in {}", work_dir.display()))?;
        let started = Instant::now();
        let mut written = Written { rows: 0, bytes: 0, elapsed: Duration::ZERO };
        // One partition per core, DataFusion's own default, written down: the
        // ceiling is the best this machine does. (Borealis plans with one
        // partition today, so part of the distance is parallelism.)
        let partitions = std::thread::available_parallelism().map_or(1, usize::from);
        let context = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(partitions));
        for &table in tables {
            let path = directory.path().join(format!("{table}.parquet"));
            let file_path = path.clone();
            // Generating and compressing is CPU work; keep it off the async workers.
            written.rows += tokio::task::spawn_blocking(move || write_table(&file_path, table, scale_factor))
                .await
                .context("the Parquet writer panicked")?
                .with_context(|| format!("failed to write {}", path.display()))?;
            written.bytes += std::fs::metadata(&path)?.len();
            let location = path.to_str().context("the work directory's path is not UTF-8")?;
            context
                .register_parquet(table, location, ParquetReadOptions::default())
                .await
                .with_context(|| format!("failed to register {}", path.display()))?;
        }
        written.elapsed = started.elapsed();
        Ok(Ceiling { context, _directory: directory, written })
    }

    /// Plans and runs `sql`, and returns its answer as text.
    pub async fn query(&self, sql: &str) -> anyhow::Result<Rows> {
        let batches = self.context.sql(sql).await?.collect().await?;
        text_rows(&batches)
    }
}

/// Writes one table's generated rows to a Parquet file; returns the rows.
fn write_table(path: &Path, table: &str, scale_factor: f64) -> anyhow::Result<u64> {
    let reader = generator(table, scale_factor)?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS_MAX))
        .build();
    let file = std::fs::File::create(path)?;
    let mut writer = ArrowWriter::try_new(file, reader.schema(), Some(properties))?;
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        writer.write(&batch)?;
    }
    writer.close()?;
    Ok(rows)
}

/// The whole of `table` at `scale_factor` as Arrow batches (one generator
/// part: the same rows the loaders send in several parts).
fn generator(table: &str, scale_factor: f64) -> anyhow::Result<Box<dyn RecordBatchReader + Send>> {
    let (sf, rows) = (scale_factor, BATCH_ROWS);
    Ok(match table {
        "region" => Box::new(RegionArrow::new(RegionGenerator::new(sf, 1, 1)).with_batch_size(rows)),
        "nation" => Box::new(NationArrow::new(NationGenerator::new(sf, 1, 1)).with_batch_size(rows)),
        "part" => Box::new(PartArrow::new(PartGenerator::new(sf, 1, 1)).with_batch_size(rows)),
        "supplier" => Box::new(SupplierArrow::new(SupplierGenerator::new(sf, 1, 1)).with_batch_size(rows)),
        "partsupp" => Box::new(PartSuppArrow::new(PartSuppGenerator::new(sf, 1, 1)).with_batch_size(rows)),
        "customer" => Box::new(CustomerArrow::new(CustomerGenerator::new(sf, 1, 1)).with_batch_size(rows)),
        "orders" => Box::new(OrderArrow::new(OrderGenerator::new(sf, 1, 1)).with_batch_size(rows)),
        "lineitem" => Box::new(LineItemArrow::new(LineItemGenerator::new(sf, 1, 1)).with_batch_size(rows)),
        other => anyhow::bail!("no generator for table {other}"),
    })
}

/// Record batches as rows of text cells, as `compare::query_rows` returns a
/// PostgreSQL answer: NULL as `None`, every other value in Arrow's display
/// form (decimals at their scale, dates as YYYY-MM-DD), which `compare`
/// matches against PostgreSQL's text with its numeric tolerance.
pub fn text_rows(batches: &[RecordBatch]) -> anyhow::Result<Rows> {
    let options = FormatOptions::default();
    let mut rows = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for batch in batches {
        let columns = batch.columns();
        let formatters = columns
            .iter()
            .map(|column| ArrayFormatter::try_new(column.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for index in 0..batch.num_rows() {
            let row = columns
                .iter()
                .zip(&formatters)
                .map(|(column, formatter)| (!column.is_null(index)).then(|| formatter.value(index).to_string()))
                .collect();
            rows.push(row);
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::compare::{self, Match};
    use datafusion::arrow::array::{Date32Array, Decimal128Array, Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn arrow_values_become_postgres_like_text() {
        let schema = Schema::new(vec![
            Field::new("key", DataType::Int64, false),
            Field::new("price", DataType::Decimal128(15, 2), false),
            Field::new("day", DataType::Date32, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("average", DataType::Float64, false),
        ]);
        let price = Decimal128Array::from(vec![2116823, -5]).with_precision_and_scale(15, 2).expect("valid decimal");
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 155190])),
                Arc::new(price),
                // 1996-03-13 and 1970-01-01 in days since the epoch.
                Arc::new(Date32Array::from(vec![9568, 0])),
                Arc::new(StringArray::from(vec![Some("BUILDING"), None])),
                Arc::new(Float64Array::from(vec![25.5, 4.995e9])),
            ],
        )
        .expect("columns match the schema");
        let rows = text_rows(&[batch.clone(), batch.slice(1, 1)]).expect("formats");
        fn cells(row: &[Option<String>]) -> Vec<Option<&str>> {
            row.iter().map(|cell| cell.as_deref()).collect()
        }
        assert_eq!(rows.len(), 3);
        assert_eq!(cells(&rows[0])[..4], [Some("1"), Some("21168.23"), Some("1996-03-13"), Some("BUILDING")]);
        assert_eq!(cells(&rows[1])[..4], [Some("155190"), Some("-0.05"), Some("1970-01-01"), None]);
        assert_eq!(rows[1], rows[2]);
        // PostgreSQL prints the same answer with other scales and exponents.
        let postgres = vec![
            ["1", "21168.2300", "1996-03-13", "BUILDING", "25.5000000000"].map(|text| Some(text.to_string())).to_vec(),
        ];
        assert_eq!(compare::compare(&postgres, &rows[..1].to_vec()), Ok(Match::Exact));
        assert!(cells(&rows[1])[4].is_some_and(|text| text.parse::<f64>() == Ok(4.995e9)));
    }

    #[tokio::test]
    async fn every_query_runs_on_the_parquet_files() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let tables = super::super::tpch::TABLES.map(|(table, _)| table);
        let ceiling = Ceiling::prepare(directory.path(), 0.001, &tables).await.expect("writes and registers");
        assert!(ceiling.written.rows > 6000 && ceiling.written.bytes > 0, "{:?}", ceiling.written);
        let count = ceiling.query("select count(*) from lineitem").await.expect("counts");
        let lineitem_rows: u64 = count[0][0].as_deref().and_then(|text| text.parse().ok()).expect("a count");
        assert!(lineitem_rows > 5000, "{lineitem_rows}");
        for (name, sql) in super::super::tpch::QUERIES {
            ceiling.query(sql).await.unwrap_or_else(|error| panic!("{name}: {error:#}"));
        }
        let q01 = ceiling.query(super::super::tpch::QUERIES[0].1).await.expect("q01");
        assert_eq!(q01.len(), 4, "{q01:?}");
    }
}
