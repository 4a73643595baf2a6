//! Record slots of format 1, read so that a device updated from a build
//! before downgrade admissions keeps its record (and its floor): the same
//! fields without [`Record::admitted`] and [`Record::spent`], which start
//! empty. Nothing writes format 1.
//!
//! It only decodes: it must not gain an encoder.

use super::{Entry, Phase, Record, Rollback, HISTORY_MAX};
use serde::Deserialize;

/// The format 1 record, field for field (postcard is positional).
#[derive(Deserialize)]
struct RecordV1 {
    current: Option<Entry>,
    previous: Option<Entry>,
    phase: Phase,
    boots: u32,
    highest: Option<u64>,
    history: heapless::Vec<Rollback, HISTORY_MAX>,
}

/// Decode a format 1 payload; `None` unless it is exactly one record.
pub(super) fn decode(payload: &[u8]) -> Option<Record> {
    match postcard::take_from_bytes::<RecordV1>(payload) {
        Ok((r, [])) => Some(Record {
            current: r.current,
            previous: r.previous,
            phase: r.phase,
            boots: r.boots,
            highest: r.highest,
            history: r.history,
            admitted: None,
            spent: None,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decode_slot, encode_slot, FORMAT_V1, HEADER_LEN, SUM_LEN};
    use super::*;
    use crate::release::manifest::Digest;
    use serde::Serialize;
    use sha2::{Digest as _, Sha256};

    #[derive(Serialize)]
    struct Old<'a>(&'a Option<Entry>, &'a Option<Entry>, &'a Phase, u32, Option<u64>, &'a heapless::Vec<Rollback, HISTORY_MAX>);

    #[test]
    fn a_format_1_slot_is_read_with_its_floor() {
        let e = |n: u8| Entry { digest: Digest([n; 32]), version: n.into() };
        let mut rec = Record::installed(e(1)).begin_trial(e(2), false).unwrap().commit().unwrap();
        rec.boots = 3;
        let payload = postcard::to_allocvec(&Old(&rec.current, &rec.previous, &rec.phase, rec.boots, rec.highest, &rec.history)).unwrap();
        let mut slot = encode_slot(&Record::default(), 5).unwrap().get(..HEADER_LEN).unwrap().to_vec();
        slot[4] = FORMAT_V1;
        slot[13..15].copy_from_slice(&(payload.len() as u16).to_le_bytes());
        slot.extend_from_slice(&payload);
        let sum = Sha256::digest(&slot);
        slot.extend_from_slice(&sum[..SUM_LEN]);
        assert_eq!(decode_slot(&slot), Ok((5, rec)));
    }
}
