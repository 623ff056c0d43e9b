//! What a process has used so far, read from `/proc` by procfs: the numbers the
//! benchmarks report and the tests bound.

use procfs::process::Process;
use procfs::ProcResult;

/// CPU time, peak memory and open files of a live process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessUsage {
    /// User + system CPU seconds.
    pub cpu_seconds: f64,
    /// Of which system (kernel) CPU seconds.
    pub system_seconds: f64,
    /// Peak resident set size (`VmHWM`), KiB.
    pub peak_rss_kb: u64,
    /// File descriptors open now.
    pub open_fds: usize,
}

impl ProcessUsage {
    pub fn of(pid: u32) -> ProcResult<ProcessUsage> {
        let process = Process::new(pid as i32)?;
        let stat = process.stat()?;
        Ok(ProcessUsage {
            cpu_seconds: (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64,
            system_seconds: stat.stime as f64 / procfs::ticks_per_second() as f64,
            peak_rss_kb: process.status()?.vmhwm.unwrap_or(0),
            open_fds: process.fd_count()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use super::*;

    fn quiet_child(script: &str) -> std::process::Child {
        Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Two sleeping children that differ by the two files one of them opened: their
    /// descriptor counts differ by two (whatever both inherited), and neither has used
    /// measurable CPU.
    #[test]
    fn reads_quiet_children() {
        let mut plain = quiet_child("exec sleep 30");
        let mut two_more = quiet_child("exec 7</dev/null 8</dev/null; exec sleep 30");
        std::thread::sleep(Duration::from_millis(300));
        let usage = (
            ProcessUsage::of(plain.id()),
            ProcessUsage::of(two_more.id()),
        );
        for child in [&mut plain, &mut two_more] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        let (plain_usage, two_more_usage) = (usage.0.unwrap(), usage.1.unwrap());
        assert_eq!(
            two_more_usage.open_fds,
            plain_usage.open_fds + 2,
            "{plain_usage:?} {two_more_usage:?}"
        );
        for u in [plain_usage, two_more_usage] {
            assert!(u.cpu_seconds < 0.05 && u.peak_rss_kb > 0, "{u:?}");
        }
        assert!(
            ProcessUsage::of(plain.id()).is_err(),
            "reaped: no /proc entry"
        );
    }

    /// CPU seconds grow with work done (whatever the machine's load), and the peak covers
    /// a buffer this process touched.
    #[test]
    fn reads_this_process() {
        let before = ProcessUsage::of(std::process::id()).unwrap();
        let buffer = std::hint::black_box(vec![1u8; 64 << 20]);
        let started = Instant::now();
        let mut x = 0u64;
        let after = loop {
            for i in 0..1_000_000 {
                x = x.wrapping_add(buffer[(x as usize + i) % buffer.len()] as u64);
            }
            let now = ProcessUsage::of(std::process::id()).unwrap();
            if now.cpu_seconds - before.cpu_seconds >= 0.1 {
                break now;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no CPU time counted: {before:?} → {now:?}"
            );
        };
        std::hint::black_box(x);
        assert!(after.peak_rss_kb >= 64 << 10, "{after:?}");
    }
}
