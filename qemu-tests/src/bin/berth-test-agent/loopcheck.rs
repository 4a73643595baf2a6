//! Checks of PID 1's loop from the outside: that it stays idle while a
//! container waits for a dependency that never becomes ready, and that a
//! host service killed by a real-time signal is reaped and restarted.

use std::time::{Duration, Instant};

/// How long PID 1's CPU time is measured while it has nothing to do.
pub const IDLE_WINDOW: Duration = Duration::from_secs(30);
/// The most PID 1 may use of [`IDLE_WINDOW`]: 1 %.
pub const IDLE_SHARE_MAX: f64 = 0.01;
/// SIGRTMIN+3 as glibc and musl number it (their SIGRTMIN is 34).
pub const SIGRTMIN_PLUS_3: i32 = 37;

/// PID 1's user + system CPU time (fields 14 and 15 of /proc/1/stat).
fn pid1_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/1/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = text.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3, so field N is f[N - 3].
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0)?;
    Some(Duration::from_secs_f64((utime + stime) as f64 / hz as f64))
}

/// The whitespace-split `berthctl status` row of `name`.
fn row(name: &str) -> Option<Vec<String>> {
    let st = super::berthctl(&["status"])?;
    let l = st.lines().find(|l| l.split_whitespace().next() == Some(name))?;
    Some(l.split_whitespace().map(str::to_string).collect())
}

fn field(r: &Option<Vec<String>>, i: usize) -> Option<&str> {
    r.as_ref()?.get(i).map(String::as_str)
}

/// Wait up to `limit` for `want` to hold.
fn wait_for(limit: Duration, mut want: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if want() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// `blocked` waits for `never` (running, never ready): PID 1's CPU time
/// over [`IDLE_WINDOW`] stays under [`IDLE_SHARE_MAX`] of it.
pub fn idle_while_waiting() -> (bool, String) {
    let settled = || {
        let (b, n) = (row("blocked"), row("never"));
        field(&b, 2) == Some("waiting") && field(&n, 2) == Some("running") && field(&n, 3) == Some("no")
    };
    if !wait_for(Duration::from_secs(60), settled) {
        return (false, format!("never running and blocked waiting not seen: {:?} / {:?}", row("never"), row("blocked")));
    }
    let (Some(before), t0) = (pid1_cpu(), Instant::now()) else {
        return (false, "cannot read /proc/1/stat".into());
    };
    std::thread::sleep(IDLE_WINDOW);
    let (Some(after), took) = (pid1_cpu(), t0.elapsed()) else {
        return (false, "cannot read /proc/1/stat".into());
    };
    let used = after.saturating_sub(before);
    let share = used.as_secs_f64() / took.as_secs_f64();
    let still = field(&row("blocked"), 2) == Some("waiting");
    let detail = format!("PID 1 used {} ms of CPU over {:.1} s ({:.2} %); blocked still waiting: {still}", used.as_millis(), took.as_secs_f64(), share * 100.0);
    (share < IDLE_SHARE_MAX && still, detail)
}

/// The board's `sleeper` service is killed with SIGRTMIN+3: berth reaps
/// it and restarts it (a new pid, running again).
pub fn rt_signal_service() -> (bool, String) {
    let pid_of = || field(&row("sleeper"), 4).and_then(|p| p.parse::<i32>().ok()).filter(|p| *p > 0);
    let mut first = None;
    if !wait_for(Duration::from_secs(30), || {
        first = pid_of();
        first.is_some()
    }) {
        return (false, format!("sleeper not running: {:?}", row("sleeper")));
    }
    let Some(pid) = first else {
        return (false, "no pid".into());
    };
    // SAFETY: kill has no memory preconditions; pid is sleeper's.
    if unsafe { libc::kill(pid, SIGRTMIN_PLUS_3) } != 0 {
        return (false, format!("kill({pid}, {SIGRTMIN_PLUS_3}): {}", std::io::Error::last_os_error()));
    }
    let restarted = wait_for(Duration::from_secs(30), || pid_of().is_some_and(|p| p != pid) && field(&row("sleeper"), 2) == Some("running"));
    (restarted, format!("sleeper pid {pid} killed with signal {SIGRTMIN_PLUS_3}; now {:?}", row("sleeper")))
}
