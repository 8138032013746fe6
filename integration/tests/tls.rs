//! TLS for PostgreSQL clients against a real cluster whose file says
//! `client_tls = "required"`.
//!
//! Goal: with TLS mandatory, a plain connection is refused at startup with
//! 28000 (as PostgreSQL refuses one that only `hostssl` lines of pg_hba.conf
//! match), while `sslmode=require` and `sslmode=verify-full` against the
//! cluster's CA (`data/tls/ca.pem`) work, through the proxy's cluster
//! endpoint and on the writer's own port. Method: psql (libpq) with each
//! sslmode, and tokio-postgres over rustls (tokio-postgres-rustls) trusting
//! only the cluster CA, which checks the certificate's name `localhost`.

use anyhow::Context;
use borealis_integration::{Cluster, PASSWORD, sqlstate};
use std::path::Path;

/// A tokio-postgres TLS connector that trusts only the CA in `ca_path`.
fn verifying_connector(ca_path: &Path) -> anyhow::Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::File::open(ca_path).with_context(|| format!("failed to open {}", ca_path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut std::io::BufReader::new(pem)) {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_tls_refuses_plain_connections() -> anyhow::Result<()> {
    let cluster = Cluster::start_new_with(0, "client_tls = \"required\"")?;
    let ca = cluster.data_dir().join("tls").join("ca.pem");

    for port in [cluster.ports.cluster, cluster.ports.writer] {
        // Plain: refused at startup, before any password is asked for.
        let plain = format!("host=127.0.0.1 port={port} user=postgres password={PASSWORD} dbname=postgres");
        let error = match tokio_postgres::connect(&plain, tokio_postgres::NoTls).await {
            Ok(_) => anyhow::bail!("a plain connection to port {port} was accepted"),
            Err(error) => error,
        };
        assert_eq!(sqlstate(&error).as_deref(), Some("28000"), "{error}");
        let (ok, _, err) = cluster.psql_conninfo(
            &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=disable"),
            "SELECT 1",
        )?;
        assert!(!ok && err.contains("requires TLS"), "psql sslmode=disable: {err}");

        // psql: require (encrypted, unverified) and verify-full (CA and host name checked).
        for conninfo in [
            format!("host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=require"),
            format!(
                "host=localhost port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
                ca.display()
            ),
        ] {
            let (ok, out, err) = cluster.psql_conninfo(&conninfo, "SELECT 1")?;
            assert!(ok, "psql {conninfo}: {err}");
            assert_eq!(out.trim(), "1");
        }

        // tokio-postgres over rustls, verifying the server against the cluster CA.
        let conninfo =
            format!("host=localhost port={port} user=postgres password={PASSWORD} dbname=postgres sslmode=require");
        let (client, connection) = tokio_postgres::connect(&conninfo, verifying_connector(&ca)?).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client.batch_execute("CREATE TABLE IF NOT EXISTS over_tls (id int PRIMARY KEY)").await?;
        client.execute("INSERT INTO over_tls VALUES ($1)", &[&i32::from(port % 1000)]).await?;
        let count: i64 = client.query_one("SELECT count(*) FROM over_tls", &[]).await?.get(0);
        assert!(count >= 1);
    }

    // A server certificate from another CA is not trusted: the client refuses it.
    let other = tempfile::tempdir()?;
    borealis_storage::tls::ensure_cluster_certs(other.path())?;
    let conninfo = format!(
        "host=localhost port={} user=postgres password={PASSWORD} dbname=postgres sslmode=require",
        cluster.ports.cluster
    );
    let refused = tokio_postgres::connect(&conninfo, verifying_connector(&other.path().join("ca.pem"))?).await;
    assert!(refused.is_err(), "a certificate of another CA was trusted");
    Ok(())
}
