//! The device program in the interpreter against the plain decision, the v1
//! lines and read-back, the limits plans, and (as root, with
//! `BERTH_ROOT_TESTS=1`) the real thing on this host's cgroups.

use super::ebpf::{self, Insn};
use super::interp::{validate, DevCtx};
use super::limits::*;
use super::*;
use crate::confine::container::devices::{self, ACC_MKNOD, ACC_READ, ACC_WRITE};
use crate::release::manifest::Resources;

mod root;

fn grant(node: &str, access: &str) -> crate::release::manifest::DeviceGrant {
    crate::release::manifest::DeviceGrant { node: node.try_into().unwrap(), access: access.try_into().unwrap() }
}

/// A board with a serial port, a gpio chip, an rng, a watchdog and a disk.
fn board() -> crate::release::board::Board {
    use crate::release::board::{HardwareNode, NodeKind};
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../board-configs/qemu-aarch64-virt.toml")).unwrap();
    let mut b = crate::release::board::Board::from_toml(&text).unwrap();
    b.hardware.clear();
    for (name, kind, major, minor, path, reserved) in [
        ("serial1", NodeKind::Char, 4, 65, "/dev/ttyAMA1", false),
        ("gpio0", NodeKind::Char, 254, 0, "/dev/gpiochip0", false),
        ("rng0", NodeKind::Char, 10, 183, "/dev/hwrng", false),
        ("watchdog", NodeKind::Char, 10, 130, "/dev/watchdog", true),
        ("disk", NodeKind::Block, 254, 0, "/dev/vda", false),
    ] {
        b.hardware.push(HardwareNode { name: name.try_into().unwrap(), kind, major, minor, path: path.try_into().unwrap(), reserved }).unwrap();
    }
    b
}

fn rules_for(grants: &[crate::release::manifest::DeviceGrant]) -> Vec<DeviceRule> {
    rules(&devices::nodes(grants, &board(), "app").unwrap())
}

const ACCESSES: [u8; 7] = [1, 2, 3, 4, 5, 6, 7];

/// Majors 0..=300 and some large ones; minors 0..=300, the granted ones and
/// some large ones.
fn grid(rules: &[DeviceRule]) -> (Vec<u32>, Vec<u32>) {
    let mut majors: Vec<u32> = (0..=300).collect();
    majors.extend([511, 1023, 4094, MAJOR_MAX, 0x7fff_ffff, 0x8000_0000, u32::MAX]);
    let mut minors: Vec<u32> = (0..=300).collect();
    minors.extend([1023, 65_535, 65_536, MINOR_MAX, 0x7fff_ffff, u32::MAX]);
    for r in rules {
        majors.push(r.major);
        if let Minor::Exact(m) = r.minor {
            minors.extend([m.saturating_sub(1), m, m.saturating_add(1)]);
        }
    }
    majors.sort_unstable();
    majors.dedup();
    minors.sort_unstable();
    minors.dedup();
    (majors, minors)
}

/// Run `p` over the whole grid and compare with [`allows`].
fn exhaustive(rules: &[DeviceRule]) -> usize {
    let p = ebpf::generate(rules).unwrap();
    let checked = validate(&p.insns).unwrap_or_else(|e| panic!("{e}\n{}", p.disassemble()));
    let (majors, minors) = grid(rules);
    let mut allowed = 0;
    for kind in [DevType::Char, DevType::Block] {
        for &major in &majors {
            for &minor in &minors {
                for access in ACCESSES {
                    let ctx = DevCtx { dev_type: kind as u16, access: u16::from(access), major, minor };
                    let got = checked.run(&ctx).expect("the program exits");
                    assert!(got <= 1);
                    let want = allows(rules, kind, major, minor, access);
                    assert_eq!(got == 1, want, "{kind:?} {major}:{minor} access {}", access_letters(access));
                    allowed += usize::from(want);
                }
            }
        }
    }
    allowed
}

#[test]
fn standard_rules_only_by_default() {
    let r = rules_for(&[]);
    let lines = v1::allow_lines(&r);
    assert_eq!(lines, ["c 1:3 rw", "c 1:5 rw", "c 1:7 rw", "c 1:8 rw", "c 1:9 rw", "c 5:0 rw", "c 5:2 rw", "c 136:* rw"]);
    check_rules(&r).unwrap();
}

#[test]
fn program_matches_the_allowlist_everywhere() {
    for grants in [
        vec![],
        vec![grant("serial1", "rw")],
        vec![grant("serial1", "r")],
        vec![grant("serial1", "w"), grant("gpio0", "rwm"), grant("rng0", "m")],
        vec![grant("gpio0", "rm"), grant("rng0", "wm")],
    ] {
        let r = rules_for(&grants);
        let n = exhaustive(&r);
        assert!(n > 0);
    }
}

#[test]
fn read_only_grant_refuses_write_and_block_is_denied() {
    let r = rules_for(&[grant("serial1", "r")]);
    let p = ebpf::generate(&r).unwrap();
    let c = validate(&p.insns).unwrap();
    let ctx = |t: DevType, ma, mi, acc: u8| DevCtx { dev_type: t as u16, access: u16::from(acc), major: ma, minor: mi };
    assert!(c.allows(&ctx(DevType::Char, 4, 65, ACC_READ)));
    assert!(!c.allows(&ctx(DevType::Char, 4, 65, ACC_WRITE)));
    assert!(!c.allows(&ctx(DevType::Char, 4, 65, ACC_READ | ACC_WRITE)));
    assert!(!c.allows(&ctx(DevType::Char, 4, 65, ACC_MKNOD)));
    // Same numbers as a block device: denied.
    assert!(!c.allows(&ctx(DevType::Block, 4, 65, ACC_READ)));
    assert!(!c.allows(&ctx(DevType::Block, 1, 3, ACC_READ)));
    // The forbidden character devices.
    for (ma, mi) in devices::FORBIDDEN {
        for a in ACCESSES {
            assert!(!c.allows(&ctx(DevType::Char, ma, mi, a)), "{ma}:{mi}");
        }
    }
    // Nothing allows mknod of a standard node, pts allows any minor.
    assert!(!c.allows(&ctx(DevType::Char, 1, 3, ACC_MKNOD)));
    assert!(c.allows(&ctx(DevType::Char, 136, 0, ACC_READ | ACC_WRITE)));
    assert!(c.allows(&ctx(DevType::Char, 136, 4711, ACC_WRITE)));
    // Unknown access bits beyond rwm are refused too.
    assert!(!c.allows(&DevCtx { dev_type: 2, access: 0x8 | 2, major: 1, minor: 3 }));
    assert!(!c.allows(&DevCtx { dev_type: 0, access: 2, major: 1, minor: 3 }));
}

#[test]
fn no_wildcard_but_pts() {
    for grants in [vec![], vec![grant("serial1", "rwm"), grant("gpio0", "r")]] {
        let r = rules_for(&grants);
        let wild: Vec<&DeviceRule> = r.iter().filter(|r| r.minor == Minor::Any).collect();
        assert_eq!(wild.len(), 1);
        assert_eq!((wild[0].kind, wild[0].major), (DevType::Char, PTS_MAJOR));
        let p = ebpf::generate(&r).unwrap();
        // Every rule block compares the major: no `*:*` rule in the program.
        let major_checks = p.insns.iter().filter(|i| i.code == ebpf::JNE_K && i.dst == 4).count();
        let type_checks = p.insns.iter().filter(|i| i.code == ebpf::JNE_K && i.dst == 2).count();
        let allow_exits = p.insns.iter().filter(|i| i.code == ebpf::MOV64_K && i.dst == 0 && i.imm == 1).count();
        assert_eq!((major_checks, type_checks, allow_exits), (r.len(), r.len(), r.len()));
        let minor_checks = p.insns.iter().filter(|i| i.code == ebpf::JNE_K && i.dst == 5).count();
        assert_eq!(minor_checks, r.len() - 1);
        // Behaviourally: a device nobody names, of any major, is denied.
        let c = validate(&p.insns).unwrap();
        for major in [0, 2, 3, 7, 135, 137, 4095] {
            assert!(!c.allows(&DevCtx { dev_type: 2, access: 1, major, minor: 0 }));
        }
    }
    let bad = [
        DeviceRule { kind: DevType::Char, major: 1, minor: Minor::Any, access: ACC_MKNOD },
        DeviceRule { kind: DevType::Block, major: 136, minor: Minor::Any, access: ACC_READ },
    ];
    for b in bad {
        let e = ebpf::generate(&[b]).unwrap_err();
        assert!(e.contains("wildcard"), "{e}");
    }
    assert!(ebpf::generate(&[DeviceRule { kind: DevType::Char, major: 1, minor: Minor::Exact(3), access: 0 }]).is_err());
    assert!(ebpf::generate(&[DeviceRule { kind: DevType::Char, major: 4096, minor: Minor::Exact(3), access: 2 }]).is_err());
    assert!(ebpf::generate(&[DeviceRule { kind: DevType::Char, major: 1, minor: Minor::Exact(1 << 20), access: 2 }]).is_err());
}

#[test]
fn program_shape_and_length() {
    let r = rules_for(&[grant("serial1", "rw"), grant("gpio0", "r")]);
    let p = ebpf::generate(&r).unwrap();
    // 6 loads, rw rules: type, 3 access, major, minor, r0, exit = 8; pts: 7; epilogue 2.
    assert_eq!(p.insns.len(), 6 + 9 * 8 + 7 + 2);
    assert_eq!(p.insns.last().map(|i| i.code), Some(ebpf::EXIT));
    assert_eq!(p.insns[p.insns.len() - 2], ebpf::mov64_k(0, 0));
    assert!(p.insns.len() <= ebpf::MAX_INSNS);
    // The most a manifest can ask for stays far below the limit.
    let most = rules_for(&[grant("serial1", "r"), grant("gpio0", "w"), grant("rng0", "m")]);
    assert!(ebpf::generate(&most).unwrap().insns.len() < 200);
    // Too many rules: refused, not truncated.
    let many = vec![DeviceRule { kind: DevType::Char, major: 1, minor: Minor::Exact(3), access: 2 }; 600];
    assert!(ebpf::generate(&many).unwrap_err().contains("longer than"));
    // Wire form round-trips and puts dst in the low nibble.
    for i in &p.insns {
        assert_eq!(Insn::from_le_bytes(i.to_le_bytes()), *i);
    }
    assert_eq!(ebpf::ldx_w(2, 1, 4).to_le_bytes(), [0x61, 0x12, 4, 0, 0, 0, 0, 0]);
    assert_eq!(ebpf::jne_k(4, 136, 3).to_le_bytes(), [0x55, 0x04, 3, 0, 136, 0, 0, 0]);
    assert_eq!(ebpf::and32_k(1, !6).to_le_bytes(), [0x54, 0x01, 0, 0, 0xf9, 0xff, 0xff, 0xff]);
    assert_eq!(p.to_bytes().len(), p.insns.len() * 8);
    let text = p.disassemble();
    assert!(text.contains("if r4 != 0x88 goto"), "{text}");
}

#[test]
fn interpreter_refuses_outside_the_subset() {
    let ok = ebpf::generate(&rules_for(&[])).unwrap().insns;
    validate(&ok).unwrap();
    let with = |f: &dyn Fn(&mut Vec<Insn>)| {
        let mut p = ok.clone();
        f(&mut p);
        validate(&p).map(drop).unwrap_err().reason
    };
    assert!(validate(&[]).unwrap_err().reason.contains("empty"));
    assert!(with(&|p| {
        p.pop();
    })
    .contains("last instruction"));
    assert!(with(&|p| p[6].off = 200).contains("out of the program"));
    assert!(with(&|p| p[6].off = -3).contains("backward"));
    assert!(with(&|p| p[6].code = 0x1d).contains("opcode"));
    assert!(with(&|p| p[0].src = 3).contains("not the context"));
    assert!(with(&|p| p[0].off = 2).contains("offset"));
    assert!(with(&|p| p[0].off = 12).contains("offset"));
    assert!(with(&|p| p[1].dst = 10).contains("frame pointer"));
    assert!(with(&|p| p[1].dst = 11).contains("beyond r10"));
    assert!(with(&|p| p[3].imm = 32).contains("shift"));
    // r0 not set on the deny path.
    assert!(with(&|p| {
        let n = p.len();
        p[n - 2] = ebpf::mov64_k(6, 0);
    })
    .contains("r0"));
    // A return value other than 0 or 1.
    assert!(with(&|p| {
        let n = p.len();
        p[n - 2] = ebpf::mov64_k(0, 2);
    })
    .contains("r0"));
    // Reading a register no path wrote.
    assert!(with(&|p| p[6].dst = 7).contains("unwritten"));
    // An instruction nothing reaches.
    let dead = [ebpf::mov64_k(0, 0), ebpf::exit(), ebpf::mov64_k(0, 1), ebpf::exit()];
    assert_eq!(validate(&dead).unwrap_err().at, 2);
    assert!(validate(&dead).unwrap_err().reason.contains("unreachable"));
    // The context pointer is not a number.
    assert!(with(&|p| p[6].dst = 1).contains("pointer"));
    let long = vec![ebpf::mov64_k(0, 0); ebpf::MAX_INSNS + 1];
    assert!(validate(&long).unwrap_err().reason.contains("longer"));
}

#[test]
fn v1_lines_and_read_back() {
    let r = rules_for(&[grant("serial1", "r"), grant("gpio0", "rwm")]);
    assert_eq!(v1::DENY_ALL, "a");
    let lines = v1::allow_lines(&r);
    assert_eq!(&lines[6..], ["c 4:65 r", "c 254:0 rwm", "c 5:2 rw", "c 136:* rw"]);
    let list = lines.join("\n") + "\n";
    v1::check_list(&r, &list).unwrap();
    // Order does not matter.
    let mut rev = lines.clone();
    rev.reverse();
    v1::check_list(&r, &rev.join("\n")).unwrap();
    let e = v1::check_list(&r, "a *:* rwm\n").unwrap_err();
    assert!(e.contains("allows all"), "{e}");
    let e = v1::check_list(&r, &(list.clone() + "b 8:0 r\n")).unwrap_err();
    assert!(e.contains("b 8:0 r") && e.contains("did not allow"), "{e}");
    let e = v1::check_list(&r, &list.replace("c 4:65 r", "c 4:65 rw")).unwrap_err();
    assert!(e.contains("c 4:65 rw"), "{e}");
    let e = v1::check_list(&r, &list.replace("c 136:* rw\n", "")).unwrap_err();
    assert!(e.contains("lacks `c 136:* rw`"), "{e}");
    assert!(v1::parse_list("c 1:3\n").is_err());
    assert!(v1::parse_list("x 1:3 r\n").is_err());
    assert!(v1::parse_list("c 1-3 r\n").is_err());
    assert!(v1::parse_list("c 1:3 rx\n").is_err());
    let e = v1::parse_list("c *:* m\n").unwrap();
    assert_eq!(e[0], v1::ListEntry { kind: v1::ListType::Char, major: None, minor: None, access: ACC_MKNOD });
}

#[test]
fn limits_plans() {
    let none = Limits::from_resources(None);
    assert_eq!(none.pids_max, DEFAULT_PIDS_MAX);
    let p = plan_v2(&none);
    assert_eq!(p, [Setting { controller: Controller::Pids, file: "pids.max", value: "512".into() }]);
    assert_eq!(controllers(&p), [Controller::Pids]);
    assert_eq!(enable_line(&controllers(&p)), "+pids");

    let r = Resources { memory_max: Some(64 << 20), cpu_weight: Some(200), pids_max: Some(64) };
    let mut l = Limits::from_resources(Some(&r));
    let p = plan_v2(&l);
    let files: Vec<(&str, &str)> = p.iter().map(|s| (s.file, s.value.as_str())).collect();
    assert_eq!(files, [("memory.max", "67108864"), ("memory.oom.group", "1"), ("cpu.weight", "200"), ("pids.max", "64")]);
    assert_eq!(enable_line(&controllers(&p)), "+memory +cpu +pids");

    l.memory_high = Some(48 << 20);
    l.cpu_max = Some(CpuMax { quota_us: 50_000, period_us: CPU_PERIOD_US });
    l.io_weight = Some(100);
    let p = plan_v2(&l);
    assert_eq!(enable_line(&controllers(&p)), "+memory +cpu +io +pids");
    assert!(p.contains(&Setting { controller: Controller::Cpu, file: "cpu.max", value: "50000 100000".into() }));
    assert!(p.contains(&Setting { controller: Controller::Io, file: "io.weight", value: "default 100".into() }));
    assert!(p.contains(&Setting { controller: Controller::Memory, file: "memory.high", value: "50331648".into() }));

    check_available(&p, "cpuset cpu io memory hugetlb pids rdma misc\n").unwrap();
    let e = check_available(&p, "cpuset cpu memory pids\n").unwrap_err();
    assert_eq!(e.controller, "io");
    assert!(e.to_string().contains("io.weight"), "{e}");
    let e = check_available(&plan_v2(&none), "").unwrap_err();
    assert_eq!(e.controller, "pids");

    let v1p = plan_v1(&l);
    let files: Vec<(&str, &str, &str)> = v1p.iter().map(|s| (s.controller.v1_dir(), s.file, s.value.as_str())).collect();
    assert_eq!(
        files,
        [
            ("memory", "memory.limit_in_bytes", "67108864"),
            ("memory", "memory.soft_limit_in_bytes", "50331648"),
            ("cpu", "cpu.shares", &weight_to_shares(200).to_string()),
            ("cpu", "cpu.cfs_period_us", "100000"),
            ("cpu", "cpu.cfs_quota_us", "50000"),
            ("blkio", "blkio.weight", &weight_to_blkio(100).to_string()),
            ("pids", "pids.max", "64"),
        ]
    );
    // Conversions hit the ends of both ranges, and the default weights match.
    assert_eq!((weight_to_shares(1), weight_to_shares(10_000)), (2, 262_144));
    assert_eq!(weight_to_shares(100), 2 + 99 * 262_142 / 9_999);
    assert_eq!((weight_to_blkio(1), weight_to_blkio(10_000)), (10, 1000));
}

#[test]
fn memory_events() {
    let text = "low 0\nhigh 3\nmax 7\noom 2\noom_kill 1\noom_group_kill 1\nsock_throttled 0\n";
    let m = MemoryEvents::parse(text).unwrap();
    assert_eq!(m, MemoryEvents { low: 0, high: 3, max: 7, oom: 2, oom_kill: 1, oom_group_kill: 1 });
    assert!(m.oom_since(&MemoryEvents::default()));
    assert!(!m.oom_since(&m));
    // v1 memory.oom_control.
    let v1 = MemoryEvents::parse("oom_kill_disable 0\nunder_oom 0\noom_kill 4\n").unwrap();
    assert_eq!((v1.oom, v1.oom_kill), (0, 4));
    assert!(MemoryEvents::parse("oom x\n").unwrap_err().contains("oom x"));
    assert!(MemoryEvents::parse("oom\n").is_err());
    assert_eq!(MemoryEvents::parse("").unwrap(), MemoryEvents::default());
}

/// Two rules built by hand (a read-only char 4:65, any pty c 136:*) give
/// this program, written out instruction by instruction from the rule
/// layout: the prologue splits the access word and loads major and minor,
/// each rule is one block that jumps to the next block's start on a
/// mismatch, and the program ends denying.
#[test]
fn disassembly_of_a_hand_built_program() {
    let rules = [
        DeviceRule { kind: DevType::Char, major: 4, minor: Minor::Exact(65), access: ACC_READ },
        DeviceRule { kind: DevType::Char, major: 136, minor: Minor::Any, access: ACC_ALL },
    ];
    let want = "   0: r2 = *(u32 *)(r1 + 0)
   1: w2 &= 0xffff
   2: r3 = *(u32 *)(r1 + 0)
   3: w3 >>= 16
   4: r4 = *(u32 *)(r1 + 4)
   5: r5 = *(u32 *)(r1 + 8)
   6: if r2 != 0x2 goto +7 (-> 14)
   7: w1 = w3
   8: w1 &= 0xfffffffd
   9: if r1 != 0x0 goto +4 (-> 14)
  10: if r4 != 0x4 goto +3 (-> 14)
  11: if r5 != 0x41 goto +2 (-> 14)
  12: r0 = 1
  13: exit
  14: if r2 != 0x2 goto +3 (-> 18)
  15: if r4 != 0x88 goto +2 (-> 18)
  16: r0 = 1
  17: exit
  18: r0 = 0
  19: exit
";
    let p = ebpf::generate(&rules).unwrap();
    assert_eq!(p.disassemble(), want);
}
