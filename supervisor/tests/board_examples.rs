//! The example board configs for real hardware (`board-configs/examples/`)
//! stand without the tables only xtask reads, and name their disks by GPT
//! partition label; a bad label is refused naming the field.

use berth::common::blockname::{parse, DeviceName};
use berth::release::board::Board;

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../board-configs/examples/{name}.toml", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn the_router_example_is_a_whole_board_without_qemu() {
    let b = Board::from_toml(&example("nanopi-r4s")).unwrap();
    assert_eq!(b.name.as_str(), "nanopi-r4s");
    assert!(b.qemu.is_none(), "a real board has no [qemu] table");
    assert_eq!(b.kernel.as_ref().map(|k| k.flavour.as_str()), Some("arm64"));
    assert_eq!(parse(&b.storage.system.device), Ok(DeviceName::PartLabel("berth-system")));
    assert_eq!(parse(&b.storage.data.device), Ok(DeviceName::PartLabel("berth-data")));
    assert_eq!(b.networks.len(), 2);
    assert!(b.watchdog.is_some());
}

#[test]
fn the_kernel_table_is_optional_too() {
    let text = example("nanopi-r4s");
    let start = text.find("[kernel]").unwrap();
    let end = text[start..].find("\n\n").map(|i| start + i).unwrap();
    let without = format!("{}{}", &text[..start], &text[end..]);
    let b = Board::from_toml(&without).unwrap();
    assert!(b.kernel.is_none());
}

#[test]
fn bad_device_names_are_refused_naming_the_field() {
    let text = example("nanopi-r4s");
    for (bad, why) in [
        ("PARTLABEL=berth data", "a PARTLABEL= name may hold letters, digits, '.', '_' and '-' only"),
        ("LABEL=berth-data", "must be a path under /dev/ or PARTLABEL=NAME"),
        ("PARTLABEL=berth-system", "is the same device as storage.system"),
    ] {
        let t = text.replacen("\"PARTLABEL=berth-data\"", &format!("\"{bad}\""), 1);
        let e = Board::from_toml(&t).unwrap_err().to_string();
        assert!(e.contains("storage.data.device") && e.contains(why), "{bad}: {e}");
    }
}
