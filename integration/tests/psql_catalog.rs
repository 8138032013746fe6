//! psql's meta-commands against a real cluster: `\dt`, `\d TABLE`, `\di`,
//! `\dn`, `\l`, `\du`, and the client-side `\x` and `\timing`, whose output
//! must be what PostgreSQL prints for the same schema.
//!
//! Method: create tables with a primary key, a unique constraint, a plain
//! index, a unique index, a column default, CHECK constraints and a foreign
//! key (so `\d` shows its Default column, "Check constraints:",
//! "Foreign-key constraints:" and "Referenced by:"), and a schema `sales`
//! with a table of its own (so `\dn`, `\dt sales.*`, `\d sales.orders` and
//! `\dt` under another search_path show it), and a table reshaped by ALTER
//! TABLE (ADD COLUMN with a default and a CHECK, DROP COLUMN of an indexed
//! column, RENAME COLUMN of a checked one, SET NOT NULL, SET DEFAULT,
//! RENAME TO), which `\d journal` must show as PostgreSQL does; run `expected/psql_meta_commands.psql` with
//! psql through the cluster endpoint; compare its output with
//! `expected/psql_meta_commands.out` (trailing whitespace stripped). The
//! expected file is PostgreSQL's own output for that script and schema,
//! except for one difference:
//! - `\l` lists only `postgres`: Borealis has one database and no
//!   `template0` / `template1`.
//!
//! The reader endpoint must then describe the tables identically (same
//! catalog at its read point, same oids).

use borealis_integration::{Cluster, PASSWORD};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCHEMA: &str = "CREATE TABLE accounts (id int PRIMARY KEY CHECK (id > 0), email varchar(100) NOT NULL UNIQUE, \
                      name text, balance numeric(12,2) DEFAULT 0, created date);
CREATE INDEX accounts_name_idx ON accounts (name);
CREATE TABLE events (id bigint PRIMARY KEY, account_id int NOT NULL REFERENCES accounts ON DELETE CASCADE, \
                      at timestamp, kind char(4), ok boolean, score double precision, \
                      CONSTRAINT positive_ids CHECK (id > 0 AND account_id > 0));
CREATE UNIQUE INDEX events_account_at ON events (account_id, at);
CREATE SCHEMA sales;
CREATE TABLE sales.orders (id int PRIMARY KEY, note text NOT NULL);
CREATE INDEX orders_note_idx ON sales.orders (note);
CREATE TABLE ledger (id int PRIMARY KEY, memo text, legacy text, amount int);
CREATE INDEX ledger_legacy_idx ON ledger (legacy);
INSERT INTO ledger VALUES (1, 'first', 'x', 5);
ALTER TABLE ledger ADD COLUMN posted boolean NOT NULL DEFAULT false, ADD COLUMN qty int CHECK (qty > 0);
ALTER TABLE ledger DROP COLUMN legacy;
ALTER TABLE ledger RENAME COLUMN memo TO description;
ALTER TABLE ledger RENAME qty TO quantity;
ALTER TABLE ledger ALTER COLUMN amount SET NOT NULL, ALTER COLUMN amount SET DEFAULT 0;
ALTER TABLE ledger RENAME TO journal;";

/// Runs `script` through psql (aligned output, as a user sees it) against `port`; returns stdout and stderr.
fn psql_script(port: u16, script: &str) -> anyhow::Result<String> {
    let mut child = Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-d", "postgres", "-f", "-"])
        .env("PGPASSWORD", PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("failed to run psql (make deps installs it): {e}"))?;
    child.stdin.take().expect("stdin is piped").write_all(script.as_bytes())?;
    let output = child.wait_with_output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    anyhow::ensure!(output.status.success(), "psql failed:\n{text}");
    Ok(text)
}

/// `text` without trailing whitespace on each line.
fn trimmed(text: &str) -> String {
    text.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim_end().to_string()
}

fn expected(name: &str) -> anyhow::Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expected").join(name);
    std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("failed to read {}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_meta_commands_print_postgres_output() -> anyhow::Result<()> {
    let cluster = Cluster::start_new(1)?;
    let port = cluster.ports.cluster;
    psql_script(port, SCHEMA)?;

    let got = trimmed(&psql_script(port, &expected("psql_meta_commands.psql")?)?);
    let want = trimmed(&expected("psql_meta_commands.out")?);
    assert!(
        got == want,
        "psql output differs from expected/psql_meta_commands.out\n--- got:\n{got}\n--- want:\n{want}"
    );

    let timing = psql_script(port, "\\timing on\nSELECT 1 AS one;\n")?;
    assert!(timing.contains("Timing is on.") && timing.contains("Time: "), "{timing}");

    // The reader describes the same tables with the same oids once it has the
    // DDL, and reads the rows ALTER TABLE rewrote.
    let describe =
        "\\d accounts\n\\d journal\nSELECT * FROM journal;\n\\di\nSELECT 'accounts'::regclass::oid AS oid;\n";
    let on_writer = psql_script(port, describe)?;
    assert!(on_writer.contains("| first ") && on_writer.contains("(1 row)"), "{on_writer}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match psql_script(cluster.ports.reader, describe) {
            Ok(on_reader) if on_reader == on_writer => break,
            other if Instant::now() > deadline => panic!("reader never matched the writer:\n{other:?}\n{on_writer}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    Ok(())
}
