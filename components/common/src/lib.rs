//! Code every wasmpay component shares; compiled into each component, never called across
//! components at run time.

pub mod auth;
pub mod config;
pub mod currency;
pub mod db;
pub mod email;
pub mod health;
pub mod http;
pub mod money;
pub mod problem;
pub mod router;
pub mod time;
