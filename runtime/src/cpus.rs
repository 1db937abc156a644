//! How many shards `auto` means: the CPUs this process may run on, capped by its cgroup CPU quota.

use std::fs;

/// CPUs usable by this process: the affinity mask, capped by the cgroup v2/v1 CPU quota (rounded up).
pub fn usable_cpus() -> Vec<usize> {
    let mut cpus: Vec<usize> =
        core_affinity::get_core_ids().map(|ids| ids.into_iter().map(|c| c.id).collect()).unwrap_or_default();
    if cpus.is_empty() {
        let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        cpus = (0..n).collect();
    }
    if let Some(quota) = cgroup_quota_cpus() {
        cpus.truncate(quota.max(1));
    }
    cpus
}

/// The CPU quota in whole CPUs (rounded up) if a cgroup limits this process.
fn cgroup_quota_cpus() -> Option<usize> {
    // cgroup v2: "max 100000" or "150000 100000"
    if let Ok(s) = fs::read_to_string("/sys/fs/cgroup/cpu.max") {
        return parse_quota(s.split_whitespace().next()?, s.split_whitespace().nth(1)?);
    }
    let q = fs::read_to_string("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").ok()?;
    let p = fs::read_to_string("/sys/fs/cgroup/cpu/cpu.cfs_period_us").ok()?;
    parse_quota(q.trim(), p.trim())
}

fn parse_quota(quota: &str, period: &str) -> Option<usize> {
    let q: i64 = quota.parse().ok()?;
    let p: i64 = period.parse().ok()?;
    if q <= 0 || p <= 0 {
        return None;
    }
    Some(((q + p - 1) / p) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_rounds_up_and_ignores_max() {
        assert_eq!(parse_quota("150000", "100000"), Some(2));
        assert_eq!(parse_quota("100000", "100000"), Some(1));
        assert_eq!(parse_quota("max", "100000"), None);
        assert_eq!(parse_quota("-1", "100000"), None);
    }

    #[test]
    fn at_least_one_cpu() {
        assert!(!usable_cpus().is_empty());
    }
}
