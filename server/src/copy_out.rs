//! COPY ... TO STDOUT on the wire: CopyOutResponse, one CopyData per row,
//! CopyDone and `COPY n` (pgwire sends the frame and counts the CopyData
//! messages for the tag).
//!
//! Rows come from the SQL session as a stream of Arrow batches; each batch
//! is encoded when the client is ready for it, so memory holds one batch,
//! never the whole result. Values take PostgreSQL's text form (the same
//! encoder as query results, `crate::pgtypes`), then the COPY format's
//! escaping or quoting (`borealis_sql::copy::CopyFormat::line`).
//!
//! HEADER: the header line travels in the first row's CopyData, so that
//! the tag counts rows only (an empty result sends it alone, and is then
//! counted as one).

use crate::pgtypes;
use borealis_sql::copy::CopyFormat;
use borealis_sql::{CopyOutStream, SqlError};
use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::{StreamExt, stream};
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyResponse, FieldInfo, Response};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::CopyData;
use std::sync::{Arc, Mutex};

/// The response that streams `rows` to the client in `format`.
pub fn response(format: CopyFormat, schema: SchemaRef, rows: CopyOutStream) -> Response {
    let fields = Arc::new(pgtypes::fields(&schema, &Format::UnifiedText));
    let columns = fields.len();
    let header = format.header.then(|| {
        let names: Vec<Option<&[u8]>> = schema.fields().iter().map(|f| Some(f.name().as_bytes())).collect();
        format.line(&names)
    });
    let header = Arc::new(Mutex::new(header));
    let pending_header = Arc::clone(&header);
    let format = Arc::new(format);
    let lines = rows.0.flat_map(move |batch| {
        let lines = match batch {
            Ok(batch) => encode(&fields, &format, &batch, &header),
            Err(error) => vec![Err(user_error(&SqlError::from_datafusion(&error)))],
        };
        stream::iter(lines)
    });
    // A header not yet sent (no rows at all) goes alone at the end.
    let last = stream::once(async move { pending_header.lock().expect("header lock poisoned").take() })
        .filter_map(|header| async move { header.map(|line| Ok(CopyData::new(Bytes::from(line)))) });
    Response::CopyOut(CopyResponse::new(0, columns, lines.chain(last)))
}

/// One CopyData per row of `batch`; the first carries the header if it is still pending.
fn encode(
    fields: &Arc<Vec<FieldInfo>>,
    format: &CopyFormat,
    batch: &RecordBatch,
    header: &Mutex<Option<Vec<u8>>>,
) -> Vec<PgWireResult<CopyData>> {
    let rows = match pgtypes::encode_batch(fields, batch) {
        Ok(rows) => rows,
        Err(error) => return vec![Err(error)],
    };
    let mut pending = if rows.is_empty() { None } else { header.lock().expect("header lock poisoned").take() };
    rows.into_iter()
        .map(|row| {
            let values = field_values(&row.data, row.field_count)?;
            let mut line = pending.take().unwrap_or_default();
            line.extend_from_slice(&format.line(&values));
            Ok(CopyData::new(Bytes::from(line)))
        })
        .collect()
}

/// The fields of an encoded DataRow body: each a length (-1 for NULL) and its bytes.
fn field_values(data: &[u8], count: i16) -> PgWireResult<Vec<Option<&[u8]>>> {
    let mut values = Vec::with_capacity(count.max(0) as usize);
    let mut at = 0;
    for _ in 0..count {
        let length_bytes: [u8; 4] = data
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| PgWireError::ApiError("data row shorter than its fields".into()))?;
        at += 4;
        let length = i32::from_be_bytes(length_bytes);
        if length < 0 {
            values.push(None);
            continue;
        }
        let end = at + length as usize;
        values.push(Some(data.get(at..end).ok_or_else(|| PgWireError::ApiError("data row field overruns".into()))?));
        at = end;
    }
    Ok(values)
}

fn user_error(error: &SqlError) -> PgWireError {
    let mut info = ErrorInfo::new("ERROR".into(), error.sqlstate().to_string(), error.message().to_string());
    info.detail = error.detail().map(str::to_string);
    PgWireError::UserError(Box::new(info))
}
