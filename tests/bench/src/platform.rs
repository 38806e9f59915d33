//! The platform under benchmark: a local PostgreSQL with realistic durability settings, a
//! migrated database and the components in the wasmpay host.

use std::collections::BTreeMap;

use anyhow::Context;
use wasmpay_host::{HostConfig, RunningHost};
use wasmpay_test_support::{cluster::LocalCluster, paths, postgres};

pub struct Platform {
    pub cluster: LocalCluster,
    pub database_url: String,
    pub host: RunningHost,
    _dir: TempDir,
}

/// A directory removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub const JWT_SECRET: &str = "bench-jwt-secret-0123456789abcdef0123";

impl Platform {
    pub async fn start(variables: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = TempDir(std::env::temp_dir().join(format!("wasmpay-bench-{}", std::process::id())));
        let cluster = LocalCluster::start(
            &dir.0,
            wasmpay_test_support::cluster::free_port()?,
            &["max_connections=300", "shared_buffers=256MB", "shared_preload_libraries=pg_stat_statements"],
        )?;
        let admin = postgres::connect(&cluster.url("postgres")).await?;
        admin.batch_execute("CREATE DATABASE bench").await?;
        let database_url = cluster.url("bench");
        postgres::migrate(&database_url).await?;
        let mut config = HostConfig::new(paths::repo_root().join("spin.toml"))
            .variable("db_url", database_url.clone())
            .variable("db_host", format!("127.0.0.1:{}", cluster.port()))
            .variable("jwt_secret", JWT_SECRET)
            .variable("event_encryption_key", "YmVuY2gtZXZlbnQta2V5LTMyLWJ5dGVzLWxvbmchISE=");
        for component in ["identity", "accounts", "transfers"] {
            config = config.component_source(component, paths::component(component));
        }
        let overrides: BTreeMap<String, String> = variables.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        config.variables.extend(overrides);
        let host = wasmpay_host::start(config).await.context("the host did not start")?;
        Ok(Self {
            cluster,
            database_url,
            host,
            _dir: dir,
        })
    }

    pub fn authority(&self) -> String {
        self.host.addr().to_string()
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.cluster.stop();
    }
}
