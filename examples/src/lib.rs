//! The outbox-relay example application: three services (`orders`, `payments`,
//! `inventory`), each with its own PostgreSQL database and its own relay, running a
//! choreography saga; a supervisor (`stack`) that starts them with their relays, and a
//! console page that shows the saga live and offers chaos buttons. See examples/README.md.

pub mod aws;
pub mod config;
pub mod consume;
pub mod db;
pub mod error;
pub mod events;
pub mod inbox;
pub mod services;
pub mod stack;
pub mod trace;
pub mod workload;

pub use error::Error;
pub type Result<T> = std::result::Result<T, Error>;
