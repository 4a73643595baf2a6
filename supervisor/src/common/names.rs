//! Names and limits that more than one group needs: where the data partition
//! and the status and notify directories are, what a container sees of them,
//! and how many host services a board may have. Plain constants (and one
//! pure path helper); it must not use any other group of the crate.

/// berth's version as `berth --version`, `berthctl --version` and
/// `boot.start` show it: the package's, or the build's own when it was
/// built with `BERTH_VERSION` set (a test build that must be told apart).
pub const VERSION: &str = match option_env!("BERTH_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

/// Where the data partition is mounted.
pub const DATA: &str = "/data";
/// Most host services.
pub const SERVICES_MAX: usize = 8;

/// Host directory of the containers' notify sockets.
pub const NOTIFY_DIR: &str = "/run/berth/notify";
/// The notify socket's path inside a container.
pub const NOTIFY_INSIDE: &str = "/dev/notify";
/// The environment string a container with a notify socket gets.
pub const NOTIFY_ENV: &str = "NOTIFY_SOCKET=/dev/notify";

/// The host path of a container's notify socket.
pub fn notify_host_path(name: &str) -> String {
    format!("{NOTIFY_DIR}/{name}")
}

/// Host directory of the status view's files.
pub const STATUS_DIR: &str = "/run/berth/status";
/// Where a container with `status_view = true` sees [`STATUS_DIR`].
pub const STATUS_INSIDE: &str = "/run/berth-status";
