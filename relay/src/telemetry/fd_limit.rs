//! The process's open-files limit (the soft `RLIMIT_NOFILE`), read from `/proc/self/limits`
//! so that no `unsafe` `getrlimit` call is needed. `None` off Linux or when unlimited.

pub fn open_files_limit() -> Option<u64> {
    parse(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

/// The soft limit from the `Max open files  <soft>  <hard>  files` line.
fn parse(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_soft_limit() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             63704                63704                processes \n\
                    Max open files            64                   4096                 files     \n";
        assert_eq!(parse(text), Some(64));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse(unlimited), None);
        assert!(open_files_limit().is_some_and(|n| n > 0));
    }
}
