//! A bounded fuzz test of the front end: malformed and truncated protocol
//! messages sent to a running writer.
//!
//! Goal: whatever a client sends, the server answers with an error or closes
//! that one connection; it never panics or hangs, and other sessions go on
//! unaffected. Method: proptest generates cases of two kinds, each on a new
//! TCP connection to the writer's port:
//! - before authentication: startup packets with wrong lengths, unknown
//!   protocol codes, SSL/GSS/cancel requests and garbage parameters;
//! - after authentication (a real SCRAM login by tokio-postgres, whose socket
//!   is then taken over): sequences of frontend messages with real and
//!   random type bytes, lengths that are right, off by a little or absurd,
//!   and bodies built from fields with boundary values (counts of -1 and
//!   32767, unterminated strings), the last one possibly cut short.
//!
//! The test then closes its side and requires the server to close within
//! `CLOSE_TIMEOUT`. A session opened before the fuzzing must answer a query
//! after every case, and no process log may contain a panic. The case count
//! (`CASES_PER_KIND`) and a wall-clock budget (`BUDGET`) bound the run; the
//! seed is fixed so that a failure replays (proptest prints the minimal case).

use borealis_integration::Cluster;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Cases of each kind; with `BUDGET` the bound on the run.
const CASES_PER_KIND: u32 = 256;
/// Wall-clock budget of each kind's cases; the run stops early past it.
const BUDGET: Duration = Duration::from_secs(120);
/// How long the server may take to close a connection after the client
/// closed its side.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes read back from one case (a valid query's rows included).
const RESPONSE_BYTES_MAX: usize = 1 << 20;
/// The fixed seed of the run.
const SEED: [u8; 32] = *b"borealis-frontend-fuzz-seed-0001";

/// A TCP stream that tokio-postgres drives during login and the test takes
/// back afterwards (tokio-postgres never hands its socket out).
#[derive(Clone)]
struct Tap(Arc<Mutex<Option<TcpStream>>>);

impl Tap {
    fn with<R>(&self, f: impl FnOnce(Pin<&mut TcpStream>) -> Poll<std::io::Result<R>>) -> Poll<std::io::Result<R>> {
        let mut slot = self.0.lock().expect("tap lock poisoned");
        match slot.as_mut() {
            Some(stream) => f(Pin::new(stream)),
            None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncRead for Tap {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        self.with(|stream| stream.poll_read(cx, buf))
    }
}

impl AsyncWrite for Tap {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.with(|stream| stream.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.with(|stream| stream.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.with(|stream| stream.poll_shutdown(cx))
    }
}

/// A socket on which `postgres` has logged in and the server waits for a query.
async fn authenticated_socket(cluster: &Cluster, port: u16) -> anyhow::Result<TcpStream> {
    let tap = Tap(Arc::new(Mutex::new(Some(TcpStream::connect(("127.0.0.1", port)).await?))));
    let config: tokio_postgres::Config = cluster.conninfo(port).parse()?;
    let (client, connection) = config.connect_raw(tap.clone(), tokio_postgres::NoTls).await?;
    // Login ended at ReadyForQuery; nothing else was read or sent.
    drop((client, connection));
    let stream = tap.0.lock().expect("tap lock poisoned").take();
    stream.ok_or_else(|| anyhow::anyhow!("the login took the socket"))
}

/// One field of a message body.
#[derive(Clone, Debug)]
enum Field {
    Text(String),
    /// A string without its terminating zero.
    Unterminated(String),
    Int16(i16),
    Int32(i32),
    Bytes(Vec<u8>),
}

/// The length word of a message.
#[derive(Clone, Debug)]
enum Length {
    Right,
    Off(i32),
    Absurd(i32),
}

#[derive(Clone, Debug)]
struct Message {
    tag: u8,
    length: Length,
    body: Vec<Field>,
}

impl Message {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::new();
        for field in &self.body {
            match field {
                Field::Text(text) => {
                    body.extend_from_slice(text.as_bytes());
                    body.push(0);
                }
                Field::Unterminated(text) => body.extend_from_slice(text.as_bytes()),
                Field::Int16(value) => body.extend_from_slice(&value.to_be_bytes()),
                Field::Int32(value) => body.extend_from_slice(&value.to_be_bytes()),
                Field::Bytes(bytes) => body.extend_from_slice(bytes),
            }
        }
        let right = i32::try_from(body.len() + 4).expect("bodies are small");
        let length = match self.length {
            Length::Right => right,
            Length::Off(delta) => right.saturating_add(delta),
            Length::Absurd(value) => value,
        };
        out.push(self.tag);
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&body);
    }
}

fn field() -> impl Strategy<Value = Field> {
    let words = prop::sample::select(vec![
        "",
        "SELECT 1",
        "SELECT $1::int4",
        "SELECT * FROM pg_class",
        "BEGIN",
        "COMMIT",
        "COPY t FROM STDIN",
        "S_1",
        "P_1",
        "client_encoding",
        "SCRAM-SHA-256",
        "\u{fffd}\u{0}x",
    ]);
    prop_oneof![
        words.clone().prop_map(|w| Field::Text(w.to_string())),
        words.prop_map(|w| Field::Unterminated(w.to_string())),
        prop::sample::select(vec![0i16, 1, 2, -1, i16::MIN, i16::MAX]).prop_map(Field::Int16),
        prop::sample::select(vec![0i32, 1, -1, 23, 25, i32::MIN, i32::MAX, 1 << 30]).prop_map(Field::Int32),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(Field::Bytes),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    // Frontend message types, and any byte at all.
    let tag = prop_oneof![4 => prop::sample::select(b"QPBEDSHCXdcfFp".to_vec()), 1 => any::<u8>()];
    let length = prop_oneof![
        6 => Just(Length::Right),
        2 => (-8i32..8).prop_map(Length::Off),
        1 => prop::sample::select(vec![0i32, 3, -1, i32::MIN, i32::MAX, 1 << 30]).prop_map(Length::Absurd),
    ];
    (tag, length, prop::collection::vec(field(), 0..6)).prop_map(|(tag, length, body)| Message { tag, length, body })
}

/// Bytes after login: a few messages, the last possibly cut short.
fn session_bytes() -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::vec(message(), 1..5), any::<prop::sample::Index>(), any::<bool>()).prop_map(
        |(messages, cut, truncate)| {
            let mut bytes = Vec::new();
            for message in &messages {
                message.encode(&mut bytes);
            }
            if truncate && bytes.len() > 1 {
                bytes.truncate(cut.index(bytes.len()));
            }
            bytes
        },
    )
}

/// Bytes of a startup phase: a startup-like packet and maybe more garbage.
fn startup_bytes() -> impl Strategy<Value = Vec<u8>> {
    let code = prop::sample::select(vec![196_608i32, 196_609, 131_072, 80_877_103, 80_877_102, 80_877_104, 0, -1]);
    let parameter = prop::sample::select(vec!["user", "database", "options", "replication", "", "x"]);
    let value = prop::sample::select(vec!["postgres", "nosuchdb", "", "-c search_path=x", "\u{fffd}"]);
    let length = prop_oneof![3 => Just(None), 1 => prop::sample::select(vec![0i32, 4, 7, 8, -1, 10_001, i32::MAX]).prop_map(Some)];
    (
        code,
        prop::collection::vec((parameter, value), 0..4),
        any::<bool>(),
        length,
        prop::collection::vec(any::<u8>(), 0..32),
    )
        .prop_map(|(code, parameters, terminated, length, tail)| {
            let mut body = code.to_be_bytes().to_vec();
            for (name, value) in parameters {
                for text in [name, value] {
                    body.extend_from_slice(text.as_bytes());
                    body.push(0);
                }
            }
            if terminated {
                body.push(0);
            }
            let length = length.unwrap_or_else(|| i32::try_from(body.len() + 4).expect("startup bodies are small"));
            let mut bytes = length.to_be_bytes().to_vec();
            bytes.extend_from_slice(&body);
            bytes.extend_from_slice(&tail);
            bytes
        })
}

/// Sends `bytes`, closes the sending side, and reads until the server closes.
/// Fails if the server keeps the connection open past `CLOSE_TIMEOUT`.
async fn send_and_expect_close(mut stream: TcpStream, bytes: &[u8]) -> Result<(), TestCaseError> {
    // The server may close before reading everything: write errors are answers too.
    if stream.write_all(bytes).await.is_ok() {
        let _ = stream.shutdown().await;
    }
    let mut received = 0usize;
    let mut buffer = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => {
                return Err(TestCaseError::fail(format!("server kept the connection open ({received} bytes read)")));
            }
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            Ok(Ok(count)) => {
                received += count;
                if received > RESPONSE_BYTES_MAX {
                    return Err(TestCaseError::fail(format!("server sent over {RESPONSE_BYTES_MAX} bytes")));
                }
            }
        }
    }
}

/// Runs `cases` of `strategy` through `case`, checking `witness` after each.
fn fuzz<S: Strategy<Value = Vec<u8>>>(
    runtime: &tokio::runtime::Runtime,
    witness: &tokio_postgres::Client,
    strategy: S,
    case: impl Fn(Vec<u8>) -> Result<(), TestCaseError>,
) -> anyhow::Result<u32> {
    let config = Config { cases: CASES_PER_KIND, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &SEED));
    let started = Instant::now();
    let ran = std::cell::Cell::new(0u32);
    let result = runner.run(&strategy, |bytes| {
        if started.elapsed() > BUDGET {
            return Ok(());
        }
        case(bytes)?;
        ran.set(ran.get() + 1);
        let answer: Result<i32, _> = runtime.block_on(async { witness.query_one("SELECT 1", &[]).await?.try_get(0) });
        match answer {
            Ok(1) => Ok(()),
            other => Err(TestCaseError::fail(format!("the witness session stopped answering: {other:?}"))),
        }
    });
    result.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(ran.get())
}

#[test]
fn malformed_messages_close_only_their_connection() -> anyhow::Result<()> {
    let cluster = Cluster::start_new(0)?;
    let port = cluster.ports.writer;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let witness = runtime.block_on(cluster.connect(port))?;

    let before_login = fuzz(&runtime, &witness, startup_bytes(), |bytes| {
        runtime.block_on(async {
            let stream =
                TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
            send_and_expect_close(stream, &bytes).await
        })
    })?;
    let after_login = fuzz(&runtime, &witness, session_bytes(), |bytes| {
        runtime.block_on(async {
            let stream = authenticated_socket(&cluster, port).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
            send_and_expect_close(stream, &bytes).await
        })
    })?;
    assert!(before_login > 0 && after_login > 0, "no case ran ({before_login}, {after_login})");

    // The writer still serves new sessions, and nothing panicked anywhere.
    let fresh = runtime.block_on(cluster.connect(cluster.ports.cluster))?;
    let one: i32 = runtime.block_on(fresh.query_one("SELECT 1", &[]))?.get(0);
    assert_eq!(one, 1);
    for entry in std::fs::read_dir(cluster.data_dir().join("logs"))?.flatten() {
        let log = std::fs::read_to_string(entry.path())?;
        assert!(!log.contains("panicked"), "{} holds a panic:\n{log}", entry.path().display());
    }
    eprintln!("fuzzed {before_login} startup cases and {after_login} session cases");
    Ok(())
}
