//! What was built: the version and the source revision (relay/build.rs).

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit (12 hex digits) or `OUTBOX_RELAY_REVISION`; `unknown` without either.
pub const REVISION: &str = env!("OUTBOX_RELAY_REVISION");
/// `--version`'s text after the program name.
pub const VERSION_LINE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("OUTBOX_RELAY_REVISION"),
    ")"
);
