//! Running a process under a CPU limit, as a Kubernetes sidecar with `resources.limits.cpu`
//! runs: a cgroup with a CPU quota (period 100 ms), cgroup v2 `cpu.max` where the unified
//! hierarchy has the cpu controller, else v1 `cpu.cfs_quota_us`. Needs root.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The cgroup for a quota of `limit` CPUs (created on first use); returns its
/// `cgroup.procs`.
pub fn cpu_cgroup(limit: f64) -> PathBuf {
    let quota = (limit * 100_000.0).round() as u64;
    let name = format!("outbox-relay-bench-{quota}");
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers");
    if std::fs::read_to_string(v2).is_ok_and(|c| c.split_whitespace().any(|x| x == "cpu")) {
        let dir = PathBuf::from("/sys/fs/cgroup").join(&name);
        std::fs::create_dir_all(&dir).expect("create the cgroup (root needed)");
        std::fs::write(dir.join("cpu.max"), format!("{quota} 100000")).expect("cpu.max");
        dir.join("cgroup.procs")
    } else {
        let dir = PathBuf::from("/sys/fs/cgroup/cpu").join(&name);
        std::fs::create_dir_all(&dir).expect("create the cgroup (root needed)");
        std::fs::write(dir.join("cpu.cfs_period_us"), "100000").expect("cfs_period_us");
        std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string()).expect("cfs_quota_us");
        dir.join("cgroup.procs")
    }
}

/// `program args…` inside the cgroup for `limit` CPUs from its first instruction: a
/// shell enters the cgroup and then execs the program (same pid, so /proc accounting of
/// the child still applies).
pub fn limited(limit: f64, program: &Path, args: &[&std::ffi::OsStr]) -> Command {
    let procs = cpu_cgroup(limit);
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("echo $$ > \"$0\" && exec \"$@\"")
        .arg(&procs)
        .arg(program)
        .args(args);
    c
}
