//! The board config the running system was built with: compiled by xtask
//! to postcard and put in the initramfs and on the system image, read by
//! PID 1 at boot, by the stager and by the host services. Reading it is
//! bounded; it is never written on the device.
//!
//! It only reads: it must not write the board config on the device, nor read
//! more of it than its bound.

use crate::common::files::read_bounded;
use crate::release::board::Board;

/// The compiled board config, in the initramfs and on the system image.
pub const BOARD_PATH: &str = "/etc/berth/board.bin";
/// Largest board config berth reads.
const BOARD_MAX: usize = 16 * 1024;

/// The compiled board config from the running system.
pub fn load_board() -> Result<Board, String> {
    let bytes = read_bounded(BOARD_PATH, BOARD_MAX).map_err(|e| format!("{BOARD_PATH}: {e}"))?;
    Board::from_postcard(&bytes).map_err(|e| format!("{BOARD_PATH}: {e}"))
}
