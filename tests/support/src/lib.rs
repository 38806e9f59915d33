//! Fixtures shared by wasmpay's test suites. Nothing here imitates a service users run:
//! the Postgres fixture runs the real server binaries, the Spin fixture the real Spin CLI.

pub mod citus;
pub mod cluster;
pub mod kafka;
pub mod novu;
pub mod paths;
pub mod postgres;
pub mod process;
pub mod registry;
pub mod schema;
pub mod spin;
pub mod tls;
