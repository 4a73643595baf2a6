//! The two system slots (A and B) and the bootloader's try-boot state that
//! picks between them, as RAUC documents it for GRUB and U-Boot: a boot
//! order and, per slot, the attempts left. The boot script (GRUB's
//! `grub.cfg`, U-Boot's boot script) boots the first slot in the order with
//! attempts left, decrementing its counter before it boots; berth sets the
//! state for a try, a commit or a fall-back. This module owns that state,
//! its variables and what each step does to them, as pure functions. It must
//! not read or write a bootloader environment itself (the [`grubenv`] and
//! [`ubootenv`] formats are pure too; the caller does the I/O).
//!
//! Variables (the same names in both bootloaders' environments):
//! `ORDER` (`"A B"` or `"B A"`), `A_LEFT` and `B_LEFT` (attempts left,
//! `0..=`[`ATTEMPTS`]). A missing counter reads as [`ATTEMPTS`], a missing
//! order as `"A B"`: a fresh environment boots A.
//!
//! The steps:
//! - **try** the other slot once: it goes first with 1 attempt. The boot
//!   script spends the attempt, so whatever stops that boot (a kernel
//!   panic, a berth that never reaches its loop, a watchdog reset, a failed
//!   trial's reboot) brings the next boot back to the old slot.
//! - **commit** the running slot: it goes first, both counters are full.
//! - **fall back** to the running slot after a failed try: it goes first
//!   and the other slot is left with none.
//! - **mark good** on every boot of a committed slot once berth's loop
//!   runs: the same as a commit, so the counter the script spent on this
//!   boot is refilled (without it, three boots would exhaust a healthy slot).
//!
//! At boot, the booted slot (`berth.slot=` on the kernel command line)
//! and the try recorded before the switch (on the data partition) tell
//! [`at_boot`] whether this boot is a try, a fall-back or a normal boot.

mod crc32;
pub mod grubenv;
pub mod ubootenv;

/// Attempts a committed slot has; a try gets one.
pub const ATTEMPTS: u8 = 3;
/// Most variables an environment may hold (others are kept as they are).
pub const VARS_MAX: usize = 256;
/// The kernel command line parameter the boot script sets.
pub const CMDLINE_KEY: &str = "berth.slot=";

/// One of the two system slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
    fn parse(s: &str) -> Option<Slot> {
        match s {
            "A" => Some(Slot::A),
            "B" => Some(Slot::B),
            _ => None,
        }
    }
    fn left_var(self) -> &'static str {
        match self {
            Slot::A => "A_LEFT",
            Slot::B => "B_LEFT",
        }
    }
}

/// What is wrong with an environment or a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvError {
    /// A GRUB block without its signature line.
    Signature,
    /// A U-Boot block whose CRC does not match its data.
    Checksum,
    Malformed(&'static str),
    /// More than [`VARS_MAX`] variables, or a name that is empty or holds `=`.
    BadVariable,
    /// The rendered block needs `need` bytes; it has `size`.
    TooLarge {
        need: usize,
        size: usize,
    },
    /// `ORDER`, `A_LEFT` or `B_LEFT` holds something else than the steps write.
    BadValue(&'static str),
}

impl std::fmt::Display for EnvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvError::Signature => write!(f, "not a GRUB environment block (no signature line)"),
            EnvError::Checksum => write!(f, "the environment's CRC does not match its data"),
            EnvError::Malformed(what) => write!(f, "malformed environment: {what}"),
            EnvError::BadVariable => write!(f, "more than {VARS_MAX} variables, or a bad variable name"),
            EnvError::TooLarge { need, size } => write!(f, "the environment needs {need} bytes, its block has {size}"),
            EnvError::BadValue(var) => write!(f, "{var} holds a value the boot script does not understand"),
        }
    }
}

/// An environment's variables, in their order (later sets replace).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars(Vec<(String, String)>);

impl Vars {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), EnvError> {
        if name.is_empty() || name.contains(['=', '\n', '\0']) {
            return Err(EnvError::BadVariable);
        }
        if let Some(slot) = self.0.iter_mut().find(|(n, _)| n == name) {
            slot.1 = value.to_string();
        } else if self.0.len() < VARS_MAX {
            self.0.push((name.to_string(), value.to_string()));
        } else {
            return Err(EnvError::BadVariable);
        }
        Ok(())
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// The boot order and the attempts left of each slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootState {
    pub first: Slot,
    /// Attempts left of A and of B.
    pub left: [u8; 2],
}

fn index(s: Slot) -> usize {
    match s {
        Slot::A => 0,
        Slot::B => 1,
    }
}

impl BootState {
    /// The state `vars` hold.
    pub fn read(vars: &Vars) -> Result<BootState, EnvError> {
        let first = match vars.get("ORDER") {
            None | Some("A B") => Slot::A,
            Some("B A") => Slot::B,
            Some(_) => return Err(EnvError::BadValue("ORDER")),
        };
        let left = |s: Slot| match vars.get(s.left_var()) {
            None => Ok(ATTEMPTS),
            Some(v) => v.parse::<u8>().ok().filter(|n| *n <= ATTEMPTS).ok_or(EnvError::BadValue(s.left_var())),
        };
        Ok(BootState { first, left: [left(Slot::A)?, left(Slot::B)?] })
    }

    /// `vars` with this state written in (other variables kept).
    pub fn write(&self, vars: &mut Vars) -> Result<(), EnvError> {
        vars.set("ORDER", if self.first == Slot::A { "A B" } else { "B A" })?;
        vars.set("A_LEFT", &self.left[0].to_string())?;
        vars.set("B_LEFT", &self.left[1].to_string())
    }

    pub fn left(&self, s: Slot) -> u8 {
        self.left[index(s)]
    }

    /// What the boot script does: the first slot in the order with
    /// attempts left, its counter one lower. With none left it refills
    /// both and boots the first (a device must boot something).
    pub fn script_pick(&self) -> (Slot, BootState) {
        let mut next = *self;
        let pick = [self.first, self.first.other()].into_iter().find(|s| self.left(*s) > 0).unwrap_or_else(|| {
            next.left = [ATTEMPTS; 2];
            self.first
        });
        next.left[index(pick)] -= 1;
        (pick, next)
    }

    /// Try `target` once on the next boot.
    pub fn try_once(&self, target: Slot) -> BootState {
        let mut next = *self;
        next.first = target;
        next.left[index(target)] = 1;
        next.left[index(target.other())] = ATTEMPTS;
        next
    }

    /// Make the running slot primary.
    pub fn commit(running: Slot) -> BootState {
        BootState { first: running, left: [ATTEMPTS; 2] }
    }

    /// Stay on the running slot after the other one's try failed.
    pub fn fall_back(running: Slot) -> BootState {
        let mut next = BootState { first: running, left: [ATTEMPTS; 2] };
        next.left[index(running.other())] = 0;
        next
    }
}

/// The slot named on a kernel command line, if any.
pub fn slot_from_cmdline(cmdline: &str) -> Result<Option<Slot>, String> {
    let mut found = None;
    for word in cmdline.split_ascii_whitespace() {
        if let Some(v) = word.strip_prefix(CMDLINE_KEY) {
            let s = Slot::parse(v).ok_or_else(|| format!("{CMDLINE_KEY}{v}: want A or B"))?;
            if found.is_some_and(|f| f != s) {
                return Err(format!("{CMDLINE_KEY} given twice with different slots"));
            }
            found = Some(s);
        }
    }
    Ok(found)
}

/// Why a try came back to the old slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallBackCause {
    /// The tried slot's berth never recorded that it reached its loop: its
    /// kernel panicked or hung, or berth failed before its loop.
    NeverStarted,
    /// The tried slot's berth reached its loop, then the machine was reset
    /// (a watchdog reset, a power cut, a failed trial's reboot) before the
    /// release was committed.
    ResetDuringTrial,
}

impl FallBackCause {
    pub fn name(self) -> &'static str {
        match self {
            FallBackCause::NeverStarted => "system-never-started",
            FallBackCause::ResetDuringTrial => "reset-during-system-trial",
        }
    }
}

/// A try recorded on the data partition before the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingTry {
    pub from: Slot,
    pub to: Slot,
    /// The tried slot's berth reached its loop.
    pub reached: bool,
}

/// What this boot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Booted {
    /// No try pending: the slot booted is the committed one.
    Normal(Slot),
    /// The tried slot is up: its release's trial decides.
    Trying(Slot),
    /// The tried slot is up and the bootloader already has it primary: its
    /// trial's commit reached the bootloader, then the device was reset
    /// before the data partition recorded it. The commit is completed.
    TryCommitted(Slot),
    /// The try failed; the old slot is up again.
    FellBack { from: Slot, to: Slot, cause: FallBackCause },
}

/// Whether `state`, as the boot script left it on this boot of `slot`,
/// has `slot` made primary by a commit: a try leaves the tried slot with
/// no attempt once the script spent its one, a commit leaves it first
/// with attempts to spare.
pub fn committed(state: &BootState, slot: Slot) -> bool {
    state.first == slot && state.left(slot) > 0
}

/// A try of `booted` ([`at_boot`]'s `Trying`) whose commit already
/// reached the bootloader (`state`, after the script) is `TryCommitted`.
pub fn settle_try(booted: Booted, state: &BootState) -> Booted {
    match booted {
        Booted::Trying(s) if committed(state, s) => Booted::TryCommitted(s),
        other => other,
    }
}

/// What this boot is, from the slot booted and the pending try. A failed
/// trial on the tried slot records its own cause before it falls back;
/// the cause here is for the boots that could record nothing.
pub fn at_boot(booted: Slot, pending: Option<PendingTry>) -> Booted {
    match pending {
        None => Booted::Normal(booted),
        // The tried slot again: its first boot, or (reached) a boot after
        // berth made it primary in the bootloader but before the data
        // partition's record was cleared; the release's trial records decide.
        Some(p) if p.to == booted => Booted::Trying(booted),
        Some(p) => Booted::FellBack { from: p.to, to: booted, cause: if p.reached { FallBackCause::ResetDuringTrial } else { FallBackCause::NeverStarted } },
    }
}

#[cfg(test)]
mod tests;
