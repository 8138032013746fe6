//! The cluster file: one TOML document that names every process of a
//! Borealis cluster, where it listens, where it keeps data, and the volume's
//! quorum rules.
//!
//! Parsing is two steps: serde reads `ClusterFile` (unknown keys refused, so a
//! typo fails loudly, naming the key), then `ClusterFile::validate` checks the
//! values against each other and yields a `ClusterConfig` the rest of the
//! system trusts without checking again.

use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The local topology shipped with Borealis (`config/local.toml`).
pub const LOCAL_CLUSTER_TOML: &str = include_str!("../local.toml");

/// Replicas (segments) of each protection group.
pub const SEGMENTS_PER_GROUP: usize = 6;
/// Availability zones a protection group spans.
pub const ZONES_PER_GROUP: usize = 3;
/// The most reader instances one volume serves.
pub const READERS_MAX: usize = 15;

/// A cluster file that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read cluster file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid cluster file: {0}")]
    Parse(String),
    #[error("invalid value for `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), reason: reason.into() }
}

/// The cluster file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    pub cluster: ClusterSection,
    #[serde(default)]
    pub volume: VolumeSection,
    #[serde(default)]
    pub storage: Vec<StorageSection>,
    #[serde(default)]
    pub instance: Vec<InstanceSection>,
    pub proxy: ProxySection,
}

/// `[cluster]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    pub name: String,
    /// Where every process keeps its files, one folder per process.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Password of the `postgres` superuser; BOREALIS_PASSWORD overrides it.
    #[serde(default)]
    pub password: Option<String>,
    /// Bytes of pages each instance's buffer cache holds.
    #[serde(default = "default_buffer_cache_bytes")]
    pub buffer_cache_bytes: u64,
    /// Whether PostgreSQL clients may connect without TLS.
    #[serde(default)]
    pub client_tls: ClientTls,
}

/// `cluster.client_tls`: TLS for PostgreSQL clients (the cluster CA signs
/// every instance's certificate, so `sslmode=verify-full` works either way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientTls {
    /// TLS for clients that ask (`sslmode=prefer`, `require`, ...); plain
    /// connections are accepted too.
    #[default]
    Optional,
    /// A plain connection is refused at startup with 28000, as PostgreSQL
    /// refuses one that only `hostssl` lines of pg_hba.conf would match.
    Required,
}

fn default_buffer_cache_bytes() -> u64 {
    256 * 1024 * 1024
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

/// `[volume]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VolumeSection {
    pub protection_group_size_bytes: u64,
    pub write_quorum: usize,
    pub read_quorum: usize,
    /// How long a commit may wait without the durable LSN moving before it
    /// fails (a large commit may take longer in total while storage keeps up).
    pub commit_timeout_ms: u64,
    /// LSN allocation limit: how far the writer may run ahead of the durable LSN.
    pub lsn_allocation_limit: u64,
}

impl Default for VolumeSection {
    fn default() -> Self {
        VolumeSection {
            protection_group_size_bytes: 10 * 1024 * 1024 * 1024,
            write_quorum: 4,
            read_quorum: 3,
            commit_timeout_ms: 10_000,
            lsn_allocation_limit: 10_000_000,
        }
    }
}

/// `[[storage]]`: one storage daemon.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    pub name: String,
    pub az: String,
    pub addr: String,
}

/// `[[instance]]`: one compute instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSection {
    pub name: String,
    pub role: Role,
    pub addr: String,
}

/// What an instance does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Writer,
    Reader,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Writer => "writer",
            Role::Reader => "reader",
        })
    }
}

/// `[proxy]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    /// The cluster endpoint: always the writer.
    pub cluster_addr: String,
    /// The reader endpoint: spread over healthy readers.
    pub reader_addr: String,
}

/// A validated storage daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageNode {
    /// Position in the file; the node's id.
    pub index: u32,
    pub name: String,
    pub az: String,
    pub addr: SocketAddr,
}

/// A validated compute instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    pub role: Role,
    pub addr: SocketAddr,
}

/// A validated cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub password: String,
    pub buffer_cache_bytes: u64,
    pub client_tls: ClientTls,
    pub protection_group_size_bytes: u64,
    pub write_quorum: usize,
    pub read_quorum: usize,
    pub commit_timeout_ms: u64,
    pub lsn_allocation_limit: u64,
    pub storage: Vec<StorageNode>,
    pub instances: Vec<Instance>,
    pub cluster_endpoint: SocketAddr,
    pub reader_endpoint: SocketAddr,
}

impl ClusterFile {
    /// Parses a cluster file's text.
    pub fn parse(text: &str) -> Result<ClusterFile, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string().trim_end().to_string()))
    }

    /// Reads and parses a cluster file.
    pub fn load(path: &Path) -> Result<ClusterFile, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        ClusterFile::parse(&text)
    }

    /// Checks every value and their relations; `password_override` is the
    /// BOREALIS_PASSWORD environment variable when set.
    pub fn validate(self, password_override: Option<String>) -> Result<ClusterConfig, ConfigError> {
        let ClusterFile { cluster, volume, storage, instance, proxy } = self;
        let ClusterSection { name, data_dir, password, buffer_cache_bytes, client_tls } = cluster;
        if buffer_cache_bytes < 1024 * 1024 {
            return Err(invalid("cluster.buffer_cache_bytes", "must be at least 1048576 (1 MiB)"));
        }
        let VolumeSection {
            protection_group_size_bytes,
            write_quorum,
            read_quorum,
            commit_timeout_ms,
            lsn_allocation_limit,
        } = volume;
        if name.trim().is_empty() {
            return Err(invalid("cluster.name", "must not be empty"));
        }
        let password = password_override
            .or(password)
            .ok_or_else(|| invalid("cluster.password", "no password: set it here or in BOREALIS_PASSWORD"))?;
        if password.is_empty() {
            return Err(invalid("cluster.password", "must not be empty"));
        }
        validate_volume(
            protection_group_size_bytes,
            write_quorum,
            read_quorum,
            commit_timeout_ms,
            lsn_allocation_limit,
        )?;

        let mut names = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        let mut nodes = Vec::with_capacity(storage.len());
        for (index, section) in storage.into_iter().enumerate() {
            let key = format!("storage[{index}]");
            let addr = parse_addr(&format!("{key}.addr"), &section.addr)?;
            unique(&mut names, &mut addrs, &key, &section.name, addr)?;
            if section.az.trim().is_empty() {
                return Err(invalid(format!("{key}.az"), "must not be empty"));
            }
            let index = u32::try_from(index).map_err(|_| invalid("storage", "too many storage daemons"))?;
            nodes.push(StorageNode { index, name: section.name, az: section.az, addr });
        }
        validate_zones(&nodes)?;

        let mut instances = Vec::with_capacity(instance.len());
        for (index, section) in instance.into_iter().enumerate() {
            let key = format!("instance[{index}]");
            let addr = parse_addr(&format!("{key}.addr"), &section.addr)?;
            unique(&mut names, &mut addrs, &key, &section.name, addr)?;
            instances.push(Instance { name: section.name, role: section.role, addr });
        }
        let writers = instances.iter().filter(|i| i.role == Role::Writer).count();
        if writers != 1 {
            return Err(invalid(
                "instance",
                format!("exactly one instance must have role = \"writer\", found {writers}"),
            ));
        }
        let readers = instances.len() - writers;
        if readers > READERS_MAX {
            return Err(invalid("instance", format!("at most {READERS_MAX} readers, found {readers}")));
        }
        let cluster_endpoint = parse_addr("proxy.cluster_addr", &proxy.cluster_addr)?;
        let reader_endpoint = parse_addr("proxy.reader_addr", &proxy.reader_addr)?;
        for (key, addr) in [("proxy.cluster_addr", cluster_endpoint), ("proxy.reader_addr", reader_endpoint)] {
            if !addrs.insert(addr) {
                return Err(invalid(key, format!("address {addr} is used twice")));
            }
        }
        Ok(ClusterConfig {
            name,
            data_dir,
            password,
            buffer_cache_bytes,
            client_tls,
            protection_group_size_bytes,
            write_quorum,
            read_quorum,
            commit_timeout_ms,
            lsn_allocation_limit,
            storage: nodes,
            instances,
            cluster_endpoint,
            reader_endpoint,
        })
    }
}

fn validate_volume(group_bytes: u64, write: usize, read: usize, timeout_ms: u64, lal: u64) -> Result<(), ConfigError> {
    if group_bytes < 64 * 1024 {
        return Err(invalid("volume.protection_group_size_bytes", "must be at least 65536"));
    }
    if write + read <= SEGMENTS_PER_GROUP || 2 * write <= SEGMENTS_PER_GROUP || write > SEGMENTS_PER_GROUP {
        return Err(invalid(
            "volume.write_quorum",
            format!(
                "write {write} and read {read} quorums of {SEGMENTS_PER_GROUP} must overlap (w + r > 6, 2w > 6, w <= 6)"
            ),
        ));
    }
    if read == 0 {
        return Err(invalid("volume.read_quorum", "must be at least 1"));
    }
    if timeout_ms == 0 {
        return Err(invalid("volume.commit_timeout_ms", "must be positive"));
    }
    if lal == 0 {
        return Err(invalid("volume.lsn_allocation_limit", "must be positive"));
    }
    Ok(())
}

fn validate_zones(nodes: &[StorageNode]) -> Result<(), ConfigError> {
    if nodes.len() < SEGMENTS_PER_GROUP {
        return Err(invalid(
            "storage",
            format!("need at least {SEGMENTS_PER_GROUP} storage daemons, found {}", nodes.len()),
        ));
    }
    let zones: BTreeSet<&str> = nodes.iter().map(|n| n.az.as_str()).collect();
    if zones.len() != ZONES_PER_GROUP {
        return Err(invalid(
            "storage",
            format!("storage daemons must span exactly {ZONES_PER_GROUP} zones, found {}", zones.len()),
        ));
    }
    for zone in zones {
        let count = nodes.iter().filter(|n| n.az == zone).count();
        if count < 2 {
            return Err(invalid("storage", format!("zone {zone} has {count} storage daemon(s), needs at least 2")));
        }
    }
    Ok(())
}

fn parse_addr(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| invalid(key, format!("`{text}` is not an IP address and port")))
}

fn unique(
    names: &mut BTreeSet<String>,
    addrs: &mut BTreeSet<SocketAddr>,
    key: &str,
    name: &str,
    addr: SocketAddr,
) -> Result<(), ConfigError> {
    if name.trim().is_empty() {
        return Err(invalid(format!("{key}.name"), "must not be empty"));
    }
    if !names.insert(name.to_string()) {
        return Err(invalid(format!("{key}.name"), format!("name `{name}` is used twice")));
    }
    if !addrs.insert(addr) {
        return Err(invalid(format!("{key}.addr"), format!("address {addr} is used twice")));
    }
    Ok(())
}

impl ClusterConfig {
    /// The local cluster, with its data under `data_dir`.
    pub fn local(data_dir: Option<PathBuf>, password_override: Option<String>) -> Result<ClusterConfig, ConfigError> {
        let mut file = ClusterFile::parse(LOCAL_CLUSTER_TOML)?;
        if let Some(dir) = data_dir {
            file.cluster.data_dir = dir;
        }
        file.validate(password_override)
    }

    /// The writer instance.
    pub fn writer(&self) -> &Instance {
        self.instances.iter().find(|i| i.role == Role::Writer).expect("validated: one writer")
    }

    /// Reader instances, in file order.
    pub fn readers(&self) -> impl Iterator<Item = &Instance> {
        self.instances.iter().filter(|i| i.role == Role::Reader)
    }

    /// An instance by name.
    pub fn instance(&self, name: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.name == name)
    }

    /// A storage daemon by name.
    pub fn storage_node(&self, name: &str) -> Option<&StorageNode> {
        self.storage.iter().find(|n| n.name == name)
    }

    /// The folder of one process's files.
    pub fn process_dir(&self, process_name: &str) -> PathBuf {
        self.data_dir.join(process_name)
    }

    /// Where the cluster's CA and node certificates live.
    pub fn tls_dir(&self) -> PathBuf {
        self.data_dir.join("tls")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_file_is_valid() {
        let config = ClusterConfig::local(None, None).unwrap();
        assert_eq!(config.storage.len(), 6);
        assert_eq!(config.writer().addr.port(), 5440);
        assert_eq!(config.readers().count(), 2);
        assert_eq!(config.cluster_endpoint.port(), 5433);
        assert_eq!(config.password, "postgres");
        assert_eq!(config.write_quorum, 4);
    }

    #[test]
    fn environment_password_wins() {
        let config = ClusterConfig::local(None, Some("s3cret".into())).unwrap();
        assert_eq!(config.password, "s3cret");
    }

    #[test]
    fn unknown_key_is_named() {
        let text = LOCAL_CLUSTER_TOML.replace("write_quorum = 4", "write_quorom = 4");
        let err = ClusterFile::parse(&text).unwrap_err().to_string();
        assert!(err.contains("write_quorom"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("write_quorum = 4", "write_quorum = 2", "volume.write_quorum"),
            ("addr = \"127.0.0.1:7103\"", "addr = \"localhost\"", "storage[2].addr"),
            ("addr = \"127.0.0.1:7103\"", "addr = \"127.0.0.1:7101\"", "storage[2].addr"),
            ("az = \"az-c\"", "az = \"az-d\"", "storage"),
            ("role = \"reader\"", "role = \"writer\"", "instance"),
            ("cluster_addr = \"127.0.0.1:5433\"", "cluster_addr = \"127.0.0.1:5440\"", "proxy.cluster_addr"),
        ];
        for (from, to, key) in cases {
            let text = LOCAL_CLUSTER_TOML.replacen(from, to, 1);
            let err = match ClusterFile::parse(&text) {
                Ok(file) => file.validate(None).unwrap_err().to_string(),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(key), "{to}: {err}");
        }
    }

    #[test]
    fn client_tls_is_optional_unless_required() {
        assert_eq!(ClusterConfig::local(None, None).unwrap().client_tls, ClientTls::Optional);
        let text = LOCAL_CLUSTER_TOML.replacen("client_tls = \"optional\"", "client_tls = \"required\"", 1);
        assert_eq!(ClusterFile::parse(&text).unwrap().validate(None).unwrap().client_tls, ClientTls::Required);
        let text = LOCAL_CLUSTER_TOML.replacen("client_tls = \"optional\"", "client_tls = \"always\"", 1);
        assert!(ClusterFile::parse(&text).unwrap_err().to_string().contains("always"));
    }

    #[test]
    fn bad_role_is_refused() {
        let text = LOCAL_CLUSTER_TOML.replacen("role = \"reader\"", "role = \"boss\"", 1);
        let err = ClusterFile::parse(&text).unwrap_err().to_string();
        assert!(err.contains("boss") || err.contains("role"), "{err}");
    }
}
