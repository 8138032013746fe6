//! COPY ... FROM STDIN: PostgreSQL's text and CSV formats, parsed as the
//! data streams in, and turned into rows of the target table. COPY ... TO
//! STDOUT: the same formats written ([`CopyFormat::line`]) from each row's
//! PostgreSQL text values, which the front end produces.
//!
//! The session (`crate::engine`) owns the transaction; this module turns
//! CopyData bytes into records ([`CopyParser`]) and records into encoded
//! rows ([`CopyTarget::rows`]): each field is a string, cast to the column's
//! type by Arrow (an invalid value is an error, never a silent NULL).

use crate::catalog::TableDef;
use crate::ddl::normalize;
use crate::error::{SqlError, sqlstate};
use crate::row::encode_row;
use crate::types::SqlType;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, StringArray};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget as AstCopyTarget, Ident, Statement,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{IsOptional, Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;
use std::sync::Arc;

/// One parsed line (text) or record (CSV): a value per field, None for NULL.
pub type Record = Vec<Option<String>>;

/// The format options of a COPY.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyFormat {
    pub csv: bool,
    pub delimiter: u8,
    /// The field text meaning NULL: `\N` in text, the empty unquoted field in CSV.
    pub null: String,
    pub header: bool,
    pub quote: u8,
    pub escape: u8,
}

impl CopyFormat {
    /// The format of `COPY ... WITH (options)` or the pre-9.0 option syntax.
    pub fn from_options(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<CopyFormat, SqlError> {
        let mut csv = false;
        let (mut delimiter, mut null, mut header, mut quote, mut escape) = (None, None, false, None, None);
        for option in options {
            match option {
                CopyOption::Format(name) => match name.value.to_lowercase().as_str() {
                    "text" => csv = false,
                    "csv" => csv = true,
                    "binary" => return Err(SqlError::unsupported("COPY in binary format")),
                    other => {
                        return Err(SqlError::new(
                            sqlstate::INVALID_PARAMETER_VALUE,
                            format!("COPY format \"{other}\" not recognized"),
                        ));
                    }
                },
                CopyOption::Freeze(_) | CopyOption::Encoding(_) | CopyOption::ForceNotNull(_) => {}
                CopyOption::Delimiter(c) => delimiter = Some(*c),
                CopyOption::Null(text) => null = Some(text.clone()),
                CopyOption::Header(on) => header = *on,
                CopyOption::Quote(c) => quote = Some(*c),
                CopyOption::Escape(c) => escape = Some(*c),
                other => return Err(SqlError::unsupported(format_args!("COPY option {other}"))),
            }
        }
        for option in legacy {
            match option {
                CopyLegacyOption::Binary => return Err(SqlError::unsupported("COPY in binary format")),
                CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
                CopyLegacyOption::Null(text) => null = Some(text.clone()),
                CopyLegacyOption::Csv(csv_options) => {
                    csv = true;
                    for csv_option in csv_options {
                        match csv_option {
                            CopyLegacyCsvOption::Header => header = true,
                            CopyLegacyCsvOption::Quote(c) => quote = Some(*c),
                            CopyLegacyCsvOption::Escape(c) => escape = Some(*c),
                            CopyLegacyCsvOption::ForceNotNull(_) | CopyLegacyCsvOption::ForceQuote(_) => {}
                        }
                    }
                }
                other => return Err(SqlError::unsupported(format_args!("COPY option {other}"))),
            }
        }
        let byte = |c: Option<char>, default: u8, what: &str| -> Result<u8, SqlError> {
            match c {
                None => Ok(default),
                Some(c) if c.is_ascii() && c != '\n' && c != '\r' => Ok(c as u8),
                Some(_) => Err(SqlError::unsupported(format_args!("COPY {what} that is not one ASCII character"))),
            }
        };
        let delimiter = byte(delimiter, if csv { b',' } else { b'\t' }, "delimiter")?;
        let quote = byte(quote, b'"', "quote")?;
        let escape = byte(escape, quote, "escape")?;
        let null = null.unwrap_or_else(|| if csv { String::new() } else { "\\N".to_string() });
        if header && !csv {
            return Err(SqlError::unsupported("COPY HEADER in text format"));
        }
        Ok(CopyFormat { csv, delimiter, null, header, quote, escape })
    }
}

impl CopyFormat {
    /// One line of COPY TO output (newline included) from each field's
    /// PostgreSQL text form, None for NULL: text format escapes backslash,
    /// the delimiter and control characters; CSV quotes a field that holds
    /// the delimiter, the quote, a line break, or that reads as NULL.
    pub fn line(&self, fields: &[Option<&[u8]>]) -> Vec<u8> {
        let mut out = Vec::with_capacity(fields.iter().map(|f| f.map_or(2, <[u8]>::len) + 1).sum());
        for (position, field) in fields.iter().enumerate() {
            if position > 0 {
                out.push(self.delimiter);
            }
            match field {
                None => out.extend_from_slice(self.null.as_bytes()),
                Some(value) if self.csv => self.csv_field(value, &mut out),
                Some(value) => self.text_field(value, &mut out),
            }
        }
        out.push(b'\n');
        out
    }

    fn text_field(&self, value: &[u8], out: &mut Vec<u8>) {
        for &byte in value {
            match byte {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                0x0b => out.extend_from_slice(b"\\v"),
                byte if byte == self.delimiter => out.extend_from_slice(&[b'\\', byte]),
                byte => out.push(byte),
            }
        }
    }

    fn csv_field(&self, value: &[u8], out: &mut Vec<u8>) {
        let quote = value == self.null.as_bytes()
            || value == b"\\."
            || value
                .iter()
                .any(|&b| b == self.delimiter || b == self.quote || b == self.escape || b == b'\n' || b == b'\r');
        if !quote {
            out.extend_from_slice(value);
            return;
        }
        out.push(self.quote);
        for &byte in value {
            if byte == self.quote || byte == self.escape {
                out.push(self.escape);
            }
            out.push(byte);
        }
        out.push(self.quote);
    }
}

/// `COPY table [(columns)] FROM STDIN | TO STDOUT [WITH] (option [value], ...)`
/// and `COPY (query) TO STDOUT [WITH] (...)`,
/// PostgreSQL's option syntax, where boolean options take `on`, `off`,
/// `true`, `false`, `1`, `0` or nothing.
pub fn parse_copy(parser: &mut Parser) -> Result<Statement, ParserError> {
    parser.expect_keyword(Keyword::COPY)?;
    let source = if parser.consume_token(&Token::LParen) {
        let query = parser.parse_query()?;
        parser.expect_token(&Token::RParen)?;
        CopySource::Query(query)
    } else {
        let table_name = parser.parse_object_name(false)?;
        let columns = parser.parse_parenthesized_column_list(IsOptional::Optional, false)?;
        CopySource::Table { table_name, columns }
    };
    let to = match parser.parse_one_of_keywords(&[Keyword::FROM, Keyword::TO]) {
        Some(keyword) => keyword == Keyword::TO,
        None => return parser.expected("FROM or TO", parser.peek_token()),
    };
    let target = match parser.parse_one_of_keywords(&[Keyword::STDIN, Keyword::STDOUT]) {
        Some(Keyword::STDIN) => AstCopyTarget::Stdin,
        Some(_) => AstCopyTarget::Stdout,
        None => AstCopyTarget::File { filename: parser.parse_literal_string()? },
    };
    let _ = parser.parse_keyword(Keyword::WITH);
    parser.expect_token(&Token::LParen)?;
    let mut options = Vec::new();
    loop {
        let name = parser.parse_identifier()?.value.to_lowercase();
        let option = match name.as_str() {
            "format" => CopyOption::Format(parser.parse_identifier()?),
            "freeze" => CopyOption::Freeze(parse_boolean(parser)?),
            "header" => CopyOption::Header(parse_boolean(parser)?),
            "delimiter" => CopyOption::Delimiter(parse_char(parser)?),
            "null" => CopyOption::Null(parser.parse_literal_string()?),
            "quote" => CopyOption::Quote(parse_char(parser)?),
            "escape" => CopyOption::Escape(parse_char(parser)?),
            "encoding" => CopyOption::Encoding(parser.parse_literal_string()?),
            other => return parser.expected(&format!("a COPY option, not {other}"), parser.peek_token()),
        };
        options.push(option);
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    parser.expect_token(&Token::RParen)?;
    Ok(Statement::Copy { source, to, target, options, legacy_options: Vec::new(), values: Vec::new() })
}

/// A one-character string literal (DELIMITER, QUOTE, ESCAPE).
fn parse_char(parser: &mut Parser) -> Result<char, ParserError> {
    let text = parser.parse_literal_string()?;
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Ok(c),
        _ => Err(ParserError::ParserError(format!("expected a single character, found '{text}'"))),
    }
}

/// A boolean option's value; none means true.
fn parse_boolean(parser: &mut Parser) -> Result<bool, ParserError> {
    let token = parser.peek_token();
    let value = match &token.token {
        Token::Comma | Token::RParen => return Ok(true),
        Token::Word(word) => word.value.to_lowercase(),
        Token::Number(number, _) => number.clone(),
        _ => return parser.expected("a boolean", token),
    };
    let value = match value.as_str() {
        "on" | "true" | "yes" | "1" => true,
        "off" | "false" | "no" | "0" => false,
        _ => return parser.expected("a boolean", token),
    };
    parser.next_token();
    Ok(value)
}

/// Splits streamed bytes into records.
#[derive(Debug)]
pub struct CopyParser {
    format: CopyFormat,
    /// Bytes of the record being received.
    pending: Vec<u8>,
    /// CSV: how far `pending` was scanned and whether that point is inside quotes.
    scanned: usize,
    in_quotes: bool,
    header_left: bool,
    /// The end marker `\.` was seen: later data is ignored.
    ended: bool,
}

impl CopyParser {
    pub fn new(format: CopyFormat) -> CopyParser {
        let header_left = format.header;
        CopyParser { format, pending: Vec::new(), scanned: 0, in_quotes: false, header_left, ended: false }
    }

    /// Parses the complete records in `data` (and what came before) into `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<Record>) -> Result<(), SqlError> {
        if self.ended {
            return Ok(());
        }
        self.pending.extend_from_slice(data);
        let mut start = 0;
        let mut at = self.scanned;
        while at < self.pending.len() {
            let byte = self.pending[at];
            if self.format.csv && byte == self.format.quote {
                self.in_quotes = !self.in_quotes;
            } else if byte == b'\n' && !self.in_quotes {
                let line = self.pending[start..at].to_vec();
                start = at + 1;
                self.line(&line, out)?;
                if self.ended {
                    break;
                }
            }
            at += 1;
        }
        self.pending.drain(..start);
        self.scanned = self.pending.len();
        Ok(())
    }

    /// Parses a last record that had no newline.
    pub fn finish(&mut self, out: &mut Vec<Record>) -> Result<(), SqlError> {
        if self.ended || self.pending.is_empty() {
            return Ok(());
        }
        if self.in_quotes {
            return Err(bad_copy("unterminated CSV quoted field"));
        }
        let line = std::mem::take(&mut self.pending);
        self.line(&line, out)
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<Record>) -> Result<(), SqlError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line == b"\\." {
            self.ended = true;
            return Ok(());
        }
        if self.header_left {
            self.header_left = false;
            return Ok(());
        }
        out.push(if self.format.csv { self.csv_record(line)? } else { self.text_record(line)? });
        Ok(())
    }

    fn text_record(&self, line: &[u8]) -> Result<Record, SqlError> {
        let mut fields = Vec::new();
        let mut start = 0;
        let mut at = 0;
        while at <= line.len() {
            if at == line.len() || line[at] == self.format.delimiter {
                let raw = &line[start..at];
                fields.push(if raw == self.format.null.as_bytes() { None } else { Some(unescape_text(raw)?) });
                start = at + 1;
            } else if line[at] == b'\\' {
                at += 1;
            }
            at += 1;
        }
        Ok(fields)
    }

    fn csv_record(&self, line: &[u8]) -> Result<Record, SqlError> {
        let CopyFormat { delimiter, quote, escape, .. } = self.format;
        let mut fields = Vec::new();
        let mut at = 0;
        loop {
            let mut value = Vec::new();
            let mut quoted = false;
            while at < line.len() && line[at] != delimiter {
                if line[at] == quote {
                    quoted = true;
                    at += 1;
                    loop {
                        match line.get(at) {
                            None => return Err(bad_copy("unterminated CSV quoted field")),
                            Some(&c) if c == escape && line.get(at + 1) == Some(&quote) && escape != quote => {
                                value.push(quote);
                                at += 2;
                            }
                            Some(&c) if c == quote && line.get(at + 1) == Some(&quote) => {
                                value.push(quote);
                                at += 2;
                            }
                            Some(&c) if c == quote => {
                                at += 1;
                                break;
                            }
                            Some(&c) => {
                                value.push(c);
                                at += 1;
                            }
                        }
                    }
                } else {
                    value.push(line[at]);
                    at += 1;
                }
            }
            let is_null = !quoted && value == self.format.null.as_bytes();
            fields.push(if is_null { None } else { Some(utf8(value)?) });
            if at >= line.len() {
                return Ok(fields);
            }
            at += 1;
        }
    }
}

fn bad_copy(what: impl std::fmt::Display) -> SqlError {
    SqlError::new(sqlstate::BAD_COPY_FILE_FORMAT, format!("{what}"))
}

fn utf8(bytes: Vec<u8>) -> Result<String, SqlError> {
    String::from_utf8(bytes).map_err(|_| {
        SqlError::new(sqlstate::CHARACTER_NOT_IN_REPERTOIRE, "invalid byte sequence for encoding \"UTF8\"")
    })
}

/// A text-format field with its backslash escapes resolved.
fn unescape_text(raw: &[u8]) -> Result<String, SqlError> {
    if !raw.contains(&b'\\') {
        return utf8(raw.to_vec());
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    while at < raw.len() {
        if raw[at] != b'\\' || at + 1 == raw.len() {
            out.push(raw[at]);
            at += 1;
            continue;
        }
        let next = raw[at + 1];
        at += 2;
        match next {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut value = u32::from(next - b'0');
                for _ in 0..2 {
                    match raw.get(at) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            at += 1;
                        }
                        _ => break,
                    }
                }
                out.push(value as u8);
            }
            b'x' if raw.get(at).is_some_and(u8::is_ascii_hexdigit) => {
                let mut value = 0u8;
                for _ in 0..2 {
                    match raw.get(at).and_then(|d| (*d as char).to_digit(16)) {
                        Some(digit) => {
                            value = value * 16 + digit as u8;
                            at += 1;
                        }
                        None => break,
                    }
                }
                out.push(value);
            }
            other => out.push(other),
        }
    }
    utf8(out)
}

/// The table and columns a COPY FROM fills.
#[derive(Debug)]
pub struct CopyTarget {
    pub def: Arc<TableDef>,
    /// For each field of a record, the table column it fills.
    columns: Vec<usize>,
}

impl CopyTarget {
    /// The target of `COPY table (columns)`; all columns if none are named.
    pub fn new(def: Arc<TableDef>, names: &[Ident]) -> Result<CopyTarget, SqlError> {
        let columns = if names.is_empty() {
            (0..def.columns.len()).collect()
        } else {
            let mut columns = Vec::with_capacity(names.len());
            for ident in names {
                let name = normalize(ident);
                let index = def.column_index(&name).ok_or_else(|| {
                    SqlError::new(
                        sqlstate::UNDEFINED_COLUMN,
                        format!("column \"{name}\" of relation \"{}\" does not exist", def.name),
                    )
                })?;
                if columns.contains(&index) {
                    return Err(SqlError::new(
                        sqlstate::DUPLICATE_COLUMN,
                        format!("column \"{name}\" specified more than once"),
                    ));
                }
                columns.push(index);
            }
            columns
        };
        Ok(CopyTarget { def, columns })
    }

    /// Fields per record.
    pub fn field_count(&self) -> usize {
        self.columns.len()
    }

    /// The columns not copied that have a DEFAULT, with its SQL text.
    pub fn defaulted(&self) -> Vec<(usize, &str)> {
        let columns = self.def.columns.iter().enumerate();
        columns
            .filter(|(index, _)| !self.columns.contains(index))
            .filter_map(|(index, column)| column.default.as_deref().map(|text| (index, text)))
            .collect()
    }

    /// The encoded rows of `records`, and the same rows as a batch of the
    /// table's columns (for its constraints). Columns not copied take their
    /// values from `defaults` (one array of `records.len()` values per
    /// column of [`CopyTarget::defaulted`], in that order), or are NULL.
    /// (`zone`: the session's TimeZone, for timestamptz text without an offset.)
    pub fn rows(
        &self,
        records: &[Record],
        defaults: &[ArrayRef],
        zone: crate::datetime::Zone,
    ) -> Result<(Vec<Vec<u8>>, RecordBatch), SqlError> {
        for record in records {
            if record.len() != self.columns.len() {
                let what = if record.len() > self.columns.len() {
                    "extra data after last expected column"
                } else {
                    "missing data for a column"
                };
                return Err(bad_copy(what));
            }
        }
        let options = CastOptions { safe: false, ..Default::default() };
        let defaulted: Vec<usize> = self.defaulted().into_iter().map(|(index, _)| index).collect();
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.def.columns.len());
        for (index, column) in self.def.columns.iter().enumerate() {
            if let Some(position) = defaulted.iter().position(|&c| c == index) {
                let array = defaults
                    .get(position)
                    .ok_or_else(|| SqlError::internal(format_args!("no default values for column {}", column.name)))?;
                let target = column.ty.arrow_type();
                arrays.push(if array.data_type() == &target {
                    Arc::clone(array)
                } else {
                    cast_with_options(array, &target, &options).map_err(|e| SqlError::from_arrow(&e))?
                });
                continue;
            }
            let text: StringArray = match self.columns.iter().position(|&c| c == index) {
                Some(field) => records.iter().map(|record| record[field].as_deref()).collect(),
                None => std::iter::repeat_n(None::<&str>, records.len()).collect(),
            };
            let target = column.ty.arrow_type();
            let array: ArrayRef = Arc::new(text);
            arrays.push(if let Some(read) = crate::input::from_text(&array, column.ty) {
                read?
            } else if array.data_type() == &target {
                array
            } else if matches!(column.ty, SqlType::Date | SqlType::Timestamp | SqlType::Timestamptz) {
                crate::datetime::text_to_datetime_in(&array, &target, zone)?
            } else {
                cast_with_options(&array, &target, &options).map_err(|e| {
                    // As PostgreSQL's input functions (dates and timestamps
                    // are read above, with their own errors).
                    SqlError::new(
                        sqlstate::INVALID_TEXT_REPRESENTATION,
                        format!("invalid input for column \"{}\" of type {}: {e}", column.name, column.ty),
                    )
                })?
            });
        }
        let rows = (0..records.len()).map(|row| encode_row(&self.def, &arrays, row)).collect::<Result<_, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(records.len()));
        let batch = RecordBatch::try_new_with_options(crate::constraint::table_schema(&self.def), arrays, &options)
            .map_err(|e| SqlError::from_arrow(&e))?;
        Ok((rows, batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(format: CopyFormat, chunks: &[&[u8]]) -> Result<Vec<Record>, SqlError> {
        let mut parser = CopyParser::new(format);
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out)?;
        }
        parser.finish(&mut out)?;
        Ok(out)
    }

    fn text() -> CopyFormat {
        CopyFormat::from_options(&[], &[]).unwrap()
    }

    fn csv() -> CopyFormat {
        CopyFormat::from_options(&[CopyOption::Format(Ident::new("csv"))], &[]).unwrap()
    }

    fn fields(values: &[Option<&str>]) -> Record {
        values.iter().map(|v| v.map(str::to_string)).collect()
    }

    #[test]
    fn text_lines_split_across_chunks_with_escapes_and_nulls() {
        let records = parse(text(), &[b"1\ta\\tb\t\\N\n2\t", b"x\\\\y\t\\101\\x41\r\n3\t\t", b"z"]).unwrap();
        assert_eq!(
            records,
            vec![
                fields(&[Some("1"), Some("a\tb"), None]),
                fields(&[Some("2"), Some("x\\y"), Some("AA")]),
                fields(&[Some("3"), Some(""), Some("z")]),
            ]
        );
        let ended = parse(text(), &[b"1\n\\.\nignored\n"]).unwrap();
        assert_eq!(ended, vec![fields(&[Some("1")])]);
        // An escaped delimiter does not split.
        assert_eq!(parse(text(), &[b"a\\\tb\n"]).unwrap(), vec![fields(&[Some("a\tb")])]);
    }

    #[test]
    fn csv_quotes_span_lines_and_tell_empty_from_null() {
        let records = parse(csv(), &[b"1,\"a,\"\"b\"\"\n", b"c\",,\"\"\n2,plain,x,y\n"]).unwrap();
        assert_eq!(
            records,
            vec![
                fields(&[Some("1"), Some("a,\"b\"\nc"), None, Some("")]),
                fields(&[Some("2"), Some("plain"), Some("x"), Some("y")]),
            ]
        );
        let header = CopyFormat { header: true, ..csv() };
        assert_eq!(parse(header, &[b"id,name\n1,a\n"]).unwrap(), vec![fields(&[Some("1"), Some("a")])]);
        assert_eq!(parse(csv(), &[b"1,\"open\n"]).unwrap_err().sqlstate(), sqlstate::BAD_COPY_FILE_FORMAT);
    }

    #[test]
    fn postgres_option_syntax_parses_with_boolean_words() {
        let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
        let sql = "COPY t (a, b) FROM STDIN WITH (FREEZE on, FORMAT csv, HEADER off, DELIMITER ';')";
        let mut parser = Parser::new(&dialect).try_with_sql(sql).unwrap();
        let Statement::Copy { options, to, .. } = parse_copy(&mut parser).unwrap() else { panic!("not a COPY") };
        assert!(!to);
        let format = CopyFormat::from_options(&options, &[]).unwrap();
        assert!(format.csv && !format.header && format.delimiter == b';');
        let mut bad = Parser::new(&dialect).try_with_sql("COPY t FROM STDIN (FREEZE maybe)").unwrap();
        assert!(parse_copy(&mut bad).is_err());
    }

    #[test]
    fn output_lines_escape_and_quote_as_postgres() {
        let fields: [Option<&[u8]>; 4] = [Some(b"1"), None, Some(b"a\tb\\c\nd"), Some(b"")];
        assert_eq!(text().line(&fields), b"1\t\\N\ta\\tb\\\\c\\nd\t\n".to_vec());
        let fields: [Option<&[u8]>; 4] = [Some(b"1"), None, Some(b"say \"hi\", ok"), Some(b"")];
        assert_eq!(csv().line(&fields), b"1,,\"say \"\"hi\"\", ok\",\"\"\n".to_vec());
        let pipes = CopyFormat { delimiter: b'|', null: "-".into(), ..text() };
        let fields: [Option<&[u8]>; 3] = [Some(b"a|b"), Some(b"-"), None];
        assert_eq!(pipes.line(&fields), b"a\\|b|-|-\n".to_vec());
    }

    #[test]
    fn options_are_read_and_odd_ones_refused() {
        let legacy = CopyFormat::from_options(
            &[],
            &[CopyLegacyOption::Csv(vec![CopyLegacyCsvOption::Header]), CopyLegacyOption::Delimiter('|')],
        )
        .unwrap();
        assert!(legacy.csv && legacy.header && legacy.delimiter == b'|' && legacy.null.is_empty());
        assert!(CopyFormat::from_options(&[CopyOption::Format(Ident::new("binary"))], &[]).is_err());
        assert!(CopyFormat::from_options(&[CopyOption::Header(true)], &[]).is_err(), "HEADER needs CSV");
        let frozen = CopyFormat::from_options(&[CopyOption::Freeze(true)], &[]).unwrap();
        assert_eq!(frozen, text());
    }
}
