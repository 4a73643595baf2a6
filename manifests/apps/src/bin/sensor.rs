//! Demo container `sensor`: reads a granted hardware node (a random number
//! generator or a serial port) and logs one reading per interval.
//!
//! Arguments: `sensor DEVICE [INTERVAL_MS]`.

use std::io::Read;
use std::time::Duration;

fn main() {
    berth_demo_apps::exit_on_sigterm();
    let mut args = std::env::args().skip(1);
    let Some(dev) = args.next() else {
        eprintln!("sensor: usage: sensor DEVICE [INTERVAL_MS]");
        std::process::exit(2);
    };
    let interval = args.next().and_then(|s| s.parse().ok()).unwrap_or(2_000u64);
    let mut f = match std::fs::File::open(&dev) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("sensor: cannot open {dev}: {e}");
            std::process::exit(1);
        }
    };
    let mut n = 0u64;
    loop {
        let mut buf = [0u8; 2];
        match f.read_exact(&mut buf) {
            Ok(()) => {
                n += 1;
                // A 12-bit reading, as an ADC would give.
                let raw = u16::from_le_bytes(buf) & 0x0fff;
                println!("sensor: reading={n} value={raw} device={dev}");
            }
            Err(e) => {
                eprintln!("sensor: read {dev}: {e}");
                std::process::exit(1);
            }
        }
        std::thread::sleep(Duration::from_millis(interval));
    }
}
