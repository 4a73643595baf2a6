use super::*;
use crate::release::manifest as mf;
use crate::release::manifest::tests::examples;
use ed25519_dalek::SigningKey;
use serde::Serialize;

const BOARD: &str = "qemu-aarch64-virt";

/// Unoptimised test code keeps many manifests (9 KiB each) in its frames;
/// run the tests on a generous stack.
fn big_stack(f: fn()) {
    std::thread::Builder::new().stack_size(256 << 20).spawn(f).unwrap().join().unwrap();
}

fn key(n: u8) -> SigningKey {
    signing_key_from_seed(&[n; 32])
}

fn trusted() -> TrustedKeys {
    let mut k = TrustedKeys::new();
    k.add(key(1).verifying_key()).unwrap();
    k.add(key(2).verifying_key()).unwrap();
    k
}

fn image(digest: Digest, n: u8) -> Image {
    Image { sha256: digest, size: 4096 * (n as u64 + 1), verity_root: [n; 32], verity_salt: [n ^ 0x5a; 32] }
}

/// The example manifests as a release.
fn release_of(manifests: std::vec::Vec<Manifest>, version: u64) -> Release {
    let mut images: BoundedVec<Image, CONTAINERS_MAX> = BoundedVec::new();
    for (n, m) in manifests.iter().enumerate() {
        if !images.iter().any(|i| i.sha256 == m.image) {
            images.push(image(m.image, n as u8)).unwrap();
        }
    }
    Release {
        version,
        board: BOARD.try_into().unwrap(),
        downgrade: None,
        containers: manifests.try_into().unwrap(),
        images,
        commit_window_s: COMMIT_WINDOW_S,
        reboot: false,
        trial_deadline_s: trial_deadline_default(COMMIT_WINDOW_S),
        system: None,
    }
}

fn sample() -> Release {
    release_of(examples(), 5)
}

/// A small one-container release for the exhaustive tests.
pub(crate) fn small() -> Release {
    let mut m = examples().remove(1);
    m.after.clear();
    m.network = None;
    m.version = "1".try_into().unwrap();
    m.name = "c".try_into().unwrap();
    m.entry.argv.clear();
    m.entry.argv.push("/c".try_into().unwrap()).unwrap();
    let mut r = release_of(vec![m], 3);
    r.board = "b".try_into().unwrap();
    r
}

#[test]
fn round_trip_toml_to_signed_to_decoded() {
    big_stack(round_trip_toml_to_signed_to_decoded_body)
}

fn round_trip_toml_to_signed_to_decoded_body() {
    let r = sample();
    let bytes = sign(&r, &key(1)).unwrap();
    let v = decode_release(&bytes, &trusted(), BOARD, Some(5)).unwrap();
    assert_eq!(v.release, r);
    assert_eq!(v.key_id, key_id(&key(1).verifying_key()));
    assert_eq!(bytes.get(..4), Some(&MAGIC[..]));
    // Decoded through the second trusted key too.
    let bytes = sign(&r, &key(2)).unwrap();
    assert_eq!(decode_release(&bytes, &trusted(), BOARD, None).unwrap().release, r);
}

#[test]
fn every_single_bit_flip_is_rejected() {
    big_stack(every_single_bit_flip_is_rejected_body)
}

fn every_single_bit_flip_is_rejected_body() {
    let bytes = sign(&small(), &key(1)).unwrap();
    decode_release(&bytes, &trusted(), "b", None).unwrap();
    // Two halves in parallel: unoptimised signature checks are slow.
    let bits = bytes.len() * 8;
    let halves: std::vec::Vec<_> = [0..bits / 2, bits / 2..bits]
        .into_iter()
        .map(|range| {
            let bytes = bytes.clone();
            std::thread::Builder::new()
                .stack_size(256 << 20)
                .spawn(move || {
                    let keys = trusted();
                    let mut flipped = bytes.clone();
                    for bit in range {
                        let (i, m) = (bit / 8, 1u8 << (bit % 8));
                        flipped[i] ^= m;
                        assert!(decode_release(&flipped, &keys, "b", None).is_err(), "bit {bit} flipped still decodes");
                        flipped[i] ^= m;
                    }
                })
                .unwrap()
        })
        .collect();
    for h in halves {
        h.join().unwrap();
    }
    eprintln!("{bits} bit flips rejected");
}

#[test]
fn truncation_at_every_length_is_rejected() {
    big_stack(truncation_at_every_length_is_rejected_body)
}

fn truncation_at_every_length_is_rejected_body() {
    let bytes = sign(&small(), &key(1)).unwrap();
    let keys = trusted();
    for n in 0..bytes.len() {
        let e = decode_release(&bytes[..n], &keys, "b", None).unwrap_err();
        assert!(matches!(e, ReleaseError::Truncated { .. } | ReleaseError::BadMagic), "{n}: {e}");
        if n >= HEADER_LEN {
            assert!(matches!(e, ReleaseError::Truncated { .. }), "{n}: {e}");
        }
    }
}

fn variant(e: &ReleaseError) -> core::mem::Discriminant<ReleaseError> {
    core::mem::discriminant(e)
}

#[test]
fn each_rejection_has_its_own_variant_and_text() {
    big_stack(each_rejection_has_its_own_variant_and_text_body)
}

fn each_rejection_has_its_own_variant_and_text_body() {
    let keys = trusted();
    let r = sample();
    let good = sign(&r, &key(1)).unwrap();
    let mut errors = std::vec::Vec::new();

    let mut too_large = good.clone();
    too_large.resize(OBJECT_MAX + 1, 0);
    errors.push(decode_release(&too_large, &keys, BOARD, None).unwrap_err());

    errors.push(decode_release(&good[..good.len() - 1], &keys, BOARD, None).unwrap_err());

    let mut magic = good.clone();
    magic[0] = b'X';
    errors.push(decode_release(&magic, &keys, BOARD, None).unwrap_err());

    let mut format = good.clone();
    format[4] = 2;
    errors.push(decode_release(&format, &keys, BOARD, None).unwrap_err());

    let mut trailing = good.clone();
    trailing.push(0);
    errors.push(decode_release(&trailing, &keys, BOARD, None).unwrap_err());

    // Signed by a key the device does not have: its id is unknown.
    let stranger = sign(&r, &key(9)).unwrap();
    let e = decode_release(&stranger, &keys, BOARD, None).unwrap_err();
    assert_eq!(e, ReleaseError::UnknownKey { id: key_id(&key(9).verifying_key()) });
    errors.push(e);

    // Signed by an untrusted key that names a trusted key's id.
    let payload = r.encode_payload().unwrap();
    let mut forged = sign_payload(&payload, &key(9)).unwrap();
    forged[5..13].copy_from_slice(&key_id(&key(1).verifying_key()).0);
    let body = forged.len() - SIG_LEN;
    let sig = ed25519_dalek::Signer::sign(&key(9), &forged[..body]).to_bytes();
    forged[body..].copy_from_slice(&sig);
    let e = decode_release(&forged, &keys, BOARD, None).unwrap_err();
    assert!(matches!(e, ReleaseError::BadSignature { .. }), "{e}");
    errors.push(e);

    // Signed garbage.
    errors.push(decode_release(&sign_payload(&[0xff; 3], &key(1)).unwrap(), &keys, BOARD, None).unwrap_err());
    let mut extra = payload.clone();
    extra.push(0);
    errors.push(decode_release(&sign_payload(&extra, &key(1)).unwrap(), &keys, BOARD, None).unwrap_err());

    // Signed but invalid: a manifest error, and a release-level one.
    let mut bad = r.clone();
    bad.containers[0].entry.argv[0] = "sensord".try_into().unwrap();
    let e = decode_release(&sign_payload(&bad.encode_payload().unwrap(), &key(1)).unwrap(), &keys, BOARD, None).unwrap_err();
    assert_eq!(e.to_string(), "invalid release: manifest sensor: field entry.argv[0]: must be an absolute path");
    errors.push(e);
    let mut bad = r.clone();
    bad.images[0].size = 0;
    errors.push(decode_release(&sign_payload(&bad.encode_payload().unwrap(), &key(1)).unwrap(), &keys, BOARD, None).unwrap_err());

    let e = decode_release(&good, &keys, "other-board", None).unwrap_err();
    assert_eq!(e.to_string(), "release is for board qemu-aarch64-virt, this device is other-board");
    errors.push(e);

    let e = decode_release(&good, &keys, BOARD, Some(6)).unwrap_err();
    assert_eq!(e, ReleaseError::Rollback { release: 5, stored: 6 });
    errors.push(e);

    let mut kinds: std::vec::Vec<_> = errors.iter().map(variant).collect();
    let n = kinds.len();
    kinds.dedup();
    assert_eq!(kinds.len(), n, "two checks share a variant: {errors:#?}");
    let texts: std::collections::BTreeSet<_> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(texts.len(), n);
    for e in &errors {
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn anti_rollback_and_the_downgrade_marker() {
    big_stack(anti_rollback_and_the_downgrade_marker_body)
}

fn anti_rollback_and_the_downgrade_marker_body() {
    let mut r = sample();
    assert!(check_version(&r, None).is_ok());
    assert!(check_version(&r, Some(4)).is_ok());
    assert!(check_version(&r, Some(5)).is_ok(), "the running release is met again at boot");
    assert_eq!(check_version(&r, Some(9)), Err(ReleaseError::Rollback { release: 5, stored: 9 }));

    r.downgrade = Some(Downgrade { floor: 9 });
    let bytes = sign(&r, &key(1)).unwrap();
    assert_eq!(decode_release(&bytes, &trusted(), BOARD, Some(9)).unwrap().release, r);
    // One floor, not a range: any other floor is still a rollback.
    for stored in [6, 7, 8, 10, u64::MAX] {
        let e = decode_release(&bytes, &trusted(), BOARD, Some(stored)).unwrap_err();
        assert_eq!(e, ReleaseError::Rollback { release: 5, stored });
    }
    // A marker that does not point above the release is invalid.
    for floor in [0, 4, 5] {
        r.downgrade = Some(Downgrade { floor });
        assert!(matches!(sign(&r, &key(1)), Err(ReleaseError::BadField { field, .. }) if field == "downgrade.floor"));
    }
}

#[test]
fn the_trial_deadline_lies_above_the_window_and_below_its_maximum() {
    let mut r = sample();
    assert_eq!(r.trial_deadline_s, COMMIT_WINDOW_S + TRIAL_START_ALLOWANCE_S);
    assert_eq!(trial_deadline_default(86_400), 87_000);
    assert_eq!(trial_deadline_default(u32::MAX), TRIAL_DEADLINE_MAX_S);
    for (window, deadline, ok) in [(120, 121, true), (120, 120, false), (120, 0, false), (5, TRIAL_DEADLINE_MAX_S, true), (5, TRIAL_DEADLINE_MAX_S + 1, false)]
    {
        r.commit_window_s = window;
        r.trial_deadline_s = deadline;
        match r.validate() {
            Ok(()) => assert!(ok, "{window} {deadline}"),
            Err(ReleaseError::BadField { field, .. }) => assert!(!ok && field == "trial_deadline_s", "{window} {deadline} {field}"),
            Err(e) => panic!("{e}"),
        }
    }
    // Signed and decoded, it comes back as it was.
    r.trial_deadline_s = 77;
    let bytes = sign(&r, &key(1)).unwrap();
    assert_eq!(decode_release(&bytes, &trusted(), BOARD, None).unwrap().release.trial_deadline_s, 77);
}

#[test]
fn state_file_drives_anti_rollback() {
    big_stack(state_file_drives_anti_rollback_body)
}

fn state_file_drives_anti_rollback_body() {
    let dir = std::env::temp_dir().join(format!("berth-rollback-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let keys = trusted();
    let v5 = sign(&sample(), &key(1)).unwrap();
    let v6 = sign(&release_of(examples(), 6), &key(1)).unwrap();
    let accept = |bytes: &[u8]| -> Result<(), ReleaseError> {
        let v = decode_release(bytes, &keys, BOARD, state::load_highest(&dir).unwrap())?;
        state::store_highest(&dir, v.release.version).unwrap();
        Ok(())
    };
    accept(&v5).unwrap();
    accept(&v6).unwrap();
    assert!(matches!(accept(&v5), Err(ReleaseError::Rollback { release: 5, stored: 6 })));
    accept(&v6).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- limits ----------------------------------------------------------------

/// Wide mirrors of the wire types: the same postcard encoding, without the
/// capacities, so over-limit payloads can be built and signed.
#[derive(Serialize, Clone)]
struct WRelease {
    version: u64,
    board: std::string::String,
    downgrade: Option<Downgrade>,
    containers: std::vec::Vec<WManifest>,
    images: std::vec::Vec<Image>,
    commit_window_s: u32,
    reboot: bool,
    trial_deadline_s: u32,
    system: Option<crate::release::system::System>,
}

#[derive(Serialize, Clone)]
struct WManifest {
    name: std::string::String,
    version: std::string::String,
    image: Digest,
    entry: WEntry,
    restart: Option<mf::Restart>,
    after: std::vec::Vec<std::string::String>,
    readiness: Option<mf::Readiness>,
    health: Option<mf::Health>,
    stop: Option<mf::Stop>,
    resources: Option<mf::Resources>,
    mounts: std::vec::Vec<mf::Mount>,
    capabilities: std::vec::Vec<std::string::String>,
    seccomp_allow: std::vec::Vec<std::string::String>,
    devices: std::vec::Vec<mf::DeviceGrant>,
    network: Option<mf::Network>,
    rlimits: Option<mf::Rlimits>,
    backoff: Option<mf::BackoffSpec>,
    exec_paths: std::vec::Vec<std::string::String>,
    rw_paths: std::vec::Vec<std::string::String>,
    status_view: bool,
    log_rate: Option<mf::LogRate>,
    socket_families: std::vec::Vec<std::string::String>,
    oneshot: bool,
    update_drop: Option<std::string::String>,
}

#[derive(Serialize, Clone)]
struct WEntry {
    argv: std::vec::Vec<std::string::String>,
    env: std::vec::Vec<std::string::String>,
    workdir: std::string::String,
    uid: Option<u32>,
    gid: Option<u32>,
}

fn s<const N: usize>(v: &heapless::String<N>) -> std::string::String {
    v.as_str().to_owned()
}

fn wide(r: &Release) -> WRelease {
    WRelease {
        version: r.version,
        board: s(&r.board),
        downgrade: r.downgrade,
        commit_window_s: r.commit_window_s,
        reboot: r.reboot,
        trial_deadline_s: r.trial_deadline_s,
        system: r.system,
        images: r.images.to_vec(),
        containers: r
            .containers
            .iter()
            .map(|m| WManifest {
                name: s(&m.name),
                version: s(&m.version),
                image: m.image,
                entry: WEntry {
                    argv: m.entry.argv.iter().map(s).collect(),
                    env: m.entry.env.iter().map(s).collect(),
                    workdir: s(&m.entry.workdir),
                    uid: m.entry.uid,
                    gid: m.entry.gid,
                },
                restart: m.restart,
                after: m.after.iter().map(s).collect(),
                readiness: m.readiness.clone(),
                health: m.health.clone(),
                stop: m.stop,
                resources: m.resources,
                mounts: m.mounts.to_vec(),
                capabilities: m.capabilities.iter().map(s).collect(),
                seccomp_allow: m.seccomp_allow.iter().map(s).collect(),
                devices: m.devices.to_vec(),
                network: m.network,
                rlimits: m.rlimits,
                backoff: m.backoff,
                exec_paths: m.exec_paths.iter().map(s).collect(),
                rw_paths: m.rw_paths.iter().map(s).collect(),
                status_view: m.status_view,
                log_rate: m.log_rate,
                socket_families: m.socket_families.iter().map(s).collect(),
                oneshot: m.oneshot,
                update_drop: m.update_drop.as_ref().map(s),
            })
            .collect(),
    }
}

fn decode_wide(w: &WRelease) -> Result<Verified, ReleaseError> {
    let payload = postcard::to_allocvec(w).unwrap();
    let bytes = sign_payload(&payload, &key(1)).unwrap();
    decode_release(&bytes, &trusted(), &w.board, None)
}

fn digest(n: u32) -> Digest {
    let mut d = [0u8; 32];
    d[..4].copy_from_slice(&n.to_le_bytes());
    d[31] = 1;
    Digest(d)
}

/// One minimal valid container.
fn base_container(name: &str, n: u32) -> WManifest {
    let mut w = wide(&small()).containers.remove(0);
    w.name = name.into();
    w.image = digest(n);
    w
}

fn base() -> WRelease {
    let mut w = wide(&small());
    w.board = "b".into();
    w
}

fn with_images(mut w: WRelease) -> WRelease {
    w.images = w.containers.iter().enumerate().map(|(n, c)| image(c.image, n as u8)).collect();
    w.images.dedup_by_key(|i| i.sha256);
    w
}

fn is_capacity_error(e: &ReleaseError) -> bool {
    matches!(e, ReleaseError::Decode { .. })
}

/// `at` must pass the decoder (and `ok` says whether it must fully pass);
/// `past` must be refused by the decoder itself.
type Check = fn(&Result<Verified, ReleaseError>) -> bool;

fn limit(what: &str, at: WRelease, past: WRelease, ok: Check) {
    let r = decode_wide(&at);
    assert!(ok(&r), "{what}: at the limit: {r:?}");
    let e = decode_wide(&past).unwrap_err();
    assert!(is_capacity_error(&e), "{what}: past the limit: {e}");
}

fn decodes(r: &Result<Verified, ReleaseError>) -> bool {
    r.is_ok()
}

#[test]
fn limits_at_decode_and_past_are_refused_by_the_decoder() {
    big_stack(limits_at_decode_and_past_are_refused_by_the_decoder_body)
}

fn limits_at_decode_and_past_are_refused_by_the_decoder_body() {
    // Containers per release (each with its own image: images at the limit too).
    let mk = |n: usize| {
        let mut w = base();
        w.containers = (0..n).map(|i| base_container(&format!("c{i}"), i as u32)).collect();
        with_images(w)
    };
    limit("containers", mk(CONTAINERS_MAX), mk(CONTAINERS_MAX + 1), decodes);

    // Per-entry and per-manifest lists and strings.
    type Edit = fn(&mut WManifest, usize);
    let cases: &[(&str, usize, Edit, Check)] = &[
        ("argv", mf::ARGS_MAX, |m, n| m.entry.argv.resize(n, "x".into()), decodes),
        ("argv[0] length", mf::ARG_MAX, |m, n| m.entry.argv[0] = format!("/{}", "a".repeat(n - 1)), decodes),
        ("env", mf::ENV_MAX, |m, n| m.entry.env = (0..n).map(|i| format!("K{i}=v")).collect(), decodes),
        ("env length", mf::ARG_MAX, |m, n| m.entry.env = vec![format!("K={}", "v".repeat(n - 2))], decodes),
        ("workdir length", mf::PATH_MAX, |m, n| m.entry.workdir = format!("/{}", "w".repeat(n - 1)), decodes),
        ("name length", mf::NAME_MAX, |m, n| m.name = "n".repeat(n), decodes),
        ("version length", mf::VERSION_MAX, |m, n| m.version = "1".repeat(n), decodes),
        (
            "mounts",
            mf::MOUNTS_MAX,
            |m, n| {
                m.mounts = (0..n)
                    .map(|i| mf::Mount {
                        target: format!("/m{i}").as_str().try_into().unwrap(),
                        tmpfs_size: Some(4096),
                        volume: None,
                        exec: false,
                        volume_size: None,
                        volume_inodes: None,
                    })
                    .collect()
            },
            decodes,
        ),
        (
            "capabilities",
            mf::CAPS_MAX,
            |m, n| {
                m.capabilities = ["CAP_CHOWN", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_FOWNER", "CAP_LEASE", "CAP_MKNOD", "CAP_SYS_NICE", "CAP_WAKE_ALARM"]
                    .iter()
                    .take(n)
                    .map(|c| c.to_string())
                    .collect()
            },
            decodes,
        ),
        ("seccomp_allow", mf::SYSCALLS_MAX, |m, n| m.seccomp_allow = (0..n).map(|i| format!("s{i}")).collect(), decodes),
        ("syscall length", mf::SYSCALL_NAME_MAX, |m, n| m.seccomp_allow = vec!["s".repeat(n)], decodes),
        (
            "devices",
            mf::DEVICES_MAX,
            |m, n| {
                m.devices = (0..n).map(|i| mf::DeviceGrant { node: format!("d{i}").as_str().try_into().unwrap(), access: "rwm".try_into().unwrap() }).collect()
            },
            decodes,
        ),
    ];
    for (what, max, edit, ok) in cases {
        let mk = |n: usize| {
            let mut w = base();
            edit(&mut w.containers[0], n);
            w
        };
        limit(what, mk(*max), mk(max + 1), *ok);
    }

    // Dependencies: one container after AFTER_MAX others.
    let mk = |n: usize| {
        let mut w = base();
        w.containers = (0..=n).map(|i| base_container(&format!("c{i}"), i as u32)).collect();
        w.containers[0].after = (1..=n).map(|i| format!("c{i}")).collect();
        with_images(w)
    };
    limit("after", mk(mf::AFTER_MAX), mk(mf::AFTER_MAX + 1), decodes);

    // The board name.
    let mk = |n: usize| {
        let mut w = base();
        w.board = "b".repeat(n);
        w
    };
    limit("board length", mk(crate::release::board::NAME_MAX), mk(crate::release::board::NAME_MAX + 1), decodes);

    // The object size: a payload that fills OBJECT_MAX exactly is opened, one
    // byte more is refused before anything else.
    let fill = vec![0u8; OBJECT_MAX - HEADER_LEN - SIG_LEN];
    let bytes = sign_payload(&fill, &key(1)).unwrap();
    assert_eq!(bytes.len(), OBJECT_MAX);
    assert!(open(&bytes, &trusted()).is_ok());
    let mut over = bytes.clone();
    over.push(0);
    assert_eq!(open(&over, &trusted()), Err(ReleaseError::TooLarge { len: OBJECT_MAX + 1 }));
    assert!(sign_payload(&[0; OBJECT_MAX], &key(1)).is_err());
}

#[test]
fn largest_release_fits_the_object_limit() {
    big_stack(largest_release_fits_the_object_limit_body)
}

fn largest_release_fits_the_object_limit_body() {
    // OBJECT_MAX, not the sum of the per-field limits, bounds a release: a
    // full release of busy containers still fits and decodes.
    let mut w = base();
    w.containers = (0..CONTAINERS_MAX).map(|i| base_container(&format!("c{i}"), i as u32)).collect();
    for c in &mut w.containers {
        c.entry.argv = (0..mf::ARGS_MAX).map(|i| format!("/{}{i:02}", "a".repeat(40))).collect();
    }
    let w = with_images(w);
    let payload = postcard::to_allocvec(&w).unwrap();
    assert!(payload.len() < OBJECT_MAX, "{}", payload.len());
    decode_wide(&w).unwrap();
}

// ---- robustness --------------------------------------------------------------

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> std::vec::Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn random_payloads_never_panic() {
    big_stack(random_payloads_never_panic_body)
}

fn random_payloads_never_panic_body() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let keys = trusted();
    let good = sample().encode_payload().unwrap();
    // Signed random payloads through the whole path.
    for _ in 0..300 {
        let n = (rng.next() % 300) as usize;
        let payload = rng.bytes(n);
        let bytes = sign_payload(&payload, &key(1)).unwrap();
        assert!(decode_release(&bytes, &keys, BOARD, None).is_err());
    }
    // Many more straight into the payload decoder: random bytes, and a valid
    // payload with random bytes changed, cut or extended.
    for round in 0..5_000 {
        let payload = match round % 3 {
            0 => {
                let n = (rng.next() % 600) as usize;
                rng.bytes(n)
            }
            1 => {
                let mut p = good.clone();
                for _ in 0..1 + rng.next() % 4 {
                    let i = (rng.next() as usize) % p.len();
                    p[i] = rng.next() as u8;
                }
                p
            }
            _ => {
                let mut p = good.clone();
                p.truncate((rng.next() as usize) % p.len());
                let extra = (rng.next() % 8) as usize;
                p.extend(rng.bytes(extra));
                p
            }
        };
        let _ = decode_payload(&payload);
    }
}

/// The committed fuzz seeds (`fuzz/corpus/`) are exactly what the current
/// encoder and key make: a format change that leaves stale seeds fails here.
/// `BERTH_WRITE_CORPUS=1 cargo test -p berth --lib fuzz_corpus` rewrites
/// them instead.
#[test]
fn fuzz_corpus_is_current() {
    big_stack(fuzz_corpus_body)
}

fn fuzz_corpus_body() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let seeds = fuzz_seeds();
    if std::env::var_os("BERTH_WRITE_CORPUS").is_some() {
        for (rel, bytes) in &seeds {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
        }
        return;
    }
    let stale: Vec<String> = seeds
        .iter()
        .filter_map(|(rel, bytes)| match std::fs::read(root.join(rel)) {
            Ok(on_disk) if on_disk == *bytes => None,
            Ok(on_disk) => Some(format!("{rel}: {} bytes committed, {} made now", on_disk.len(), bytes.len())),
            Err(e) => Some(format!("{rel}: {e}")),
        })
        .collect();
    assert!(
        stale.is_empty(),
        "fuzz seeds in supervisor/fuzz/corpus are stale (rewrite them with \
         BERTH_WRITE_CORPUS=1 cargo test -p berth --lib fuzz_corpus):\n{}",
        stale.join("\n")
    );
}

/// Each seed's path under `fuzz/corpus/` and its bytes.
fn fuzz_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let fuzz_key = fuzz_signing_key();
    let mut downgrade = sample();
    downgrade.downgrade = Some(Downgrade { floor: 6 });
    let mut no_deps = small();
    no_deps.board = BOARD.try_into().unwrap();
    let releases = [("sample", sample()), ("small", no_deps), ("downgrade", downgrade)];
    for (name, r) in &releases {
        out.push((format!("decode_release/valid-{name}"), sign(r, &fuzz_key).unwrap()));
        out.push((format!("decode_payload/valid-{name}"), r.encode_payload().unwrap()));
    }
    let mut rng = XorShift(42);
    let good = sign(&sample(), &fuzz_key).unwrap();
    let mut bad_sig = good.clone();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 1;
    let garbage = [
        ("empty", vec![]),
        ("random", rng.bytes(200)),
        ("magic-only", MAGIC.to_vec()),
        ("bad-signature", bad_sig),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("signed-random", sign_payload(&rng.bytes(64), &fuzz_key).unwrap()),
    ];
    for (name, bytes) in garbage {
        out.push((format!("decode_release/garbage-{name}"), bytes));
    }
    out.push(("decode_payload/garbage-random".into(), rng.bytes(100)));
    out
}

/// The fuzz targets' key: seed bytes 0x42 (see `fuzz/fuzz_targets`).
fn fuzz_signing_key() -> SigningKey {
    signing_key_from_seed(&[0x42; 32])
}
