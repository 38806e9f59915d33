//! `allowed_outbound_hosts` as Spin reads it: `scheme://host[:port]` entries where the
//! scheme may be `*`, the host `*`, `*.suffix`, a name or an IP, the port `*`, `N` or a
//! half-open range `a..b`; a missing port means the scheme's well-known port. Host names
//! compare as exact strings (`localhost` is not `127.0.0.1`).

use std::net::IpAddr;

use anyhow::{Context, bail, ensure};

#[derive(Debug, Clone, PartialEq)]
pub struct AllowedHost {
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    Any,
    Suffix(String),
    Exact(String),
    Network { address: IpAddr, prefix_len: u8 },
}

#[derive(Debug, Clone, PartialEq)]
enum PortPattern {
    Any,
    Exact(u16),
    Range(u16, u16),
}

fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl AllowedHost {
    pub fn parse(entry: &str) -> anyhow::Result<Self> {
        ensure!(
            entry != "insecure:allow-all",
            "'insecure:allow-all' is not supported in allowed_outbound_hosts; use '*://*:*'"
        );
        let (scheme, rest) = entry
            .split_once("://")
            .with_context(|| format!("{entry:?} must be of the form scheme://host[:port]"))?;
        ensure!(!scheme.is_empty(), "{entry:?} has an empty scheme");
        let (host, port) = split_host_port(rest);
        ensure!(
            host.matches('/').count() <= 1 && !host.is_empty(),
            "{entry:?} must not contain a path"
        );
        let host = parse_host(host).with_context(|| format!("{entry:?} has an invalid host"))?;
        let port = match port {
            None => match well_known_port(scheme) {
                Some(port) => PortPattern::Exact(port),
                None => bail!("{entry:?} needs a port: the scheme {scheme:?} has no well-known port"),
            },
            Some("*") => PortPattern::Any,
            Some(port) => match port.split_once("..") {
                Some((from, to)) => PortPattern::Range(from.parse()?, to.parse()?),
                None => PortPattern::Exact(port.parse().with_context(|| format!("{entry:?} has an invalid port"))?),
            },
        };
        Ok(Self {
            scheme: (scheme != "*").then(|| scheme.to_owned()),
            host,
            port,
        })
    }

    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s == scheme);
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Suffix(suffix) => host.ends_with(suffix.as_str()) && host.len() > suffix.len(),
            HostPattern::Exact(name) => name == host,
            HostPattern::Network { address, prefix_len } => host
                .parse::<IpAddr>()
                .is_ok_and(|candidate| in_network(candidate, *address, *prefix_len)),
        };
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Exact(allowed) => allowed == port,
            PortPattern::Range(from, to) => (from..to).contains(&port),
        };
        scheme_ok && host_ok && port_ok
    }
}

/// Splits `host[:port]`, keeping a CIDR's `/len` with the host.
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[')
        && let Some((host, after)) = rest.split_once(']')
    {
        return (host, after.strip_prefix(':'));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (authority, None),
    }
}

fn parse_host(host: &str) -> anyhow::Result<HostPattern> {
    if host == "*" {
        return Ok(HostPattern::Any);
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        return Ok(HostPattern::Suffix(format!(".{suffix}")));
    }
    if let Some((address, prefix_len)) = host.split_once('/') {
        let address: IpAddr = address.parse()?;
        let prefix_len: u8 = prefix_len.parse()?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        ensure!(prefix_len <= max, "prefix length {prefix_len} is longer than {max}");
        return Ok(HostPattern::Network { address, prefix_len });
    }
    ensure!(!host.contains('*'), "wildcards are only allowed as '*' or '*.suffix'");
    Ok(HostPattern::Exact(host.to_owned()))
}

fn in_network(candidate: IpAddr, network: IpAddr, prefix_len: u8) -> bool {
    match (candidate, network) {
        (IpAddr::V4(c), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix_len)).unwrap_or(0);
            u32::from(c) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(c), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix_len)).unwrap_or(0);
            u128::from(c) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Why a Postgres address may not be opened.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum AddressRefused {
    #[error("{0}")]
    Invalid(String),
    #[error("address postgres://{0} is not permitted")]
    NotPermitted(String),
    #[error("Unix sockets are not supported on WebAssembly")]
    UnixSocket,
}

/// Spin's check before `spin:postgres` opens a connection: every host of the connection
/// string, with its port (or 5432), must be allowed for the `postgres` scheme.
pub fn check_postgres_address(address: &str, allowed: &[AllowedHost]) -> Result<(), AddressRefused> {
    let config: tokio_postgres::Config = address.parse().map_err(|e: tokio_postgres::Error| AddressRefused::Invalid(e.to_string()))?;
    let ports = config.get_ports();
    for (index, host) in config.get_hosts().iter().enumerate() {
        match host {
            tokio_postgres::config::Host::Tcp(name) => {
                let port = ports.get(index).or(if ports.len() == 1 { ports.first() } else { None });
                let shown = match port {
                    Some(port) => format!("{name}:{port}"),
                    None => name.clone(),
                };
                let effective_port = port.copied().unwrap_or(5432);
                if !allowed.iter().any(|entry| entry.allows("postgres", name, effective_port)) {
                    return Err(AddressRefused::NotPermitted(shown));
                }
            }
            tokio_postgres::config::Host::Unix(_) => return Err(AddressRefused::UnixSocket),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(entries: &[&str]) -> Vec<AllowedHost> {
        entries.iter().map(|e| AllowedHost::parse(e).unwrap()).collect()
    }

    #[test]
    fn the_postgres_host_and_port_must_match_an_entry() {
        let hosts = allowed(&["postgres://127.0.0.1:5433"]);
        assert_eq!(check_postgres_address("postgres://u:p@127.0.0.1:5433/db", &hosts), Ok(()));
        assert_eq!(
            check_postgres_address("postgres://u:p@127.0.0.1:5434/db", &hosts),
            Err(AddressRefused::NotPermitted("127.0.0.1:5434".into()))
        );
        assert_eq!(
            check_postgres_address("host=db.internal port=5433 user=u", &hosts),
            Err(AddressRefused::NotPermitted("db.internal:5433".into()))
        );
    }

    #[test]
    fn names_compare_as_strings_not_addresses() {
        let hosts = allowed(&["postgres://localhost:5432"]);
        assert!(check_postgres_address("postgres://127.0.0.1:5432/db", &hosts).is_err());
    }

    #[test]
    fn a_missing_port_means_5432_on_both_sides() {
        let hosts = allowed(&["postgres://db"]);
        assert_eq!(check_postgres_address("postgres://u@db/app", &hosts), Ok(()));
        assert_eq!(check_postgres_address("postgres://u@db:5432/app", &hosts), Ok(()));
        assert_eq!(
            check_postgres_address("postgres://u@db:6543/app", &hosts),
            Err(AddressRefused::NotPermitted("db:6543".into()))
        );
    }

    #[test]
    fn other_schemes_do_not_allow_postgres() {
        let hosts = allowed(&["https://db:5432", "redis://db:5432"]);
        assert!(check_postgres_address("postgres://db:5432/app", &hosts).is_err());
        let wildcard = allowed(&["*://db:5432"]);
        assert!(check_postgres_address("postgres://db:5432/app", &wildcard).is_ok());
    }

    #[test]
    fn wildcards_ranges_and_networks() {
        let entry = AllowedHost::parse("postgres://*.example.com:5000..5010").unwrap();
        assert!(entry.allows("postgres", "db.example.com", 5009));
        assert!(!entry.allows("postgres", "db.example.com", 5010), "ranges are half-open");
        assert!(!entry.allows("postgres", "example.com", 5001));
        let network = AllowedHost::parse("postgres://10.0.0.0/8:*").unwrap();
        assert!(network.allows("postgres", "10.1.2.3", 1));
        assert!(!network.allows("postgres", "11.1.2.3", 1));
    }

    #[test]
    fn malformed_entries_are_refused() {
        for entry in ["db:5432", "insecure:allow-all", "foo://db", "postgres://db/path", "postgres://d*b"] {
            assert!(AllowedHost::parse(entry).is_err(), "{entry}");
        }
    }

    #[test]
    fn unix_sockets_are_refused() {
        assert_eq!(
            check_postgres_address("host=/var/run/postgresql user=u", &allowed(&["postgres://*:*"])),
            Err(AddressRefused::UnixSocket)
        );
    }
}
