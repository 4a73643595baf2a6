//! Demo container `status-web`: a small HTTP/1.1 server showing the
//! device's status, on the host network.
//!
//! It reads berth's status view (`status_view = true` in its manifest: a
//! read-only directory berth keeps up to date, never the control socket) and
//! serves `/` (an HTML page), `/status.json` (the same data, with each
//! run's uptime worked out from its `started_ms`) and `/metrics` (berth's
//! `metrics.prom` from the same directory, as is, in the Prometheus text
//! format; 503 while it is missing or too big). One connection at a time,
//! each bounded by a 2 s timeout; std only.
//!
//! Arguments: `status-web [PORT] [STATUS_FILE]` (default 8080 and
//! `/run/berth-status/status.json`).

use berth_demo_apps::json::{self, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

const STATUS_FILE: &str = "/run/berth-status/status.json";
const REQUEST_MAX: usize = 4096;
/// The metrics file, beside the status file.
const METRICS_FILE: &str = "metrics.prom";
/// Largest metrics file served (berth bounds it to 64 KiB).
const METRICS_MAX: u64 = 64 << 10;
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn main() {
    berth_demo_apps::exit_on_sigterm();
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|s| s.parse().ok()).unwrap_or(8080);
    let file = args.next().unwrap_or_else(|| STATUS_FILE.to_string());
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("status-web: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    println!("status-web: listening on port {port}, reading {file}");
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => serve(stream, &file),
            Err(e) => eprintln!("status-web: accept: {e}"),
        }
    }
}

fn serve(mut stream: TcpStream, file: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut req = Vec::new();
    let mut chunk = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < REQUEST_MAX {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => req.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
        }
    }
    let line = String::from_utf8_lossy(&req);
    let mut words = line.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (code, kind, body) = match (method, path) {
        ("GET" | "HEAD", "/status.json") => match status(file) {
            Ok(v) => (200, "application/json", v.to_json() + "\n"),
            Err(e) => (503, "application/json", format!("{{\"error\":{}}}\n", Value::Str(e).to_json())),
        },
        ("GET" | "HEAD", "/metrics") => match metrics(file) {
            Ok(text) => (200, METRICS_TYPE, text),
            Err(e) => (503, "text/plain; charset=utf-8", format!("metrics not available: {e}\n")),
        },
        ("GET" | "HEAD", "/" | "/index.html") => match status(file) {
            Ok(v) => (200, "text/html; charset=utf-8", page(&v)),
            Err(e) => (503, "text/plain; charset=utf-8", format!("status not available: {e}\n")),
        },
        ("GET" | "HEAD", _) => (404, "text/plain; charset=utf-8", "not found\n".to_string()),
        _ => (405, "text/plain; charset=utf-8", "only GET and HEAD\n".to_string()),
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head =
        format!("HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n", body.len());
    let _ = stream.write_all(head.as_bytes());
    if method != "HEAD" {
        let _ = stream.write_all(body.as_bytes());
    }
    println!("status-web: {method} {path} {code}");
}

/// The metrics file beside the status file `file`, read whole (at most
/// [`METRICS_MAX`] bytes).
fn metrics(file: &str) -> Result<String, String> {
    let path = std::path::Path::new(file).with_file_name(METRICS_FILE);
    let f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    f.take(METRICS_MAX + 1).read_to_string(&mut text).map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() as u64 > METRICS_MAX {
        return Err(format!("{}: over {METRICS_MAX} bytes", path.display()));
    }
    Ok(text)
}

/// The status file, with `uptime_s` for each running entry.
fn status(file: &str) -> Result<Value, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    let mut v = json::parse(&text).map_err(|e| format!("{file}: {e}"))?;
    let now_ms = monotonic_ms();
    if let Some(Value::Arr(list)) = v.get_mut("containers") {
        for c in list.iter_mut() {
            let uptime = match c.get("started_ms") {
                Some(Value::Num(ms)) => Value::Num(((now_ms - ms) / 1e3).max(0.0).floor()),
                _ => Value::Null,
            };
            if let Value::Obj(fields) = c {
                fields.push(("uptime_s".to_string(), uptime));
            }
        }
    }
    Ok(v)
}

fn monotonic_ms() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

fn esc(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::Str(s)) => esc(s),
        Some(Value::Num(n)) => format!("{n}"),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.to_string(),
        _ => "-".to_string(),
    }
}

fn page(v: &Value) -> String {
    let release = match v.get("release") {
        Some(r @ Value::Obj(_)) => format!("release {} ({}), signed by key {}", text(r.get("version")), text(r.get("phase")), text(r.get("key_id"))),
        _ => "no release running".to_string(),
    };
    let mut rows = String::new();
    if let Some(Value::Arr(list)) = v.get("containers") {
        for c in list {
            let up = match c.get("uptime_s") {
                Some(Value::Num(s)) => format!("{}s", s),
                _ => "-".to_string(),
            };
            rows += &format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                text(c.get("name")),
                text(c.get("kind")),
                text(c.get("state")),
                text(c.get("ready")),
                text(c.get("restarts")),
                up,
                text(c.get("last_exit")),
            );
        }
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">\
         <title>berth gateway</title><style>body{{font-family:sans-serif;margin:2em}}\
         td,th{{padding:.2em .8em;text-align:left;border-bottom:1px solid #ccc}}</style></head>\n\
         <body><h1>berth gateway</h1><p>{release}; berth {}</p>\n\
         <table><tr><th>name</th><th>kind</th><th>state</th><th>ready</th><th>restarts</th><th>uptime</th><th>last exit</th></tr>\n\
         {rows}</table><p><a href=\"/status.json\">status.json</a>, <a href=\"/metrics\">metrics</a> (refreshes every 5 s)</p></body></html>\n",
        text(v.get("berth"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_beside_the_status_file_and_bounded() {
        let dir = std::env::temp_dir().join(format!("status-web-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = dir.join("status.json");
        let status = status.to_str().unwrap();
        assert!(metrics(status).unwrap_err().contains("metrics.prom"));
        std::fs::write(dir.join(METRICS_FILE), "# HELP a b\n# TYPE a gauge\na 1\n").unwrap();
        assert_eq!(metrics(status).unwrap(), "# HELP a b\n# TYPE a gauge\na 1\n");
        std::fs::write(dir.join(METRICS_FILE), vec![b'#'; METRICS_MAX as usize + 1]).unwrap();
        assert!(metrics(status).unwrap_err().contains("over"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
