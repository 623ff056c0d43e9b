//! Child processes under supervision: a process that exits (a SIGKILL from a chaos button)
//! is started again after a short pause, as Kubernetes or systemd would.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
                let status = me.run_once().await;
                if me.stopping.load(Ordering::SeqCst) {
                    break;
                }
                me.restarts.fetch_add(1, Ordering::SeqCst);
                eprintln!("supervisor: {} ended ({status}); restarting", me.name);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    }

    /// Runs the process once and returns how it ended.
    ///
    /// A thread of its own starts the process and waits for it. The child asks for
    /// SIGKILL when its parent goes (so a killed `saga up` leaves no relay holding a
    /// replication slot), and Linux sends that signal when the *thread* that forked it
    /// exits, not the process. Tokio threads do exit: a worker that ran `block_in_place`
    /// ends up in the blocking pool and leaves after 10 s idle, which once SIGKILLed a
    /// service and two relays at the same instant. This thread lives exactly as long as
    /// its child.
    async fn run_once(self: &Arc<Self>) -> String {
        let (done, ended) = tokio::sync::oneshot::channel();
        let me = self.clone();
        let started = std::thread::Builder::new()
            .name(format!("child-{}", self.name))
            .spawn(move || {
                let status = match me.command().and_then(|mut c| c.spawn()) {
                    Ok(mut child) => {
                        me.pid.store(child.id(), Ordering::SeqCst);
                        let s = child.wait();
                        me.pid.store(0, Ordering::SeqCst);
                        format!("{s:?}")
                    }
                    Err(e) => format!("could not start: {e}"),
                };
                let _ = done.send(status);
            });
        match started {
            Ok(_) => ended
                .await
                .unwrap_or_else(|_| "its waiting thread ended".into()),
            Err(e) => format!("could not start a thread for it: {e}"),
        }
    }

    fn command(&self) -> std::io::Result<Command> {
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
        // SAFETY: prctl is async-signal-safe. See run_once for which thread is the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Ok(cmd)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `pid` is a live process (a zombie, killed but not reaped, is not).
    fn alive(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the parenthesised command name.
            Ok(stat) => !stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z')),
            Err(_) => false,
        }
    }

    /// CI once saw three children (a service and two relays) SIGKILLed at the same
    /// instant, nobody having asked: the tokio thread that had started them ended, and
    /// PR_SET_PDEATHSIG fires when the forking *thread* exits, not the process.
    #[test]
    fn a_child_outlives_the_thread_that_ran_its_supervisor() {
        let log = std::env::temp_dir().join(format!("children-test-{}.log", std::process::id()));
        let sleeper = Supervised::new(
            "sleeper",
            PathBuf::from("/bin/sleep"),
            vec!["30".into()],
            vec![],
            log.clone(),
        );
        let s = sleeper.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let _supervisor = s.spawn();
                while s.pid().is_none() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
        })
        .join()
        .unwrap();
        let pid = sleeper.pid().expect("the child started");
        std::thread::sleep(Duration::from_millis(300));
        let survived = alive(pid);
        signal(pid, libc::SIGKILL);
        let _ = std::fs::remove_file(log);
        assert!(survived, "the child died with the thread that started it");
    }
}
