//! Roles: CREATE ROLE / CREATE USER, ALTER ROLE / ALTER USER and DROP ROLE /
//! DROP USER, stored as catalog rows (see `crate::catalog::RoleDef`), and
//! the SCRAM-SHA-256 verifiers the front end checks logins against.
//!
//! A statement's path: the engine runs it in a write transaction like other
//! DDL (so it commits, rolls back and reaches readers as they do); here the
//! options are checked against the role running it, a password is turned
//! into PostgreSQL's SCRAM-SHA-256 verifier at once, and the catalog row is
//! written. The password itself is never stored, logged or shown; psql's
//! `\password` sends a verifier it computed itself, which is stored as given.
//!
//! Privileges: only a superuser creates, drops or alters roles, except that
//! any role may change its own password (as PostgreSQL allows). The
//! bootstrap superuser `postgres` is built in (its password is the cluster
//! file's) and cannot be altered or dropped here.

use crate::catalog::{self, Catalog, RoleDef, TableId};
use crate::error::{SqlError, sqlstate};
use crate::functions::SUPERUSER_NAME;
use crate::heap::WriteSet;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use datafusion::sql::sqlparser::ast::{
    AlterRoleOperation, CreateRole, Expr, Ident, ObjectName, ObjectNamePart, Password, RoleOption, Value,
};
use std::num::NonZeroU32;

/// PBKDF2 iterations of a new verifier: PostgreSQL's default
/// (`scram_iterations`), which clients also expect to pay at login.
pub const SCRAM_ITERATIONS: u32 = 4096;
/// Bytes of random salt per verifier, as PostgreSQL generates.
const SCRAM_SALT_BYTES: usize = 16;
/// Fewest PBKDF2 iterations a given verifier may have: fewer would make it
/// cheap to brute-force; PostgreSQL itself never generates fewer than 4096.
const SCRAM_ITERATIONS_MIN: u32 = 1;
/// Most PBKDF2 iterations a given verifier may have: every login pays them.
const SCRAM_ITERATIONS_MAX: u32 = 1_000_000;
/// Longest role name, as PostgreSQL's NAMEDATALEN - 1.
const ROLE_NAME_BYTES_MAX: usize = 63;

/// 42501: the session's role may not do this.
const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// 42710: a role of that name exists.
const DUPLICATE_OBJECT: &str = "42710";
/// 42939: names starting with `pg_` are reserved.
const RESERVED_NAME: &str = "42939";
/// 55006: the role is in use (the session's own).
const OBJECT_IN_USE: &str = "55006";

/// A role's SCRAM-SHA-256 verifier, decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    /// SHA-256(HMAC(SaltedPassword, "Client Key")).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramVerifier").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

impl ScramVerifier {
    /// The verifier of `password` with `salt`, as PostgreSQL computes it
    /// (the password SASLprep-normalised, or taken as is when that fails).
    pub fn compute(password: &str, salt: &[u8], iterations: u32) -> ScramVerifier {
        let normalized = stringprep::saslprep(password).unwrap_or(std::borrow::Cow::Borrowed(password));
        let mut salted = [0u8; 32];
        let rounds = NonZeroU32::new(iterations).expect("verifier iterations are positive");
        ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA256, rounds, salt, normalized.as_bytes(), &mut salted);
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &salted);
        let client_key = ring::hmac::sign(&key, b"Client Key");
        let stored_key = ring::digest::digest(&ring::digest::SHA256, client_key.as_ref()).as_ref().to_vec();
        let server_key = ring::hmac::sign(&key, b"Server Key").as_ref().to_vec();
        ScramVerifier { iterations, salt: salt.to_vec(), stored_key, server_key }
    }

    /// A verifier of `password` with a fresh random salt.
    pub fn generate(password: &str) -> Result<ScramVerifier, SqlError> {
        let mut salt = [0u8; SCRAM_SALT_BYTES];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
            .map_err(|_| SqlError::internal("no random bytes for a password salt"))?;
        Ok(ScramVerifier::compute(password, &salt, SCRAM_ITERATIONS))
    }

    /// PostgreSQL's text form: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn to_text(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            BASE64.encode(&self.salt),
            BASE64.encode(&self.stored_key),
            BASE64.encode(&self.server_key)
        )
    }

    /// Parses the text form; None if `text` is not a well-formed verifier.
    pub fn parse(text: &str) -> Option<ScramVerifier> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (iterations_salt, keys) = rest.split_once('$')?;
        let (iterations, salt) = iterations_salt.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        let iterations: u32 = iterations.parse().ok()?;
        let verifier = ScramVerifier {
            iterations,
            salt: BASE64.decode(salt).ok()?,
            stored_key: BASE64.decode(stored_key).ok()?,
            server_key: BASE64.decode(server_key).ok()?,
        };
        let well_formed = (SCRAM_ITERATIONS_MIN..=SCRAM_ITERATIONS_MAX).contains(&iterations)
            && !verifier.salt.is_empty()
            && verifier.stored_key.len() == 32
            && verifier.server_key.len() == 32;
        well_formed.then_some(verifier)
    }
}

/// Who runs a role statement: the session's role and whether the catalog
/// (or the built-in superuser) makes it a superuser.
pub struct Actor<'a> {
    pub name: &'a str,
    pub superuser: bool,
}

/// Whether `name` is a superuser in `catalog` (the built-in one always is).
pub fn is_superuser(catalog: &Catalog, name: &str) -> bool {
    name == SUPERUSER_NAME || catalog.role(name).is_some_and(|entry| entry.def.superuser)
}

fn insufficient(message: impl Into<String>) -> SqlError {
    SqlError::new(INSUFFICIENT_PRIVILEGE, message)
}

fn role_missing(name: &str) -> SqlError {
    SqlError::new(sqlstate::UNDEFINED_OBJECT, format!("role \"{name}\" does not exist"))
}

fn builtin(name: &str) -> bool {
    name == SUPERUSER_NAME || name == "pg_database_owner"
}

/// A role name as PostgreSQL folds it: lower case unless quoted.
fn role_name(ident: &Ident) -> String {
    if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() }
}

fn object_role_name(name: &ObjectName) -> Result<String, SqlError> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] => Ok(role_name(ident)),
        _ => Err(SqlError::new(sqlstate::SYNTAX_ERROR, format!("invalid role name \"{name}\""))),
    }
}

/// The verifier to store for a PASSWORD clause: None for `PASSWORD NULL`.
fn password_verifier(password: &Password) -> Result<Option<String>, SqlError> {
    let Password::Password(expr) = password else { return Ok(None) };
    let text = match expr {
        Expr::Value(value) => match &value.value {
            Value::SingleQuotedString(text) | Value::EscapedStringLiteral(text) => text.clone(),
            Value::Null => return Ok(None),
            _ => return Err(SqlError::new(sqlstate::SYNTAX_ERROR, "a password must be a string literal")),
        },
        _ => return Err(SqlError::new(sqlstate::SYNTAX_ERROR, "a password must be a string literal")),
    };
    if text.starts_with("SCRAM-SHA-256$") {
        // Hashed by the client (psql's \password): kept as given if well formed.
        return match ScramVerifier::parse(&text) {
            Some(verifier) => Ok(Some(verifier.to_text())),
            None => Err(SqlError::new(sqlstate::INVALID_PARAMETER_VALUE, "malformed SCRAM-SHA-256 secret")),
        };
    }
    if text.len() == 35 && text.starts_with("md5") {
        return Err(SqlError::unsupported("MD5 password hashes (use SCRAM-SHA-256)"));
    }
    if text.is_empty() {
        // PostgreSQL: an empty password is the same as none.
        return Ok(None);
    }
    Ok(Some(ScramVerifier::generate(&text)?.to_text()))
}

/// The role attributes a statement sets; None where it leaves them.
#[derive(Default)]
struct Attributes {
    superuser: Option<bool>,
    login: Option<bool>,
    password: Option<Option<String>>,
}

impl Attributes {
    fn from_options(options: &[RoleOption]) -> Result<Attributes, SqlError> {
        let mut attributes = Attributes::default();
        for option in options {
            match option {
                RoleOption::SuperUser(on) => attributes.superuser = Some(*on),
                RoleOption::Login(on) => attributes.login = Some(*on),
                RoleOption::Password(password) => attributes.password = Some(password_verifier(password)?),
                // Accepted and not enforced: every role may create objects,
                // and there is no replication or row security to bypass.
                RoleOption::Inherit(_)
                | RoleOption::CreateDB(_)
                | RoleOption::CreateRole(_)
                | RoleOption::Replication(_)
                | RoleOption::BypassRLS(_)
                | RoleOption::ConnectionLimit(_) => {}
                RoleOption::ValidUntil(_) => return Err(SqlError::unsupported("VALID UNTIL")),
            }
        }
        Ok(attributes)
    }

    fn touches_privileges(&self) -> bool {
        self.superuser.is_some() || self.login.is_some()
    }
}

/// CREATE ROLE / CREATE USER (the parser marks CREATE USER with LOGIN).
pub async fn create_role(
    writes: &mut WriteSet,
    catalog: &Catalog,
    actor: &Actor<'_>,
    create: &CreateRole,
) -> Result<(), SqlError> {
    if !actor.superuser {
        return Err(insufficient("permission denied to create role"));
    }
    let unsupported = !create.in_role.is_empty()
        || !create.in_group.is_empty()
        || !create.role.is_empty()
        || !create.user.is_empty()
        || !create.admin.is_empty()
        || create.authorization_owner.is_some();
    if unsupported {
        return Err(SqlError::unsupported("role membership (IN ROLE, ROLE, ADMIN)"));
    }
    if create.valid_until.is_some() {
        return Err(SqlError::unsupported("VALID UNTIL"));
    }
    let password = match &create.password {
        Some(password) => password_verifier(password)?,
        None => None,
    };
    for name in &create.names {
        let name = object_role_name(name)?;
        check_new_name(&name)?;
        if catalog.role(&name).is_some() {
            if create.if_not_exists {
                continue;
            }
            return Err(SqlError::new(DUPLICATE_OBJECT, format!("role \"{name}\" already exists")));
        }
        let def = RoleDef {
            id: TableId(0),
            name,
            superuser: create.superuser.unwrap_or(false),
            login: create.login.unwrap_or(false),
            password: password.clone(),
        };
        catalog::create_role(writes, def).await?;
    }
    Ok(())
}

fn check_new_name(name: &str) -> Result<(), SqlError> {
    if name.starts_with("pg_") {
        return Err(SqlError::new(RESERVED_NAME, format!("role name \"{name}\" is reserved")));
    }
    if name.is_empty() || name.len() > ROLE_NAME_BYTES_MAX {
        return Err(SqlError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("role names are 1 to {ROLE_NAME_BYTES_MAX} bytes"),
        ));
    }
    if builtin(name) {
        return Err(SqlError::new(DUPLICATE_OBJECT, format!("role \"{name}\" already exists")));
    }
    Ok(())
}

/// ALTER ROLE / ALTER USER: attributes, password, or RENAME TO.
pub async fn alter_role(
    writes: &mut WriteSet,
    catalog: &Catalog,
    actor: &Actor<'_>,
    name: &Ident,
    operation: &AlterRoleOperation,
) -> Result<(), SqlError> {
    let name = role_name(name);
    if builtin(&name) {
        return Err(SqlError::unsupported(format_args!(
            "altering role \"{name}\" (the bootstrap superuser's password is the cluster file's)"
        )));
    }
    let entry = catalog.role(&name).ok_or_else(|| role_missing(&name))?;
    let mut def = entry.def.as_ref().clone();
    match operation {
        AlterRoleOperation::WithOptions { options } => {
            let attributes = Attributes::from_options(options)?;
            let own_password_only = name == actor.name && !attributes.touches_privileges();
            if !actor.superuser && !own_password_only {
                return Err(insufficient(format!("permission denied to alter role \"{name}\"")));
            }
            def.superuser = attributes.superuser.unwrap_or(def.superuser);
            def.login = attributes.login.unwrap_or(def.login);
            if let Some(password) = attributes.password {
                def.password = password;
            }
        }
        AlterRoleOperation::RenameRole { role_name: new_name } => {
            if !actor.superuser {
                return Err(insufficient(format!("permission denied to rename role \"{name}\"")));
            }
            if name == actor.name {
                return Err(SqlError::new(OBJECT_IN_USE, "session user cannot be renamed"));
            }
            let new_name = role_name(new_name);
            check_new_name(&new_name)?;
            if catalog.role(&new_name).is_some() {
                return Err(SqlError::new(DUPLICATE_OBJECT, format!("role \"{new_name}\" already exists")));
            }
            def.name = new_name;
        }
        _ => return Err(SqlError::unsupported("ALTER ROLE other than attributes, PASSWORD and RENAME")),
    }
    catalog::update_role(writes, entry, &def).await
}

/// DROP ROLE / DROP USER [IF EXISTS] name, ...
pub async fn drop_roles(
    writes: &mut WriteSet,
    catalog: &Catalog,
    actor: &Actor<'_>,
    if_exists: bool,
    names: &[ObjectName],
) -> Result<(), SqlError> {
    if !actor.superuser {
        return Err(insufficient("permission denied to drop role"));
    }
    for name in names {
        let name = object_role_name(name)?;
        if name == actor.name {
            return Err(SqlError::new(OBJECT_IN_USE, "current user cannot be dropped"));
        }
        if builtin(&name) {
            return Err(SqlError::new(
                OBJECT_IN_USE,
                format!("cannot drop role {name} because it is required by the database system"),
            ));
        }
        match catalog.role(&name) {
            Some(entry) => catalog::drop_role(writes, entry).await?,
            None if if_exists => crate::notice::raise(format!("role \"{name}\" does not exist, skipping")),
            None => return Err(role_missing(&name)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_checks_the_rfc_7677_exchange() {
        // RFC 7677's SCRAM-SHA-256 example: password "pencil"; the server's
        // signature and the client's proof must follow from our keys.
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let verifier = ScramVerifier::compute("pencil", &salt, 4096);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let hmac = |key: &[u8]| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
            ring::hmac::sign(&key, auth_message.as_bytes()).as_ref().to_vec()
        };
        assert_eq!(BASE64.encode(hmac(&verifier.server_key)), "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        let proof = BASE64.decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=").unwrap();
        let client_key: Vec<u8> = proof.iter().zip(hmac(&verifier.stored_key)).map(|(a, b)| a ^ b).collect();
        assert_eq!(ring::digest::digest(&ring::digest::SHA256, &client_key).as_ref(), verifier.stored_key.as_slice());
        assert_eq!(ScramVerifier::parse(&verifier.to_text()), Some(verifier));
    }

    #[test]
    fn malformed_verifiers_are_refused() {
        for text in [
            "SCRAM-SHA-256$",
            "SCRAM-SHA-256$4096:c2FsdA==$eA==:eA==",
            "SCRAM-SHA-256$0:c2FsdA==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
            "SCRAM-SHA-256$x:c2FsdA==$a:b",
            "md5abc",
        ] {
            assert_eq!(ScramVerifier::parse(text), None, "{text}");
        }
    }

    #[test]
    fn generated_verifiers_have_fresh_salts_and_no_password() {
        let a = ScramVerifier::generate("secret").unwrap();
        let b = ScramVerifier::generate("secret").unwrap();
        assert_ne!(a.salt, b.salt);
        assert!(!a.to_text().contains("secret"));
        assert_eq!(a.iterations, SCRAM_ITERATIONS);
        assert_eq!(format!("{a:?}"), "ScramVerifier { iterations: 4096, .. }");
    }

    mod statements {
        use crate::testing::MemoryVolume;
        use crate::{Engine, QueryOutput, Session};
        use datafusion::arrow::util::display::array_value_to_string;
        use std::sync::Arc;

        async fn run(session: &mut Session, sql: &str) -> Result<Vec<Vec<String>>, String> {
            let outputs = session.execute(sql).await.map_err(|e| e.sqlstate().to_string())?;
            let mut rows = Vec::new();
            for output in outputs {
                if let QueryOutput::Rows { batches, .. } = output {
                    for batch in batches {
                        for row in 0..batch.num_rows() {
                            rows.push(batch.columns().iter().map(|c| array_value_to_string(c, row).unwrap()).collect());
                        }
                    }
                }
            }
            Ok(rows)
        }

        #[tokio::test]
        async fn roles_are_stored_altered_and_dropped() {
            let volume = MemoryVolume::new();
            let engine = Engine::open(Arc::new(volume.clone()), false).await.unwrap();
            let mut admin = engine.session();
            run(&mut admin, "CREATE USER alice PASSWORD 'wonder'").await.unwrap();
            run(&mut admin, "CREATE ROLE auditors").await.unwrap();
            run(&mut admin, "CREATE ROLE boss WITH LOGIN SUPERUSER PASSWORD 'x'").await.unwrap();
            assert_eq!(run(&mut admin, "CREATE ROLE alice").await.unwrap_err(), "42710");
            assert_eq!(run(&mut admin, "CREATE ROLE postgres").await.unwrap_err(), "42710");
            assert_eq!(run(&mut admin, "CREATE ROLE pg_monitor").await.unwrap_err(), "42939");
            run(&mut admin, "CREATE ROLE IF NOT EXISTS alice").await.unwrap();

            let alice = engine.role("alice").await.unwrap().unwrap();
            assert!(alice.login && !alice.superuser);
            let verifier = alice.password.clone().unwrap();
            assert!(verifier.starts_with("SCRAM-SHA-256$4096:") && !verifier.contains("wonder"));
            assert!(!engine.role("auditors").await.unwrap().unwrap().login);

            let listed = run(
                &mut admin,
                "SELECT rolname, rolsuper, rolcanlogin, rolpassword FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY 1",
            )
            .await
            .unwrap();
            let want = [
                ["alice", "false", "true", "********"],
                ["auditors", "false", "false", "********"],
                ["boss", "true", "true", "********"],
                ["postgres", "true", "true", "********"],
            ];
            assert_eq!(listed, want.map(|row| row.map(String::from).to_vec()).to_vec());
            let users = run(&mut admin, "SELECT usename FROM pg_user ORDER BY 1").await.unwrap();
            assert_eq!(users, [["alice"], ["boss"], ["postgres"]].map(|r| r.map(String::from).to_vec()).to_vec());
            let secrets =
                run(&mut admin, "SELECT count(*) FROM pg_authid WHERE rolpassword IS NOT NULL").await.unwrap();
            assert_eq!(secrets, [["0".to_string()]]);

            // Privileges: alice may change her own password, nothing else.
            let mut as_alice = engine.session();
            as_alice.set_user("alice", false);
            assert_eq!(run(&mut as_alice, "SELECT current_user, session_user").await.unwrap(), [["alice", "alice"]]);
            assert_eq!(run(&mut as_alice, "SHOW is_superuser").await.unwrap(), [["off"]]);
            assert_eq!(run(&mut as_alice, "CREATE ROLE mallory").await.unwrap_err(), "42501");
            assert_eq!(run(&mut as_alice, "ALTER ROLE alice SUPERUSER").await.unwrap_err(), "42501");
            assert_eq!(run(&mut as_alice, "ALTER ROLE auditors LOGIN").await.unwrap_err(), "42501");
            assert_eq!(run(&mut as_alice, "DROP ROLE auditors").await.unwrap_err(), "42501");
            run(&mut as_alice, "ALTER USER alice PASSWORD 'land'").await.unwrap();
            assert_ne!(engine.role("alice").await.unwrap().unwrap().password.as_deref(), Some(verifier.as_str()));

            // A superuser stored in the catalog has the privileges too.
            let mut as_boss = engine.session();
            as_boss.set_user("boss", true);
            run(&mut as_boss, "ALTER ROLE alice NOLOGIN").await.unwrap();
            assert!(!engine.role("alice").await.unwrap().unwrap().login);
            run(&mut as_boss, "ALTER ROLE auditors RENAME TO reviewers").await.unwrap();
            assert!(engine.role("auditors").await.unwrap().is_none());
            assert_eq!(run(&mut as_boss, "DROP ROLE boss").await.unwrap_err(), "55006");
            assert_eq!(run(&mut as_boss, "DROP ROLE postgres").await.unwrap_err(), "55006");
            assert_eq!(run(&mut as_boss, "DROP ROLE nobody").await.unwrap_err(), "42704");
            run(&mut as_boss, "DROP ROLE IF EXISTS nobody, reviewers").await.unwrap();
            assert!(engine.role("reviewers").await.unwrap().is_none());

            // Transactional like other DDL: a rolled back CREATE leaves nothing.
            run(&mut admin, "BEGIN; CREATE ROLE temp; ROLLBACK").await.unwrap();
            assert!(engine.role("temp").await.unwrap().is_none());

            // A client-hashed verifier (psql's \password, which first asks
            // for password_encryption) is stored as given.
            assert_eq!(run(&mut admin, "SHOW password_encryption").await.unwrap(), [["scram-sha-256"]]);
            let hashed = super::ScramVerifier::compute("pw", b"0123456789abcdef", 4096).to_text();
            run(&mut admin, &format!("ALTER ROLE alice PASSWORD '{hashed}'")).await.unwrap();
            assert_eq!(engine.role("alice").await.unwrap().unwrap().password.as_deref(), Some(hashed.as_str()));
            assert_eq!(run(&mut admin, "ALTER ROLE alice PASSWORD 'SCRAM-SHA-256$bad'").await.unwrap_err(), "22023");

            // A reopened engine (a restart, or a reader) sees the roles.
            let reopened = Engine::open(Arc::new(volume.reader()), true).await.unwrap();
            assert!(reopened.role("alice").await.unwrap().is_some());
            assert!(reopened.role("boss").await.unwrap().unwrap().superuser);
        }
    }
}
