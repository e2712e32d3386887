//! `tessera-names` (imported as `names`): S3's rules for bucket names and object keys, in one
//! place. The S3 protocol crate (`s3`) applies them when it routes a request, so a client gets
//! S3's error before anything runs; the engine applies them again before it creates a bucket or
//! writes a key, so no caller (the benchmarks, a future replication path) can store a name S3
//! would refuse.
//!
//! A crate of its own, with no dependencies, because both sides need it and neither should
//! depend on the other: the protocol crate stays free of the engine's runtime, and the engine
//! does not build HTTP, XML and signature crates it never uses.
//!
//! The rules are AWS's for general purpose buckets
//! (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html>), plus one
//! the engine kept from the older DNS-label rules: a period may not sit next to a hyphen.

use std::fmt;

/// S3's limit on key length, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;
/// S3's highest part number of a multipart upload (parts are numbered from 1).
pub const MAX_PART_NUMBER: u32 = 10_000;
/// The shortest bucket name, in bytes (every allowed character is one byte).
pub const BUCKET_NAME_BYTES_MIN: usize = 3;
/// The longest bucket name, in bytes.
pub const BUCKET_NAME_BYTES_MAX: usize = 63;

/// Prefixes S3 reserves: punycode (`xn--`), and names AWS keeps for itself.
pub const RESERVED_BUCKET_PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
/// Suffixes S3 reserves: access point aliases (`-s3alias`), Object Lambda access point aliases
/// (`--ol-s3`), Multi-Region Access Point aliases (`.mrap`) and directory buckets (`--x-s3`).
pub const RESERVED_BUCKET_SUFFIXES: [&str; 4] = ["-s3alias", "--ol-s3", ".mrap", "--x-s3"];

/// What is wrong with a bucket name: the first rule it breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketNameError {
    /// Not 3 to 63 characters long.
    Length {
        len_bytes: usize,
    },
    /// A character other than a lowercase letter, a digit, `.` or `-`.
    Character(char),
    /// Does not start and end with a lowercase letter or a digit.
    Edge,
    /// Two periods in a row.
    AdjacentPeriods,
    /// A period next to a hyphen (`.-` or `-.`).
    PeriodNextToHyphen,
    /// Shaped like an IPv4 address (four dot-separated numbers of 0-255).
    IpAddress,
    ReservedPrefix(&'static str),
    ReservedSuffix(&'static str),
}

impl fmt::Display for BucketNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BucketNameError::Length { len_bytes } => write!(
                f,
                "a bucket name is {BUCKET_NAME_BYTES_MIN} to {BUCKET_NAME_BYTES_MAX} characters long, not {len_bytes}"
            ),
            BucketNameError::Character(c) => {
                write!(f, "a bucket name holds only lowercase letters, digits, '.' and '-', not {c:?}")
            }
            BucketNameError::Edge => write!(f, "a bucket name starts and ends with a lowercase letter or a digit"),
            BucketNameError::AdjacentPeriods => write!(f, "a bucket name has no two periods in a row"),
            BucketNameError::PeriodNextToHyphen => write!(f, "a bucket name has no period next to a hyphen"),
            BucketNameError::IpAddress => write!(f, "a bucket name is not shaped like an IP address"),
            BucketNameError::ReservedPrefix(p) => write!(f, "bucket names starting with {p:?} are reserved"),
            BucketNameError::ReservedSuffix(s) => write!(f, "bucket names ending with {s:?} are reserved"),
        }
    }
}

impl std::error::Error for BucketNameError {}

/// Check a bucket name against S3's rules; the error is the first rule it breaks.
pub fn check_bucket_name(name: &str) -> Result<(), BucketNameError> {
    let b = name.as_bytes();
    if !(BUCKET_NAME_BYTES_MIN..=BUCKET_NAME_BYTES_MAX).contains(&b.len()) {
        return Err(BucketNameError::Length { len_bytes: b.len() });
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-')) {
        return Err(BucketNameError::Character(c));
    }
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    // Length is at least 3 here, so first and last exist.
    if !edge(b[0]) || !edge(b[b.len() - 1]) {
        return Err(BucketNameError::Edge);
    }
    if name.contains("..") {
        return Err(BucketNameError::AdjacentPeriods);
    }
    if name.contains(".-") || name.contains("-.") {
        return Err(BucketNameError::PeriodNextToHyphen);
    }
    // Any four dot-separated numbers of 0-255, leading zeros included ("192.168.01.1"), as
    // clients that resolve the name would read it as an address.
    if name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return Err(BucketNameError::IpAddress);
    }
    if let Some(p) = RESERVED_BUCKET_PREFIXES.iter().find(|p| name.starts_with(*p)) {
        return Err(BucketNameError::ReservedPrefix(p));
    }
    if let Some(s) = RESERVED_BUCKET_SUFFIXES.iter().find(|s| name.ends_with(*s)) {
        return Err(BucketNameError::ReservedSuffix(s));
    }
    Ok(())
}

/// Whether a bucket name follows S3's rules (see [`check_bucket_name`] for which it breaks).
pub fn valid_bucket_name(name: &str) -> bool {
    check_bucket_name(name).is_ok()
}

/// A key longer than [`MAX_KEY_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTooLong {
    pub len_bytes: usize,
}

impl fmt::Display for KeyTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a key is at most {MAX_KEY_BYTES} bytes of UTF-8, not {}", self.len_bytes)
    }
}

impl std::error::Error for KeyTooLong {}

/// Check an object key's length against S3's limit.
pub fn check_key(key: &str) -> Result<(), KeyTooLong> {
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyTooLong { len_bytes: key.len() });
    }
    Ok(())
}

/// A key character that XML 1.0 cannot carry: a C0 control (U+0000 to U+001F; a parser also
/// turns CR into LF), U+FFFE or U+FFFF. A key holding one could be stored but never come back
/// intact in a ListObjects or DeleteObjects answer, so it is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCharacter(pub char);

impl fmt::Display for KeyCharacter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "object keys may not contain U+{:04X}: XML listings cannot carry it", self.0 as u32)
    }
}

impl std::error::Error for KeyCharacter {}

/// Check an object key's characters (see [`KeyCharacter`]).
pub fn check_key_characters(key: &str) -> Result<(), KeyCharacter> {
    match key.chars().find(|c| (*c as u32) < 0x20 || matches!(c, '\u{FFFE}' | '\u{FFFF}')) {
        Some(c) => Err(KeyCharacter(c)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_following_every_rule_are_valid() {
        for ok in ["abc", "a1b", "my-bucket.1", "my.bucket.data", "1-2-3", "a".repeat(63).as_str(), "xn-abc", "s3alias"]
        {
            assert_eq!(check_bucket_name(ok), Ok(()), "{ok}");
            assert!(valid_bucket_name(ok), "{ok}");
        }
        // Not four numbers, or numbers above 255: not an address.
        for ok in ["1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.a"] {
            assert_eq!(check_bucket_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn each_rule_is_named_by_the_error() {
        use BucketNameError as E;
        let cases: &[(&str, E)] = &[
            ("ab", E::Length { len_bytes: 2 }),
            ("", E::Length { len_bytes: 0 }),
            (&"a".repeat(64), E::Length { len_bytes: 64 }),
            ("ABC", E::Character('A')),
            ("a_b", E::Character('_')),
            ("caf\u{e9}", E::Character('\u{e9}')),
            ("-abc", E::Edge),
            ("abc-", E::Edge),
            (".abc", E::Edge),
            ("abc.", E::Edge),
            ("a..b", E::AdjacentPeriods),
            ("a.-b", E::PeriodNextToHyphen),
            ("a-.b", E::PeriodNextToHyphen),
            ("192.168.1.1", E::IpAddress),
            ("192.168.01.1", E::IpAddress),
            ("xn--bcher-kva", E::ReservedPrefix("xn--")),
            ("sthree-bucket", E::ReservedPrefix("sthree-")),
            ("amzn-s3-demo-bucket", E::ReservedPrefix("amzn-s3-demo-")),
            ("data-s3alias", E::ReservedSuffix("-s3alias")),
            ("data--ol-s3", E::ReservedSuffix("--ol-s3")),
            ("data.mrap", E::ReservedSuffix(".mrap")),
            ("data--x-s3", E::ReservedSuffix("--x-s3")),
        ];
        for (name, want) in cases {
            assert_eq!(check_bucket_name(name), Err(*want), "{name:?}");
            assert!(!valid_bucket_name(name), "{name:?}");
        }
    }

    #[test]
    fn errors_say_which_rule() {
        assert_eq!(
            BucketNameError::ReservedPrefix("xn--").to_string(),
            "bucket names starting with \"xn--\" are reserved"
        );
        assert_eq!(
            BucketNameError::Length { len_bytes: 2 }.to_string(),
            "a bucket name is 3 to 63 characters long, not 2"
        );
        assert_eq!(KeyTooLong { len_bytes: 1025 }.to_string(), "a key is at most 1024 bytes of UTF-8, not 1025");
    }

    #[test]
    fn keys_with_characters_xml_cannot_carry_are_refused() {
        for bad in ["a\u{0}b", "\u{1}", "line\nbreak", "cr\r", "tab\t", "x\u{FFFF}", "\u{FFFE}"] {
            assert!(check_key_characters(bad).is_err(), "{bad:?}");
        }
        for good in ["plain", "del\u{7F}", "c1\u{85}", "\u{1F600}", ""] {
            assert_eq!(check_key_characters(good), Ok(()), "{good:?}");
        }
        assert_eq!(
            KeyCharacter('\u{1}').to_string(),
            "object keys may not contain U+0001: XML listings cannot carry it"
        );
    }

    #[test]
    fn keys_up_to_1024_bytes_are_accepted() {
        assert_eq!(check_key(""), Ok(()));
        assert_eq!(check_key(&"k".repeat(MAX_KEY_BYTES)), Ok(()));
        assert_eq!(check_key(&"k".repeat(MAX_KEY_BYTES + 1)), Err(KeyTooLong { len_bytes: 1025 }));
        // Bytes, not characters: 512 two-byte characters fit, 513 do not.
        assert_eq!(check_key(&"\u{e9}".repeat(512)), Ok(()));
        assert_eq!(check_key(&"\u{e9}".repeat(513)), Err(KeyTooLong { len_bytes: 1026 }));
    }
}
