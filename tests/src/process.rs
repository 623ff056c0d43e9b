//! What a process has used so far, read from `/proc` by procfs: the numbers the
//! benchmarks report and the tests bound.

use procfs::process::Process;
use procfs::ProcResult;

/// CPU time, peak memory and open files of a live process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessUsage {
    /// User + system CPU seconds.
    pub cpu_seconds: f64,
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
            peak_rss_kb: process.status()?.vmhwm.unwrap_or(0),
            open_fds: process.fd_count()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test process: it has spent CPU on the busy loop, holds the file it opened,
    /// and its peak memory covers the buffer it touched.
    #[test]
    fn reads_this_process() {
        let before = ProcessUsage::of(std::process::id()).unwrap();
        let buffer = vec![1u8; 64 << 20];
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_add(std::hint::black_box(buffer[x as usize % buffer.len()]) as u64);
        }
        let after = ProcessUsage::of(std::process::id()).unwrap();
        drop(file);
        assert!(
            after.cpu_seconds - before.cpu_seconds >= 0.2,
            "{before:?} → {after:?}"
        );
        assert!(
            after.peak_rss_kb >= before.peak_rss_kb.max(64 << 10),
            "{after:?}"
        );
        assert_eq!(
            after.open_fds,
            before.open_fds + 1,
            "{before:?} → {after:?}"
        );
        assert!(ProcessUsage::of(u32::MAX >> 1).is_err());
    }
}
