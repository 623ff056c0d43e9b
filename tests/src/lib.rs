//! Harness for tests against the real services started by `deploy/local/*.sh`:
//! the project's PostgreSQL cluster, the KRaft Kafka broker and the relay binary.
//!
//! Nothing here mocks a service. When a service is unreachable the test fails with a
//! message saying which script starts it.

pub mod aws;
pub mod backlog;
pub mod cgroup;
pub mod chaos;
pub mod cloudevents;
pub mod env;
pub mod fault_proxy;
pub mod http_fault;
pub mod kafka;
pub mod ordered;
pub mod pg;
pub mod process;
pub mod relay;
pub mod toxiproxy;
pub mod workload;

/// A name unique to this test run, usable as a table, slot, publication and topic prefix.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}
