//! Child processes under supervision: a process that exits (a SIGKILL from a chaos button)
//! is started again after a short pause, as Kubernetes or systemd would.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::process::Command;

pub struct Supervised {
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub log: PathBuf,
    pid: AtomicU32,
    pub restarts: AtomicU64,
    stopping: AtomicBool,
}

impl Supervised {
    pub fn new(
        name: &str,
        program: PathBuf,
        args: Vec<String>,
        env: Vec<(String, String)>,
        log: PathBuf,
    ) -> Arc<Self> {
        Arc::new(Supervised {
            name: name.to_string(),
            program,
            args,
            env,
            log,
            pid: AtomicU32::new(0),
            restarts: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        })
    }

    /// Starts the process and keeps it running until [`stop`](Self::stop).
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            while !me.stopping.load(Ordering::SeqCst) {
                let status = match me.start() {
                    Ok(mut child) => {
                        me.pid.store(child.id().unwrap_or(0), Ordering::SeqCst);
                        let s = child.wait().await;
                        me.pid.store(0, Ordering::SeqCst);
                        format!("{s:?}")
                    }
                    Err(e) => format!("could not start: {e}"),
                };
                if me.stopping.load(Ordering::SeqCst) {
                    break;
                }
                me.restarts.fetch_add(1, Ordering::SeqCst);
                eprintln!("supervisor: {} ended ({status}); restarting", me.name);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    }

    fn start(&self) -> std::io::Result<tokio::process::Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; it makes the child die with the supervisor,
        // so a killed `saga up` leaves no relay holding a replication slot.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd.spawn()
    }

    pub fn pid(&self) -> Option<u32> {
        match self.pid.load(Ordering::SeqCst) {
            0 => None,
            p => Some(p),
        }
    }

    /// SIGKILL: the process dies at once; the supervisor starts it again.
    pub fn kill9(&self) -> Option<u32> {
        let pid = self.pid()?;
        signal(pid, libc::SIGKILL);
        Some(pid)
    }

    /// SIGTERM, and no restart.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(pid) = self.pid() {
            signal(pid, libc::SIGTERM);
        }
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid this supervisor started and still waits for.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}
