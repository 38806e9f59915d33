//! CPU time spent by this process, by Spin and by the Postgres server, to say what bounds a
//! run on two shared cores.

use std::time::Duration;

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// A process's parent, its own CPU (utime + stime) and its reaped children's (cutime +
/// cstime), from /proc/<pid>/stat.
fn process_cpu(pid: i32) -> Option<(i32, Duration, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state ppid … utime stime cutime cstime.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ppid: i32 = fields.get(1)?.parse().ok()?;
    let ticks = |i: usize| -> Option<f64> { fields.get(i)?.parse().ok() };
    let own = Duration::from_secs_f64((ticks(11)? + ticks(12)?) / ticks_per_second());
    let reaped = Duration::from_secs_f64((ticks(13)? + ticks(14)?) / ticks_per_second());
    Some((ppid, own, reaped))
}

/// The process `root` and its descendants, as they are now.
pub fn tree(root: i32) -> Vec<i32> {
    let mut parents = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok())
                && let Some((ppid, _, _)) = process_cpu(pid)
            {
                parents.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut next = 0;
    while next < tree.len() {
        let parent = tree[next];
        tree.extend(parents.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
        next += 1;
    }
    tree
}

/// CPU used so far by the process `root` and its descendants (all their threads), running or reaped: a Postgres
/// server from its postmaster (the backends of closed connections included), `spin up` with the `spin trigger`
/// process it starts.
pub fn tree_cpu(root: i32) -> Duration {
    tree(root).into_iter().filter_map(process_cpu).map(|(_, own, reaped)| own + reaped).sum()
}

/// CPU used so far by this process (host and load generator) and by its waited-for children.
pub fn own() -> (Duration, Duration) {
    let usage = |who| {
        // SAFETY: getrusage fills the struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut usage) };
        let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
        time(usage.ru_utime) + time(usage.ru_stime)
    };
    (usage(libc::RUSAGE_SELF), usage(libc::RUSAGE_CHILDREN))
}

/// Restricts the calling thread (and the threads and processes it starts later) to `core`.
pub fn pin_self(core: usize) -> anyhow::Result<()> {
    pin(0, core)
}

/// Restricts the postmaster `root` and its current children to `core`; backends it forks
/// later inherit the restriction.
pub fn pin_server(root: i32, core: usize) -> anyhow::Result<()> {
    for pid in tree(root) {
        pin(pid, core)?;
    }
    Ok(())
}

/// The cores the process `pid` may run on, as /proc/<pid>/status lists them (e.g. "1" or "0-1").
pub fn allowed_cores(pid: i32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| line.strip_prefix("Cpus_allowed_list:")).map(|list| list.trim().to_owned())
}

fn pin(pid: i32, core: usize) -> anyhow::Result<()> {
    // SAFETY: the set is zeroed, one bit is set, and its size is passed along.
    let result = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    anyhow::ensure!(result == 0, "cannot pin {pid} to core {core}: {}", std::io::Error::last_os_error());
    Ok(())
}
