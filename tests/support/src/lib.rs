//! Fixtures shared by wasmpay's test suites. Nothing here imitates a service users run:
//! the Postgres fixture runs the real server binaries.

pub mod cluster;
pub mod kafka;
pub mod novu;
pub mod paths;
pub mod postgres;
pub mod process;
