//! The S3 request-body XML parsers: CompleteMultipartUpload, DeleteObjects, CreateBucket.
//! Checks: no panic, and what is accepted respects the documented limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s3::router::MAX_PART_NUMBER;
use s3::xml::{parse_complete_multipart_upload, parse_create_bucket_configuration, parse_delete, MAX_DELETE_KEYS};

fuzz_target!(|data: &[u8]| {
    if let Ok(parts) = parse_complete_multipart_upload(data) {
        assert!(!parts.is_empty());
        assert!(parts.windows(2).all(|w| w[0].part_number < w[1].part_number), "parts out of order");
        assert!(parts.iter().all(|p| (1..=MAX_PART_NUMBER).contains(&p.part_number)));
    }
    if let Ok(d) = parse_delete(data) {
        assert!((1..=MAX_DELETE_KEYS).contains(&d.objects.len()), "{} keys accepted", d.objects.len());
        assert!(d.objects.iter().all(|o| !o.key.is_empty()));
    }
    if let Ok(Some(region)) = parse_create_bucket_configuration(data) {
        assert!(!region.is_empty());
    }
});
