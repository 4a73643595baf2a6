//! The agent's loop: settle a pending action first (watch berth's status
//! view until it has a verdict, then send the final feedback), else poll
//! the server, send config data when asked, and take an offered
//! deployment: download, verify, save the pending action, drop the bundle,
//! report `proceeding`.
//!
//! A pending action that gets no verdict from berth within the configured
//! `result_timeout_s` (default 30 minutes) after the drop is reported as a
//! failure, "no result from berth".

use crate::config::Config;
use crate::ddi::{self, Execution, Finished};
use crate::download::{self, Fail};
use crate::http::Http;
use crate::state::{self, Pending};
use crate::status::{self, Expect, Verdict};
use crate::{drop, log};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the status view is read while a verdict is awaited.
const WATCH: Duration = Duration::from_millis(500);
/// Wait after a failed poll or feedback before trying again.
const RETRY: Duration = Duration::from_secs(30);

pub struct Agent {
    cfg: Config,
    http: Http,
    /// The last status-view problem logged, so it is logged once.
    last_note: Option<String>,
}

/// What one round did.
enum Round {
    /// Something happened; go on without sleeping.
    Busy,
    /// Nothing to do until the server's next poll time.
    Idle(Duration),
    /// Waiting for berth's verdict.
    Watching,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Agent {
    pub fn new(cfg: Config) -> Agent {
        let http = Http::new(&cfg);
        Agent { cfg, http, last_note: None }
    }

    /// Runs forever, or with `once` until nothing is pending and the server
    /// offers nothing (an error then ends the run).
    pub fn run(&mut self, once: bool) -> Result<(), String> {
        loop {
            match self.round() {
                Ok(Round::Busy) => {}
                Ok(Round::Watching) => std::thread::sleep(WATCH),
                Ok(Round::Idle(_)) if once => return Ok(()),
                Ok(Round::Idle(sleep)) => std::thread::sleep(sleep),
                Err(e) if once => return Err(e),
                Err(e) => {
                    log(&e);
                    std::thread::sleep(RETRY);
                }
            }
        }
    }

    fn round(&mut self) -> Result<Round, String> {
        if let Some(p) = state::load(&self.cfg.state_dir)? {
            return self.settle(&p);
        }
        self.poll()
    }

    fn poll(&mut self) -> Result<Round, String> {
        let poll = ddi::parse_poll(&self.http.get_json(&self.cfg.poll_url())?)?;
        if let Some(note) = &poll.sleep_note {
            log(note);
        }
        if let Some(url) = &poll.deployment {
            self.cfg.check_url(url)?;
            self.deploy(url)?;
            return Ok(Round::Busy);
        }
        if let Some(url) = &poll.config_data {
            self.cfg.check_url(url)?;
            self.send_config_data(url)?;
            // A server asks for config data before it offers anything
            // (gooseBit registers the device so): ask again at once.
            return Ok(Round::Busy);
        }
        Ok(Round::Idle(poll.sleep))
    }

    fn send_config_data(&mut self, url: &str) -> Result<(), String> {
        let st = status::read(&self.cfg.status_dir).inspect_err(|e| log(&format!("config data without the status view: {e}"))).unwrap_or_default();
        let body = ddi::config_data(&self.cfg.board, st.berth.as_deref(), st.release_version);
        self.http.send_json("PUT", url, &body)?;
        log(&format!("sent config data: {}", body["data"]));
        Ok(())
    }

    fn deploy(&mut self, url: &str) -> Result<(), String> {
        let d = ddi::parse_deployment(&self.http.get_json(url)?)?;
        let feedback = ddi::feedback_url(url);
        log(&format!("action {}: {} ({} bytes)", d.action_id, d.artifact.filename, d.artifact.size));
        if let Err(e) = self.cfg.check_url(&d.artifact.href) {
            return self.close(&feedback, Finished::Failure, &[e]);
        }
        let file = match download::fetch(&self.http, &d.artifact, &self.cfg.state_dir, self.cfg.max_download) {
            Ok(f) => f,
            Err(Fail::Retry(e)) => return Err(format!("action {}: {e} (will resume)", d.action_id)),
            Err(Fail::Bad(e)) => return self.close(&feedback, Finished::Failure, &[e]),
        };
        let staged = drop::stage(&file, &d.artifact.filename, &self.cfg.drop_dir);
        let _ = std::fs::remove_file(&file);
        let staged = match staged {
            Ok(s) => s,
            Err(e) => return self.close(&feedback, Finished::Failure, &[e]),
        };
        let expected_version = crate::swu::version_in_name(&staged.name).or_else(|| d.version.as_deref().and_then(ddi::release_of));
        let pending = Pending {
            action_id: d.action_id.clone(),
            feedback_url: feedback.clone(),
            bundle_id: staged.id.clone(),
            expected_version,
            boot_id: state::boot_id(),
            dropped_at: now(),
        };
        if let Err(e) = state::save(&self.cfg.state_dir, &pending) {
            staged.abandon();
            return Err(format!("action {}: cannot save the pending action, bundle not dropped: {e}", d.action_id));
        }
        let id = staged.id.clone();
        let at = match staged.publish() {
            Ok(at) => at,
            Err(e) => {
                state::clear(&self.cfg.state_dir)?;
                return self.close(&feedback, Finished::Failure, &[format!("cannot hand the bundle to berth: {e}")]);
            }
        };
        log(&format!("action {}: dropped {} ({id})", d.action_id, at.display()));
        let note = [format!("downloaded and handed to berth as {id}")];
        if let Err(e) = self.http.send_json("POST", &feedback, &ddi::feedback(Execution::Proceeding, Finished::None, &note)) {
            log(&format!("action {}: proceeding feedback not taken: {e}", d.action_id));
        }
        Ok(())
    }

    /// Sends final feedback for an action that never reached berth.
    fn close(&mut self, feedback: &str, finished: Finished, details: &[String]) -> Result<(), String> {
        log(&format!("reporting {finished:?}: {}", details.join("; ")));
        self.http.send_json("POST", feedback, &ddi::feedback(Execution::Closed, finished, details))
    }

    fn settle(&mut self, p: &Pending) -> Result<Round, String> {
        let rebooted = matches!((&p.boot_id, state::boot_id()), (Some(then), Some(now)) if *then != now);
        let want = Expect { id: &p.bundle_id, version: p.expected_version, rebooted };
        let verdict = match status::read(&self.cfg.status_dir) {
            Ok(st) => status::decide(&st, &want),
            Err(e) => {
                if self.last_note.as_ref() != Some(&e) {
                    log(&format!("status view: {e}"));
                    self.last_note = Some(e);
                }
                Verdict::Wait
            }
        };
        let limit = self.cfg.result_timeout.as_secs();
        let verdict = match verdict {
            Verdict::Wait if now().saturating_sub(p.dropped_at) > limit => {
                Verdict::Failure(vec![format!("no result from berth within {limit} s of the drop ({})", p.bundle_id)])
            }
            v => v,
        };
        let (finished, details) = match verdict {
            Verdict::Wait => return Ok(Round::Watching),
            Verdict::Success(d) => (Finished::Success, d),
            Verdict::Failure(d) => (Finished::Failure, d),
        };
        self.close(&p.feedback_url, finished, &details).map_err(|e| format!("action {}: final feedback not taken: {e}", p.action_id))?;
        state::clear(&self.cfg.state_dir)?;
        log(&format!("action {}: closed", p.action_id));
        Ok(Round::Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::testserver::{reply, serve_with};
    use std::path::PathBuf;

    fn agent(tag: &str, base: &str) -> (Agent, PathBuf) {
        let dir = std::env::temp_dir().join(format!("berth-agent-loop-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["drop", "state", "status"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let text = format!(
            "server = {base}\ntenant = T\ncontroller_id = d\nboard = b\ndrop_dir = {d}/drop\nstate_dir = {d}/state\nstatus_dir = {d}/status\nallow_plaintext = true\nrequest_timeout_s = 5\n",
            d = dir.display()
        );
        (Agent::new(crate::config::parse(&text).unwrap()), dir)
    }

    fn deployment(base: &str, href: &str, sha1: &str) -> Vec<Vec<u8>> {
        let poll = format!(
            r#"{{"config":{{"polling":{{"sleep":"00:00:05"}}}},"_links":{{"deploymentBase":{{"href":"{base}/T/controller/v1/d/deploymentBase/9?c=1"}}}}}}"#
        );
        let dep = format!(
            r#"{{"id":"9","deployment":{{"chunks":[{{"version":"4.0.0","artifacts":[{{"filename":"x.bundle","size":5,"hashes":{{"sha1":"{sha1}"}},"_links":{{"download":{{"href":"{href}"}}}}}}]}}]}}}}"#
        );
        vec![reply("200 OK", "", poll.as_bytes()), reply("200 OK", "", dep.as_bytes())]
    }

    /// A download whose hash is wrong is reported as a failure naming the
    /// hash, and nothing reaches the drop directory or the state.
    #[test]
    fn a_wrong_hash_is_reported_and_nothing_is_dropped() {
        let s = serve_with(|base| {
            let mut r = deployment(base, &format!("{base}/dl"), &"0".repeat(40));
            r.push(reply("200 OK", "", b"hello"));
            r.push(reply("200 OK", "", b"{}"));
            r
        });
        let (mut a, dir) = agent("hash", &s.base);
        assert!(matches!(a.round(), Ok(Round::Busy)));
        let reqs = s.requests.lock().unwrap().clone();
        assert!(reqs[3].starts_with("POST /T/controller/v1/d/deploymentBase/9/feedback "), "{}", reqs[3]);
        assert!(reqs[3].contains(r#""execution":"closed""#) && reqs[3].contains(r#""finished":"failure""#) && reqs[3].contains("sha1 aaf4c61d"), "{}", reqs[3]);
        assert_eq!(std::fs::read_dir(dir.join("drop")).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(dir.join("state")).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// An artifact link the agent may not use (neither https nor allowed
    /// http) is refused and reported, never fetched.
    #[test]
    fn a_foreign_artifact_link_is_refused_and_reported() {
        let s = serve_with(|base| {
            let mut r = deployment(base, "ftp://cdn.example/x.bundle", &"0".repeat(40));
            r.push(reply("200 OK", "", b"{}"));
            r
        });
        let (mut a, dir) = agent("tls", &s.base);
        assert!(matches!(a.round(), Ok(Round::Busy)));
        let reqs = s.requests.lock().unwrap().clone();
        assert_eq!(reqs.len(), 3);
        assert!(reqs[2].contains("neither an https:// nor an http:// URL") && reqs[2].contains(r#""finished":"failure""#), "{}", reqs[2]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn pending(base: &str, boot_id: Option<&str>, dropped_at: u64) -> Pending {
        Pending {
            action_id: "9".into(),
            feedback_url: format!("{base}/T/controller/v1/d/deploymentBase/9/feedback"),
            bundle_id: "sha256:ab".into(),
            expected_version: Some(4),
            boot_id: boot_id.map(str::to_string),
            dropped_at,
        }
    }

    /// After a reboot with no `update` in the view, an older release
    /// committed is a rollback; the pending action is cleared once the
    /// server took the feedback.
    #[test]
    fn a_rollback_across_a_reboot_is_reported_and_cleared() {
        let s = serve_with(|_| vec![reply("200 OK", "", b"{}")]);
        let (mut a, dir) = agent("reboot", &s.base);
        std::fs::write(dir.join("status/status.json"), r#"{"release":{"version":3,"phase":"committed"},"update":null}"#).unwrap();
        state::save(&dir.join("state"), &pending(&s.base, Some("an-earlier-boot"), now())).unwrap();
        assert!(matches!(a.round(), Ok(Round::Busy)));
        let req = s.requests.lock().unwrap()[0].clone();
        assert!(req.contains("cause: rolled back across a reboot") && req.contains(r#""finished":"failure""#), "{req}");
        assert_eq!(state::load(&dir.join("state")), Ok(None));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// No verdict within the bound: "no result from berth"; before it, wait.
    #[test]
    fn no_verdict_in_time_is_a_failure() {
        let s = serve_with(|_| vec![reply("200 OK", "", b"{}")]);
        let (mut a, dir) = agent("timeout", &s.base);
        std::fs::write(dir.join("status/status.json"), r#"{"release":{"version":3,"phase":"committed"},"update":null}"#).unwrap();
        state::save(&dir.join("state"), &pending(&s.base, None, now())).unwrap();
        assert!(matches!(a.round(), Ok(Round::Watching)));
        state::save(&dir.join("state"), &pending(&s.base, None, now() - 1801)).unwrap();
        assert!(matches!(a.round(), Ok(Round::Busy)));
        let req = s.requests.lock().unwrap()[0].clone();
        assert!(req.contains("no result from berth within 1800 s"), "{req}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
