//! The part plan of a multipart upload: part size, count and the last part's size, fixed when
//! the upload starts and sealed in its token, so every part URL signs an exact length and
//! `complete` can check what the store holds against it.
//!
//! The formula is Uppy's (`@uppy/aws-s3` 6): the profile's part size, raised so the file fits in
//! 10,000 parts; a client that cuts parts the same way needs no extra setting.

use serde::{Deserialize, Serialize};

use crate::profile::{MAX_PART_BYTES, MAX_PARTS, MIN_PART_BYTES};

/// How one multipart upload is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartPlan {
    /// The size of every part but the last.
    pub part_size: u64,
    pub part_count: u32,
    pub last_part_size: u64,
}

/// One part as the store lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPart {
    pub part_number: u32,
    pub size: u64,
    /// Some stores (s3s-fs) list parts without their ETag.
    pub etag: Option<String>,
}

impl PartPlan {
    /// The plan for `size` bytes with parts of `preferred` bytes (5 MiB to 5 GiB), raised to
    /// `ceil(size / 10,000)` when that is larger. `None` for an empty file (S3 refuses an empty
    /// part; use a single PUT) or one above 10,000 parts of 5 GiB.
    pub fn new(size: u64, preferred: u64) -> Option<PartPlan> {
        if size == 0 {
            return None;
        }
        let part_size = preferred
            .clamp(MIN_PART_BYTES, MAX_PART_BYTES)
            .max(size.div_ceil(MAX_PARTS));
        if part_size > MAX_PART_BYTES {
            return None;
        }
        let part_count = size.div_ceil(part_size);
        Some(PartPlan {
            part_size,
            part_count: u32::try_from(part_count).ok()?,
            last_part_size: size - (part_count - 1) * part_size,
        })
    }

    /// The exact size of part `number` (1-based); `None` outside the plan.
    pub fn size_of(&self, number: u32) -> Option<u64> {
        match number {
            0 => None,
            n if n < self.part_count => Some(self.part_size),
            n if n == self.part_count => Some(self.last_part_size),
            _ => None,
        }
    }

    /// The whole file.
    pub fn total(&self) -> u64 {
        u64::from(self.part_count - 1) * self.part_size + self.last_part_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn plans_cut_as_uppy_does() {
        // (size, preferred) → (part size, count, last)
        let cases = [
            (1, 5 * MIB, (5 * MIB, 1, 1)),
            (5 * MIB, 5 * MIB, (5 * MIB, 1, 5 * MIB)),
            (5 * MIB + 1, 5 * MIB, (5 * MIB, 2, 1)),
            (11 * MIB, 5 * MIB, (5 * MIB, 3, MIB)),
            (1024 * MIB, 8 * MIB, (8 * MIB, 128, 8 * MIB)),
            // 100 GiB in 5 MiB parts would be 20,480 parts: raised to ceil(size / 10,000).
            (
                100 * 1024 * MIB,
                5 * MIB,
                (10_737_419, 10_000, 100 * 1024 * MIB - 9_999 * 10_737_419),
            ),
        ];
        for (size, preferred, (part_size, count, last)) in cases {
            let plan = PartPlan::new(size, preferred).unwrap();
            assert_eq!(
                (plan.part_size, plan.part_count, plan.last_part_size),
                (part_size, count, last),
                "{size}"
            );
            assert_eq!(plan.total(), size);
            assert!(plan.part_count as u64 <= MAX_PARTS);
            assert_eq!(plan.size_of(0), None);
            assert_eq!(plan.size_of(count + 1), None);
            assert_eq!(plan.size_of(count), Some(last));
        }
        assert_eq!(PartPlan::new(0, 5 * MIB), None);
        assert_eq!(
            PartPlan::new(5 * 1024 * 1024 * MIB, 5 * MIB).unwrap().part_count,
            10_000
        );
        assert_eq!(PartPlan::new(MAX_PARTS * MAX_PART_BYTES + 1, 5 * MIB), None);
    }
}
