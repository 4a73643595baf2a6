//! The `update-floor` scenario: the anti-rollback floor survives the loss
//! of both record copies (see `qemu_tests::updates` for the update variant
//! it runs on).

use crate::event::Event;
use crate::scenarios::{agent_pass, expect_boot, expect_poweroff, field_is, limits, no_errors, release_events, BootSpec, Launch};
use crate::updates::update_spec;

/// Release 2 is applied and commits; the agent garbles both record copies
/// and reboots. The next boot says exactly: both slots unusable, the record
/// rebuilt from the 2 verified objects with floor 2, release 1 below it
/// refused; it accepts release 2 (`floor=2`, no rollback), collects release
/// 1's object and the images only it used, and `berthctl release` shows 2
/// committed with no previous release.
pub(crate) fn update_floor(l: &dyn Launch) -> Result<(), String> {
    let lim = limits(l.arch());
    let info = l.updates()?;
    let v1 = info.known.iter().find(|k| k.version == 1).ok_or("release 1 is not known")?;
    let v1_digest = format!("sha256:{}", v1.release.trim_end_matches(".bin"));
    let v2 = info.known.iter().find(|k| k.version == 2).ok_or("release 2 is not known")?;
    let v1_only = v1.images.iter().filter(|i| !v2.images.contains(i)).count().to_string();
    let mut m = l.boot(&BootSpec { allow_reboot: true, ..update_spec("update-floor", "update-floor") })?;
    expect_boot(&mut m, &lim)?;
    let ready = m.cursor();
    field_is(&m.expect_event("release.commit", lim.boot)?, "version", "2")?;
    m.set_cursor(ready);
    for check in ["update-v2", "update-commit", "floor-garbled"] {
        agent_pass(&mut m, check, &lim)?;
    }
    m.expect_line("AGENT action=reboot", lim.step)?;
    field_is(&m.expect_event("shutdown.begin", lim.step)?, "action", "reboot")?;
    let first = m.events().len();
    m.expect_event_where("boot.start", |e| e.is("stage", "initramfs"), lim.boot)?;
    let accepted = m.expect_event("release.accepted", lim.boot)?;
    for (k, v) in [("version", "2"), ("stored", "kept"), ("floor", "2")] {
        field_is(&accepted, k, v)?;
    }
    let gc = m.expect_event("release.gc", lim.step)?;
    for (k, v) in [("releases", "1"), ("images", v1_only.as_str())] {
        field_is(&gc, k, v)?;
    }
    m.expect_event("boot.ready", lim.step)?;
    agent_pass(&mut m, "floor-kept", &lim)?;
    expect_poweroff(&mut m, "SIGTERM", &lim)?;
    let events = m.events();
    let notes: Vec<&str> = events.iter().skip(first).filter(|e| e.name == "release.store").filter_map(|e| e.get("note")).collect();
    let want = [
        "record slot record.a is unusable (truncated); using the other copy".to_string(),
        "record slot record.b is unusable (truncated); using the other copy".to_string(),
        "no record copy was usable; rebuilt it from 2 verified release objects, anti-rollback floor 2".to_string(),
        format!("release 1 ({v1_digest}) is below the anti-rollback floor 2; refused"),
    ];
    if notes != want {
        return Err(format!("the boot after garbling the record noted {notes:?}, want {want:?}"));
    }
    let accepted: Vec<&Event> = events.iter().skip(first).filter(|e| e.name == "release.accepted").collect();
    if accepted.len() != 1 || events.iter().any(|e| e.name == "release.rollback") {
        return Err(format!("want one release accepted (2) and no rollback: {:?}", release_events(&events[first..])));
    }
    no_errors(&m, &[])
}
