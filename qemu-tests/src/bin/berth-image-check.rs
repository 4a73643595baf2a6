//! `berth-image-check WORD [absent=PATH | present=PATH | has=PATH:TEXT]...`:
//! runs inside a container and checks its image. When every condition
//! holds it prints WORD and exits 0; otherwise it prints each condition
//! that failed (`CHECK-FAIL ...`) and exits 1. The `run --manifests` test
//! uses it to prove an OCI layer's whiteout and opaque directory took effect.

use std::process::ExitCode;

fn check(cond: &str) -> Result<(), String> {
    let exists = |p: &str| std::fs::symlink_metadata(p).is_ok();
    if let Some(p) = cond.strip_prefix("absent=") {
        return if exists(p) { Err(format!("{p} exists")) } else { Ok(()) };
    }
    if let Some(p) = cond.strip_prefix("present=") {
        return if exists(p) { Ok(()) } else { Err(format!("{p} is missing")) };
    }
    if let Some((p, text)) = cond.strip_prefix("has=").and_then(|r| r.split_once(':')) {
        return match std::fs::read_to_string(p) {
            Ok(t) if t == text => Ok(()),
            Ok(t) => Err(format!("{p} holds {t:?}, not {text:?}")),
            Err(e) => Err(format!("{p}: {e}")),
        };
    }
    Err(format!("unknown condition {cond:?}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((word, conds)) = args.split_first() else {
        println!("CHECK-FAIL usage: berth-image-check WORD [absent=P | present=P | has=P:TEXT]...");
        return ExitCode::from(2);
    };
    let failed: Vec<String> = conds.iter().filter_map(|c| check(c).err()).collect();
    if failed.is_empty() {
        println!("{word}");
        return ExitCode::SUCCESS;
    }
    for f in &failed {
        println!("CHECK-FAIL {f}");
    }
    ExitCode::FAILURE
}
