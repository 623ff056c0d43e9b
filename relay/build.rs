//! Embeds the source revision for `outbox_relay_build_info{revision}` and `--version`:
//! `OUTBOX_RELAY_REVISION` when set (container builds have no `.git`), else the git
//! commit the build is from, else `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=OUTBOX_RELAY_REVISION");
    let revision = match std::env::var("OUTBOX_RELAY_REVISION") {
        Ok(r) if !r.is_empty() => r,
        _ => {
            // Rebuild when HEAD moves (a commit, a checkout), not on every file change.
            if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
                println!("cargo:rerun-if-changed={dir}/HEAD");
                println!("cargo:rerun-if-changed={dir}/logs/HEAD");
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=OUTBOX_RELAY_REVISION={revision}");
}
