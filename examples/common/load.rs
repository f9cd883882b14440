//! What the two load tools (`loadgen`, `sio_loadgen`) measure the same way: a process's CPU
//! time from `/proc` (Linux) and percentiles of latency samples.

/// Clock ticks per second (`getconf CLK_TCK`; 100 where it cannot tell).
pub(crate) fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime+stime of process `pid` (this one for `None`) in seconds, `tck` ticks per second.
pub(crate) fn cpu_secs(pid: Option<u32>, tck: f64) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let s = std::fs::read_to_string(path).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((ut + st) / tck)
}

/// The `p` quantile (0..=1) of `sorted` samples in µs, in ms; 0 for no samples.
pub(crate) fn pct(sorted: &[u32], p: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n => f64::from(sorted[(((n - 1) as f64 * p).round() as usize).min(n - 1)]) / 1000.0,
    }
}
