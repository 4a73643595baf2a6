//! The board's `[[service]]` entries: host services, programs of the
//! read-only system image that berth starts before the containers.
//!
//! It only declares them: it must not start or supervise a service
//! (supervise does), and a service's checks are [`Board::validate`]'s.
//!
//! [`Board::validate`]: super::Board::validate

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

use super::{Path, SERVICE_ARGS_MAX, SERVICE_NAME_MAX};

/// A host service: a program of the read-only system image that berth
/// starts before the containers and restarts by its policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// `[a-z0-9-]`, at most [`SERVICE_NAME_MAX`] bytes, unique among services.
    pub name: String<SERVICE_NAME_MAX>,
    /// Program and arguments (1..=8); `argv[0]` is an absolute path.
    pub argv: Vec<Path, SERVICE_ARGS_MAX>,
    /// Restart policy (default `on-failure`).
    #[serde(default = "default_restart")]
    pub restart: crate::release::manifest::Restart,
    /// Restart timing, as in a manifest.
    #[serde(default)]
    pub backoff: Option<crate::release::manifest::BackoffSpec>,
}

fn default_restart() -> crate::release::manifest::Restart {
    crate::release::manifest::Restart::OnFailure
}
