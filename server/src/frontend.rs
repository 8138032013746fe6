//! The PostgreSQL front end: one pgwire connection per client, each with its
//! own SQL session.
//!
//! A statement arrives as a simple query (text, possibly several statements)
//! or through the extended protocol (Parse/Bind/Describe/Execute). Either way
//! it goes to the connection's `borealis_sql::Session`; results come back as
//! Arrow batches and are encoded here in text or binary per column. Errors
//! carry their SQLSTATE from the SQL layer (DESIGN.md invariant 9): this is
//! the only place they become ErrorResponses.
//!
//! Startup: TLS if the client asks (and, when the cluster file says so, only
//! with TLS), then SCRAM-SHA-256 against the catalog's roles (`Roles`,
//! `Startup`); the session then runs as the role that logged in.
//!
//! COPY FROM STDIN: the statement answers CopyInResponse; each CopyData then
//! goes to the session as it arrives (nothing is buffered here), and
//! CopyDone ends it with `COPY n` or the first error the data caused.
//! COPY TO STDOUT streams its rows as CopyData (`crate::copy_out`).

use crate::pgtypes;
use crate::wire::Checked;
use async_trait::async_trait;
use borealis_sql::{Engine, QueryOutput, Session, SqlError};
use futures::stream;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::sasl::scram::{ScramAuth, ScramSecret, random_nonce};
use pgwire::api::auth::{
    AuthDriver, AuthOutcome, AuthSource, DefaultServerParameterProvider, LoginInfo, Password, ServerParameterProvider,
    StartupHandler, protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{CopyResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ConnectionManager, METADATA_USER, PgWireConnectionState, PgWireServerHandlers, Type};
use pgwire::api::{ClientPortalStore, DEFAULT_NAME};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{Describe, TARGET_TYPE_BYTE_STATEMENT};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_util::codec::{Framed, FramedParts};
use tracing::{debug, info, warn};

use borealis_sql::functions::{DATABASE_NAME, POSTGRES_VERSION};
use borealis_sql::roles::{SCRAM_ITERATIONS, ScramVerifier};
/// The superuser role.
pub const SUPERUSER_NAME: &str = "postgres";
/// Client metadata key under which a connection's role records whether it is
/// a superuser, for the `is_superuser` ParameterStatus.
const METADATA_IS_SUPERUSER: &str = "borealis.is_superuser";

/// What `server_version` reports: PostgreSQL 16 compatible, as `version()` does.
fn server_version() -> String {
    format!("{POSTGRES_VERSION} (Borealis {})", env!("CARGO_PKG_VERSION"))
}

fn fatal(sqlstate: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), sqlstate.into(), message)))
}

/// The role a SCRAM exchange authenticates, as the catalog had it when the
/// exchange began.
#[derive(Clone, Debug)]
pub struct Login {
    name: String,
    can_login: bool,
    superuser: bool,
}

/// Answers SCRAM look-ups from the catalog's roles; the bootstrap superuser
/// `postgres` has the cluster file's password. Only verifiers are held, so
/// no password is ever compared or logged here. An unknown role, or one
/// without a password, gets a made-up verifier and fails at the proof with
/// the same 28P01 as a wrong password: the exchange does not reveal which
/// roles exist.
pub struct Roles {
    engine: Arc<Engine>,
    superuser: ScramVerifier,
    /// Random per process: makes the made-up salt of an unknown role stable
    /// (a client asking twice sees the same salt, as for a real role).
    mock_secret: [u8; 32],
}

impl Debug for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Roles").finish_non_exhaustive()
    }
}

impl Roles {
    /// Roles of `engine`, with `password` for the bootstrap superuser. The
    /// superuser's verifier is computed once: PBKDF2 per connection would
    /// cost more than the queries of a short session.
    pub fn new(engine: Arc<Engine>, password: &str) -> Roles {
        let salt = random_nonce().into_bytes();
        let superuser = ScramVerifier::compute(password, &salt, SCRAM_ITERATIONS);
        let mut mock_secret = [0u8; 32];
        mock_secret.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, random_nonce().as_bytes()).as_ref());
        Roles { engine, superuser, mock_secret }
    }

    /// A verifier no password matches, with a salt stable for `user`.
    fn mock_verifier(&self, user: &str) -> ScramVerifier {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(&self.mock_secret);
        context.update(user.as_bytes());
        let digest = context.finish();
        let random = random_nonce().into_bytes();
        ScramVerifier {
            iterations: SCRAM_ITERATIONS,
            salt: digest.as_ref()[..16].to_vec(),
            stored_key: ring::digest::digest(&ring::digest::SHA256, &random).as_ref().to_vec(),
            server_key: ring::digest::digest(&ring::digest::SHA256, random_nonce().as_bytes()).as_ref().to_vec(),
        }
    }
}

fn scram_secret(verifier: ScramVerifier) -> ScramSecret {
    ScramSecret::Verifier {
        salt: verifier.salt,
        iterations: verifier.iterations as usize,
        stored_key: verifier.stored_key,
        server_key: verifier.server_key,
    }
}

#[async_trait]
impl AuthSource<Login> for Roles {
    /// Only SCRAM is offered, which asks [`AuthSource::get_scram_secret`].
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        Err(PgWireError::InvalidPassword(login.user().unwrap_or_default().to_string()))
    }

    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<Login>)> {
        let user = login.user().unwrap_or_default();
        if let Some(database) = login.database()
            && database != DATABASE_NAME
        {
            return Err(fatal("3D000", format!("database \"{database}\" does not exist")));
        }
        if user == SUPERUSER_NAME {
            let login = Login { name: user.to_string(), can_login: true, superuser: true };
            return Ok((scram_secret(self.superuser.clone()), Some(login)));
        }
        let role = self.engine.role(user).await.map_err(|e| {
            log_statement_error(&e);
            PgWireError::UserError(Box::new(error_info(&e)))
        })?;
        let verifier = role.as_ref().and_then(|role| role.password.as_deref()).and_then(ScramVerifier::parse);
        match (role, verifier) {
            (Some(role), Some(verifier)) => {
                let login = Login { name: role.name.clone(), can_login: role.login, superuser: role.superuser };
                Ok((scram_secret(verifier), Some(login)))
            }
            _ => Ok((scram_secret(self.mock_verifier(user)), None)),
        }
    }
}

/// Server parameters: pgwire's, with `is_superuser` and
/// `session_authorization` of the connection's role.
pub struct Parameters(DefaultServerParameterProvider);

impl ServerParameterProvider for Parameters {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let mut parameters = self.0.server_parameters(client)?;
        if let Some(superuser) = client.metadata().get(METADATA_IS_SUPERUSER) {
            parameters.insert("is_superuser".into(), superuser.clone());
        }
        if let Some(user) = client.metadata().get(METADATA_USER) {
            parameters.insert("session_authorization".into(), user.clone());
        }
        Some(parameters)
    }
}

/// What every connection of one instance shares.
pub struct Frontend {
    engine: Arc<Engine>,
    roles: Arc<Roles>,
    parameters: Arc<Parameters>,
    /// Offered to clients that ask for TLS (`sslmode=require`).
    tls: Option<pgwire::tokio::TlsAcceptor>,
    /// Plain connections are refused at startup (28000), as a PostgreSQL
    /// with only `hostssl` lines in pg_hba.conf refuses them.
    tls_required: bool,
    /// Connections by (process id, secret key), for CancelRequest.
    connections: Arc<ConnectionManager>,
}

/// A TLS acceptor for PostgreSQL clients from the cluster's node
/// certificate, which the cluster CA signed for localhost and loopback, so
/// `sslmode=verify-full sslrootcert=<data>/tls/ca.pem` verifies it.
pub fn tls_acceptor(tls_dir: &std::path::Path) -> anyhow::Result<pgwire::tokio::TlsAcceptor> {
    use anyhow::Context;
    use borealis_storage::tls::{NODE_CERT_FILE, NODE_KEY_FILE};
    let cert_path = tls_dir.join(NODE_CERT_FILE);
    let key_path = tls_dir.join(NODE_KEY_FILE);
    let chain = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(&cert_path).with_context(|| format!("failed to open {}", cert_path.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("failed to read {}", cert_path.display()))?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(&key_path).with_context(|| format!("failed to open {}", key_path.display()))?,
    ))
    .with_context(|| format!("failed to read {}", key_path.display()))?
    .with_context(|| format!("no private key in {}", key_path.display()))?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("failed to build the TLS configuration")?;
    Ok(pgwire::tokio::TlsAcceptor::from(Arc::new(config)))
}

impl Frontend {
    /// A front end over `engine`; `read_only` is reported to clients as
    /// `default_transaction_read_only` (readers); `password` is the bootstrap
    /// superuser's. With `tls_required`, `tls` must be given.
    pub fn new(
        engine: Arc<Engine>,
        password: &str,
        read_only: bool,
        tls: Option<pgwire::tokio::TlsAcceptor>,
        tls_required: bool,
    ) -> Frontend {
        assert!(tls.is_some() || !tls_required, "TLS required without a TLS acceptor");
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = server_version();
        parameters.default_transaction_read_only = read_only;
        parameters.in_hot_standby = read_only;
        parameters.scram_iterations = SCRAM_ITERATIONS as usize;
        Frontend {
            roles: Arc::new(Roles::new(Arc::clone(&engine), password)),
            engine,
            parameters: Arc::new(Parameters(parameters)),
            tls,
            tls_required,
            connections: Arc::new(ConnectionManager::new()),
        }
    }

    /// Accepts connections until the listener fails; each runs in its own task.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (socket, peer) = listener.accept().await?;
            if let Err(e) = socket.set_nodelay(true) {
                debug!(%peer, "failed to set TCP_NODELAY: {e}");
            }
            let connection = Arc::new(Connection::new(&self));
            let tls = self.tls.clone();
            tokio::spawn(async move {
                debug!(%peer, "connection opened");
                if let Err(e) = serve_socket(socket, tls, connection).await {
                    debug!(%peer, "connection ended: {e}");
                }
            });
        }
    }
}

/// How long a client may take from connecting to finishing authentication
/// (pgwire's and PostgreSQL's authentication_timeout: 60 s).
const STARTUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Serves one client connection: TLS negotiation, then pgwire's message
/// loop over a stream whose frontend messages are checked first (see
/// `crate::wire`: pgwire's decoders read past a malformed message's body).
/// A malformed message gets a FATAL 08P01 and the connection is closed.
/// This is pgwire's `process_socket` with that check added.
async fn serve_socket(
    socket: tokio::net::TcpStream,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    connection: Arc<Connection>,
) -> std::io::Result<()> {
    let startup_deadline = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_deadline);
    let negotiated = tokio::select! {
        _ = &mut startup_deadline => return Ok(()),
        negotiated = negotiate_tls::<PreparedStatement>(socket, tls) => negotiated?,
    };
    // None: a direct TLS handshake without an acceptor; nothing to answer.
    let Some(framed) = negotiated else { return Ok(()) };
    let old = framed.into_parts();
    let mut parts = FramedParts::new(Checked::new(old.io, &old.read_buf), old.codec);
    parts.read_buf = old.read_buf;
    parts.write_buf = old.write_buf;
    let mut socket = Framed::from_parts(parts);
    loop {
        let starting = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup | PgWireConnectionState::AuthenticationInProgress
        );
        let next = if starting {
            tokio::select! {
                _ = &mut startup_deadline => None,
                next = socket.next() => next,
            }
        } else {
            socket.next().await
        };
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(PgWireError::IoError(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
                debug!("closing a connection that sent {e}");
                process_error(&mut socket, fatal("08P01", e.to_string()), false).await?;
                return Ok(());
            }
            Some(Err(e)) => {
                // pgwire's decode errors (unknown message type, too large, ...).
                if !matches!(e, PgWireError::IoError(_)) {
                    process_error(&mut socket, e, false).await?;
                }
                return Ok(());
            }
            None => return Ok(()),
        };
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            return Ok(());
        }
        let extended = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let cancel_request = matches!(message, PgWireFrontendMessage::CancelRequest(_));
        let handler = Arc::clone(&connection.handler);
        let result = process_message(
            message,
            &mut socket,
            Arc::clone(&connection.startup),
            Arc::clone(&handler),
            Arc::clone(&handler),
            handler,
            Arc::clone(&connection.cancel),
        )
        .await;
        if let Err(e) = result {
            let fatal = e.is_fatal();
            process_error(&mut socket, e, extended).await?;
            if fatal {
                return Ok(());
            }
        }
        if cancel_request {
            return Ok(());
        }
    }
}

/// One client connection: its SQL session and the pgwire handlers.
struct Connection {
    handler: Arc<Handler>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl Connection {
    fn new(frontend: &Frontend) -> Connection {
        let session = Arc::new(Mutex::new(frontend.engine.session()));
        let handler =
            Arc::new(Handler { session: session.clone(), parser: Arc::new(Parser { session: session.clone() }) });
        let startup = Arc::new(Startup {
            driver: AuthDriver::new(Arc::clone(&frontend.parameters))
                .with_connection_manager(Arc::clone(&frontend.connections)),
            scram: ScramAuth::new(Arc::clone(&frontend.roles) as Arc<dyn AuthSource<Login>>),
            session,
            tls_required: frontend.tls_required,
        });
        // A cancelled statement's future is dropped; the session fails its
        // block, as PostgreSQL does, and the client gets 57014.
        let cancel = Arc::new(DefaultCancelHandler::new(frontend.connections.clone()));
        Connection { handler, startup, cancel }
    }
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.handler.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.handler.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.handler.clone()
    }
}

/// Startup of one connection: the TLS policy, SCRAM-SHA-256 against the
/// catalog's roles, then the LOGIN check, after which the session runs as
/// the role. Every failure is FATAL and closes the connection; a wrong
/// password or unknown role is 28P01, with no detail and no log line that
/// could tell them apart.
struct Startup {
    driver: AuthDriver<Arc<Parameters>, Login>,
    scram: ScramAuth<Login>,
    session: Arc<Mutex<Session>>,
    tls_required: bool,
}

/// PostgreSQL's wording for a failed password exchange.
fn authentication_error(error: PgWireError) -> PgWireError {
    match error {
        PgWireError::InvalidPassword(user) => {
            fatal("28P01", format!("password authentication failed for user \"{user}\""))
        }
        other => other,
    }
}

impl Startup {
    async fn finish<C>(&self, client: &mut C, outcome: AuthOutcome<Login>) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let AuthOutcome::Authenticated { identity, final_message } = outcome else { return Ok(()) };
        let Some(login) = identity else {
            // Mock verifiers cannot be satisfied, so this is unreachable in
            // practice; refuse rather than run as nobody.
            return Err(fatal("28P01", "password authentication failed".into()));
        };
        if !login.can_login {
            return Err(fatal("28000", format!("role \"{}\" is not permitted to log in", login.name)));
        }
        client.metadata_mut().insert(METADATA_IS_SUPERUSER.into(), if login.superuser { "on" } else { "off" }.into());
        let mut session = self.session.lock().await;
        session.set_user(&login.name, login.superuser);
        // A client's TimeZone (pgjdbc sends the JVM's as "TimeZone", libpq
        // PGTZ's as "timezone") applies as a SET would; one Borealis does
        // not know leaves UTC.
        let zone = client.metadata().iter().find(|(name, _)| name.eq_ignore_ascii_case("timezone"));
        if let Some((_, zone)) = zone
            && let Err(error) = session.set_startup_parameter("TimeZone", zone)
        {
            tracing::debug!(%zone, %error, "startup TimeZone ignored");
        }
        drop(session);
        self.driver.complete_authentication(client, final_message).await
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if self.tls_required && !client.is_secure() {
                    let user = client.metadata().get(METADATA_USER).cloned().unwrap_or_default();
                    return Err(fatal(
                        "28000",
                        format!(
                            "connection from host \"{}\" for user \"{user}\" refused: the cluster requires TLS \
                             (connect with sslmode=require or stronger)",
                            client.socket_addr().ip()
                        ),
                    ));
                }
                let outcome = self
                    .driver
                    .begin_authentication(client, self.scram.create())
                    .await
                    .map_err(authentication_error)?;
                self.finish(client, outcome).await
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                let outcome =
                    self.driver.advance_authentication(client, message).await.map_err(authentication_error)?;
                self.finish(client, outcome).await
            }
            _ => Ok(()),
        }
    }
}

struct Handler {
    session: Arc<Mutex<Session>>,
    parser: Arc<Parser>,
}

fn error_info(error: &SqlError) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".into(), error.sqlstate().to_string(), error.message().to_string());
    info.detail = error.detail().map(str::to_string);
    info
}

/// Turns one statement's output into a pgwire response.
fn respond(output: QueryOutput, format: &Format) -> PgWireResult<Response> {
    match output {
        QueryOutput::Rows { schema, batches } => {
            let fields = Arc::new(pgtypes::fields(&schema, format));
            let mut rows = Vec::new();
            for batch in &batches {
                rows.extend(pgtypes::encode_batch(&fields, batch)?.into_iter().map(Ok));
            }
            Ok(Response::Query(QueryResponse::new(fields, stream::iter(rows))))
        }
        QueryOutput::Returning { command, schema, batches } => {
            let fields = Arc::new(pgtypes::fields(&schema, format));
            let mut rows = Vec::new();
            for batch in &batches {
                rows.extend(pgtypes::encode_batch(&fields, batch)?.into_iter().map(Ok));
            }
            let mut response = QueryResponse::new(fields, stream::iter(rows));
            // pgwire appends the row count: "INSERT 0 3", "UPDATE 2".
            response.set_command_tag(command);
            Ok(Response::Query(response))
        }
        QueryOutput::CopyIn { columns } => {
            Ok(Response::CopyIn(CopyResponse::new(0, columns, stream::empty::<PgWireResult<CopyData>>())))
        }
        QueryOutput::CopyOut { format, schema, rows } => Ok(crate::copy_out::response(format, schema, rows)),
        QueryOutput::Command { tag } => {
            let command = tag.split_whitespace().next().unwrap_or_default();
            let response_tag = Tag::new(&tag);
            Ok(match command {
                "BEGIN" | "START" => Response::TransactionStart(response_tag),
                "COMMIT" | "ROLLBACK" => Response::TransactionEnd(response_tag),
                _ => Response::Execution(response_tag),
            })
        }
    }
}

#[async_trait]
impl CopyHandler for Handler {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.session.lock().await.copy_data(&copy_data.data).await;
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let result = self.session.lock().await.copy_done().await;
        match result {
            Ok(QueryOutput::Command { tag }) => {
                client.send(PgWireBackendMessage::CommandComplete(Tag::new(&tag).into())).await?;
                Ok(())
            }
            Ok(other) => Err(PgWireError::ApiError(format!("COPY ended with {other:?}").into())),
            Err(error) => {
                log_statement_error(&error);
                Err(PgWireError::UserError(Box::new(error_info(&error))))
            }
        }
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let error = self.session.lock().await.copy_fail(&fail.message);
        PgWireError::UserError(Box::new(error_info(&error)))
    }
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut session = self.session.lock().await;
        let (outputs, error) = match session.statement_timeout() {
            None => session.execute_batch(query).await,
            Some(limit) => match tokio::time::timeout(limit, session.execute_batch(query)).await {
                Ok(result) => result,
                Err(_) => (Vec::new(), Some(statement_timeout_error())),
            },
        };
        send_notices(client, session.take_notices()).await?;
        let mut responses = outputs
            .into_iter()
            .map(|output| respond(output, &Format::UnifiedText))
            .collect::<PgWireResult<Vec<_>>>()?;
        if let Some(error) = error {
            log_statement_error(&error);
            responses.push(Response::Error(Box::new(error_info(&error))));
        }
        Ok(responses)
    }
}

/// Sends the notices statements raised (NoticeResponse, severity NOTICE,
/// SQLSTATE 00000) ahead of their results.
async fn send_notices<C>(client: &mut C, notices: Vec<String>) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for message in notices {
        let info = ErrorInfo::new("NOTICE".into(), "00000".into(), message);
        client.feed(PgWireBackendMessage::NoticeResponse(info.into())).await?;
    }
    Ok(())
}

/// What a statement that outlived `statement_timeout` reports; its future is
/// dropped, which fails the open block like a cancel does.
fn statement_timeout_error() -> SqlError {
    SqlError::new(borealis_sql::sqlstate::QUERY_CANCELED, "canceling statement due to statement timeout")
}

fn log_statement_error(error: &SqlError) {
    if error.sqlstate().starts_with("XX") || error.sqlstate().starts_with("58") {
        warn!(sqlstate = error.sqlstate(), "statement failed: {}", error.message());
    } else {
        debug!(sqlstate = error.sqlstate(), "statement failed: {}", error.message());
    }
}

/// A statement parsed for the extended protocol.
#[derive(Clone, Debug)]
pub struct PreparedStatement {
    sql: String,
    parameter_types: Vec<Type>,
    schema: Option<arrow::datatypes::SchemaRef>,
}

struct Parser {
    session: Arc<Mutex<Session>>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = PreparedStatement;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<PreparedStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let declared: Vec<_> = types.iter().map(|ty| ty.as_ref().and_then(pgtypes::arrow_type)).collect();
        let described = self.session.lock().await.describe_typed(sql, &declared).await.map_err(|e| {
            log_statement_error(&e);
            PgWireError::UserError(Box::new(error_info(&e)))
        })?;
        let count = described.param_types.len().max(types.len());
        let parameter_types = (0..count)
            .map(|index| match types.get(index) {
                Some(Some(declared)) if *declared != Type::UNKNOWN => declared.clone(),
                _ => described.param_types.get(index).map_or(Type::TEXT, pgtypes::pg_type),
            })
            .collect();
        Ok(Some(PreparedStatement { sql: sql.to_string(), parameter_types, schema: described.schema }))
    }

    fn get_parameter_types(&self, statement: &PreparedStatement) -> PgWireResult<Vec<Type>> {
        Ok(statement.parameter_types.clone())
    }

    fn get_result_schema(
        &self,
        statement: &PreparedStatement,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(match &statement.schema {
            Some(schema) => pgtypes::fields(schema, format.unwrap_or(&Format::UnifiedText)),
            None => Vec::new(),
        })
    }
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = PreparedStatement;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    /// Describe of a statement that returns no rows (INSERT, CREATE TABLE,
    /// ...) answers ParameterDescription and NoData, as PostgreSQL does.
    /// pgwire would send an empty RowDescription once the statement has
    /// parameters, which pgjdbc takes for a result set: `executeUpdate`
    /// then fails with "A result was returned when none was expected" and
    /// batches count 0 rows.
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if message.target_type == TARGET_TYPE_BYTE_STATEMENT {
            let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
            if let Some(Entry::Value(stored)) = client.portal_store().get_statement(name)
                && stored.statement.schema.is_none()
            {
                let oids = stored.statement.parameter_types.iter().map(Type::oid).collect();
                client.send(PgWireBackendMessage::ParameterDescription(ParameterDescription::new(oids))).await?;
                client.send(PgWireBackendMessage::NoData(NoData::new())).await?;
                return Ok(());
            }
        }
        self._on_describe(client, message).await
    }

    /// Runs the portal's statement to completion. A row limit on Execute
    /// (`max_rows`) is applied by pgwire to the response returned here: it
    /// keeps the rest in the portal's state, answers PortalSuspended, and
    /// the next Execute on the portal continues from there without
    /// calling this again. The rows are already computed, so a suspended
    /// portal holds no read point or lock, only memory.
    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<PreparedStatement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = &portal.statement.statement;
        let parameters = pgtypes::decode_parameters(portal, &statement.parameter_types)?;
        let mut session = self.session.lock().await;
        let result = match session.statement_timeout() {
            None => session.execute_with_params(&statement.sql, parameters).await,
            Some(limit) => tokio::time::timeout(limit, session.execute_with_params(&statement.sql, parameters))
                .await
                .unwrap_or_else(|_| Err(statement_timeout_error())),
        };
        send_notices(client, session.take_notices()).await?;
        match result {
            Ok(output) => respond(output, &portal.result_column_format),
            Err(error) => {
                log_statement_error(&error);
                Ok(Response::Error(Box::new(error_info(&error))))
            }
        }
    }
}

/// Binds `addr` and serves the front end; logs where it listens.
pub async fn listen(frontend: Arc<Frontend>, addr: std::net::SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    info!(%addr, "accepting PostgreSQL connections");
    frontend.serve(listener).await
}
