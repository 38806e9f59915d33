//! `wasmpay-host`: serve a Spin application's wasi-http components on wasmtime, for local
//! runs where the Spin CLI is not installed.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::Parser;
use wasmpay_host::{HostConfig, InstanceReuse, runtime_config};

#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The application manifest.
    #[arg(long, short = 'f', default_value = "spin.toml")]
    manifest: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "SPIN_HTTP_LISTEN_ADDR", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Runtime config file; `static` and `env` variables providers and `max_instance_memory` are honoured.
    #[arg(long)]
    runtime_config_file: Option<PathBuf>,
    /// Set an application variable, as `spin up --variable name=value`.
    #[arg(long = "variable", value_parser = parse_pair)]
    variables: Vec<(String, String)>,
    /// Run a component from another Wasm file: `id=path`.
    #[arg(long = "component-source", value_parser = parse_pair)]
    component_sources: Vec<(String, String)>,
    /// Take a component's dependency from another Wasm file: `id:key=path` (key as in
    /// `[component.id.dependencies]`).
    #[arg(long = "dependency-source", value_parser = parse_dependency_source)]
    dependency_sources: Vec<((String, String), PathBuf)>,
    /// Reproduce the Postgres behaviour of this Spin release: `4.0` (4.0.0 to 4.0.2, where a
    /// query returning zero rows hangs; this host fails such a request with a 500) or
    /// `fixed` (Spin 3.x and later 4.0.x: an empty row set).
    #[arg(long, default_value = "4.0")]
    as_spin: wasmpay_host::SpinVersion,
    /// Largest request body buffered for a component, in bytes.
    #[arg(long, default_value_t = wasmpay_host::DEFAULT_MAX_REQUEST_BODY_BYTES)]
    max_request_body_bytes: usize,
    /// Requests one instance of a WASIp3 component serves before it is dropped (as `spin up`).
    #[arg(long, default_value_t = InstanceReuse::default().max_requests)]
    max_instance_reuse_count: usize,
    /// Requests one instance of a WASIp3 component serves at once (as `spin up`).
    #[arg(long, default_value_t = InstanceReuse::default().max_concurrent)]
    max_instance_concurrent_reuse_count: usize,
    /// How long a WASIp3 request may run, in whole seconds such as `30s` (as `spin up`; default: no limit).
    #[arg(long, value_parser = wasmpay_host::runtime::parse_duration)]
    request_timeout: Option<Duration>,
    /// How long an idle WASIp3 instance is kept for the next request (as `spin up`).
    #[arg(long, value_parser = wasmpay_host::runtime::parse_duration, default_value = "1s")]
    idle_instance_timeout: Duration,
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected name=value, got {text:?}"))
}

fn parse_dependency_source(text: &str) -> Result<((String, String), PathBuf), String> {
    let (target, path) = parse_pair(text)?;
    let (id, key) = target
        .split_once(':')
        .ok_or_else(|| format!("expected id:key=path, got {text:?}"))?;
    Ok(((id.to_owned(), key.to_owned()), PathBuf::from(path)))
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let runtime_config = match &args.runtime_config_file {
        Some(path) => runtime_config::load(path)?,
        None => runtime_config::RuntimeConfig::default(),
    };
    let config = HostConfig {
        manifest: args.manifest,
        variables: args.variables.into_iter().collect::<BTreeMap<_, _>>(),
        providers: runtime_config.providers,
        max_instance_memory: runtime_config.max_instance_memory,
        component_sources: args
            .component_sources
            .into_iter()
            .map(|(id, path)| (id, PathBuf::from(path)))
            .collect(),
        dependency_sources: args.dependency_sources.into_iter().collect(),
        listen: args.listen,
        max_request_body_bytes: args.max_request_body_bytes,
        spin_version: args.as_spin,
        reuse: InstanceReuse {
            max_requests: args.max_instance_reuse_count,
            max_concurrent: args.max_instance_concurrent_reuse_count,
            request_timeout: args.request_timeout,
            idle_timeout: args.idle_instance_timeout,
        },
    };
    let host = wasmpay_host::start(config).await.context("cannot start the application")?;
    println!("Serving {}", host.url());
    println!("Available Routes:");
    for (route, component) in host.routes() {
        println!("  {component}: {}{route}", host.url());
    }
    tokio::signal::ctrl_c().await?;
    println!("Stopping");
    host.stop().await;
    Ok(())
}
