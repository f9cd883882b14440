//! Resident memory of a process from `/proc` (Linux), shared by the load tools and servers
//! under `examples/`.

/// VmRSS of `pid` (`"self"` for this process) in bytes; `None` where `/proc` cannot tell.
pub(crate) fn rss_bytes(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}
