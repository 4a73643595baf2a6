//! The status view's metrics: [`FILE`] (`metrics.prom`), written beside
//! `status.json` in [`crate::common::names::STATUS_DIR`] with the same pacing and the
//! same whole-file replace, in the Prometheus text exposition format
//! (version 0.0.4), for a container granted the view to serve (the demo's
//! `status-web` at `/metrics`). This module owns the format: the metric
//! names, their help text, label escaping and the size bound. The loop
//! hands it numbers it already keeps; it reads nothing itself.
//!
//! It must not read files, sockets or the clock, nor render more than [`MAX`]
//! bytes.
//!
//! Families, in this order, each with its `# HELP` and `# TYPE` lines:
//!
//! - `berth_info{version="0.1.0"} 1`: berth's version (gauge);
//! - `berth_release_version`: the running release's version, 0 when none
//!   runs (gauge);
//! - `berth_update_phase{phase=".."}`: one series per phase of this boot's
//!   last update (`none`, then [`crate::supervise::outcome::Phase`]'s names), 1 for
//!   the current, 0 for the others (gauge);
//! - `berth_loop_stall_max_seconds` and `berth_watchdog_pet_late_max_seconds`:
//!   the loop's longest handler and latest watchdog pet over at least the
//!   last 10 s (`supervise::stall`'s recent window; gauges);
//! - per container of the running release, labelled `name`:
//!   `berth_container_state{name,state}` one series per [`STATES`] entry,
//!   1 for the current (gauge); `berth_container_restarts_total` (counter);
//!   `berth_container_memory_bytes`, its cgroup's memory in use, 0 when not
//!   running (gauge); `berth_container_oom_kills_total`, processes the
//!   kernel's OOM killer ended in its cgroups since boot (counter);
//!   `berth_container_output_dropped_lines_total`, output lines past its
//!   `log_rate` since boot (counter).
//!
//! Host services are in `status.json` only. At most [`CONTAINERS_MAX`]
//! containers are rendered, so the file never exceeds [`MAX`] bytes.

use std::io::Write as _;

/// The metrics file's name, in the status view's directory.
pub const FILE: &str = "metrics.prom";
/// The states `berth_container_state` has a series for.
pub const STATES: [&str; 7] = ["waiting", "updating", "starting", "running", "stopping", "stopped", "failed"];
/// The phases `berth_update_phase` has a series for (`none`: no update yet).
pub const PHASES: [&str; 7] = ["none", "staging", "trial", "rebooting", "committed", "rolled-back", "refused"];
/// Most containers rendered (a release holds no more).
pub const CONTAINERS_MAX: usize = crate::release::manifest::SET_MAX;
/// Largest file: [`CONTAINERS_MAX`] containers with the longest names, each
/// character escaped, and every number at its widest, fit (a test checks).
pub const MAX: usize = 64 << 10;

/// One container, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Container<'a> {
    pub name: &'a str,
    /// One of [`STATES`].
    pub state: &'a str,
    pub restarts: u32,
    pub memory_bytes: u64,
    pub oom_kills: u64,
    pub dropped_lines: u64,
}

/// The device-wide numbers.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Device<'a> {
    /// The running release's version (`None`: none runs).
    pub release: Option<u64>,
    /// The last update's phase name (`None`: no update this boot).
    pub update_phase: Option<&'a str>,
    pub stall_max_s: f64,
    pub pet_late_max_s: f64,
}

/// A label value: `\`, `"` and newline escaped, the rest as is.
pub fn label(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '\\' => out.extend_from_slice(b"\\\\"),
            '"' => out.extend_from_slice(b"\\\""),
            '\n' => out.extend_from_slice(b"\\n"),
            c => {
                let mut one = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut one).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// A float sample value as the format spells it.
fn float(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if v != 0.0 && !(1e-6..1e15).contains(&v.abs()) {
        // Display would spell every digit; the exponent form is short.
        let _ = write!(out, "{v:e}");
    } else {
        let _ = write!(out, "{v}");
    }
}

fn family(out: &mut Vec<u8>, name: &str, kind: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

/// `name{key="value"} ` (the value follows).
fn series(out: &mut Vec<u8>, name: &str, labels: &[(&str, &str)]) {
    out.extend_from_slice(name.as_bytes());
    if !labels.is_empty() {
        out.push(b'{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            label(out, v);
        }
        out.push(b'}');
    }
    out.push(b' ');
}

/// A family of one unlabelled gauge with a float value.
fn float_gauge(out: &mut Vec<u8>, name: &str, help: &str, v: f64) {
    family(out, name, "gauge", help);
    series(out, name, &[]);
    float(out, v);
    out.push(b'\n');
}

/// One family with one series per container, valued by `f`.
fn per_container(out: &mut Vec<u8>, containers: &[Container<'_>], name: &str, kind: &str, help: &str, f: impl Fn(&Container<'_>) -> u64) {
    family(out, name, kind, help);
    for c in containers {
        series(out, name, &[("name", c.name)]);
        let _ = writeln!(out, "{}", f(c));
    }
}

/// Render the file into `out` (cleared first; its capacity is kept).
pub fn render(out: &mut Vec<u8>, containers: &[Container<'_>], device: &Device<'_>) {
    render_as(out, env!("CARGO_PKG_VERSION"), containers, device);
}

/// [`render`] for berth version `berth`.
pub fn render_as(out: &mut Vec<u8>, berth: &str, containers: &[Container<'_>], device: &Device<'_>) {
    out.clear();
    let containers = containers.get(..CONTAINERS_MAX).unwrap_or(containers);
    family(out, "berth_info", "gauge", "berth's version, as a label.");
    series(out, "berth_info", &[("version", berth)]);
    out.extend_from_slice(b"1\n");
    family(out, "berth_release_version", "gauge", "The running release's version (0: none).");
    let _ = writeln!(out, "berth_release_version {}", device.release.unwrap_or(0));
    family(out, "berth_update_phase", "gauge", "Phase of this boot's last update (none: no update), 1 for the current.");
    let current = device.update_phase.unwrap_or("none");
    for p in PHASES {
        series(out, "berth_update_phase", &[("phase", p)]);
        let _ = writeln!(out, "{}", u8::from(p == current));
    }
    let stall_help = "Longest loop handler over at least the last 10 s.";
    float_gauge(out, "berth_loop_stall_max_seconds", stall_help, device.stall_max_s);
    let pet_help = "Latest watchdog pet over at least the last 10 s, after its due time.";
    float_gauge(out, "berth_watchdog_pet_late_max_seconds", pet_help, device.pet_late_max_s);
    family(out, "berth_container_state", "gauge", "Container state, 1 for the current.");
    for c in containers {
        for s in STATES {
            series(out, "berth_container_state", &[("name", c.name), ("state", s)]);
            let _ = writeln!(out, "{}", u8::from(s == c.state));
        }
    }
    let list = [
        ("berth_container_restarts_total", "counter", "Restarts of the container since boot.", 0),
        ("berth_container_memory_bytes", "gauge", "Memory in use by the container's cgroup (0: not running).", 1),
        ("berth_container_oom_kills_total", "counter", "Processes of the container the OOM killer ended since boot.", 2),
        ("berth_container_output_dropped_lines_total", "counter", "Output lines past the container's log_rate since boot.", 3),
    ];
    for (name, kind, help, which) in list {
        per_container(out, containers, name, kind, help, |c| match which {
            0 => u64::from(c.restarts),
            1 => c.memory_bytes,
            2 => c.oom_kills,
            _ => c.dropped_lines,
        });
    }
}

#[cfg(test)]
mod tests;
