//! Small HTTP helpers: Range, dates (RFC 7231 and ISO 8601), ETags and conditional lists.

use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{S3Error, S3ErrorCode};

// ---------------------------------------------------------------------------------------
// Range

/// One `bytes=` range as the client wrote it, before the object's size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` (`last` inclusive) or `bytes=a-` (`last` = None).
    From { first: u64, last: Option<u64> },
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

/// Parses a `Range` header. Like S3, a header that is not a well-formed single byte range
/// (another unit, bad syntax, several ranges) is ignored: `None`, and the whole object is
/// served. S3 does not serve multipart/byteranges; neither do we.
pub fn parse_range(header: &str) -> Option<ByteRange> {
    let spec = header.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return Some(ByteRange::Suffix(parse_digits(last)?));
    }
    let first = parse_digits(first)?;
    if last.is_empty() {
        return Some(ByteRange::From { first, last: None });
    }
    let last = parse_digits(last)?;
    if last < first {
        return None;
    }
    Some(ByteRange::From { first, last: Some(last) })
}

fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl ByteRange {
    /// The half-open byte range to serve from an object of `size` bytes, or InvalidRange.
    pub fn resolve(self, size: u64) -> Result<Range<u64>, S3Error> {
        let unsatisfiable = || S3Error::new(S3ErrorCode::InvalidRange).detail("ActualObjectSize", size.to_string());
        match self {
            ByteRange::From { first, last } => {
                if first >= size {
                    return Err(unsatisfiable());
                }
                let end = match last {
                    Some(last) => last.saturating_add(1).min(size),
                    None => size,
                };
                Ok(first..end)
            }
            ByteRange::Suffix(n) => {
                if n == 0 || size == 0 {
                    return Err(unsatisfiable());
                }
                Ok(size.saturating_sub(n)..size)
            }
        }
    }
}

/// The `Content-Range` value for a served range of an object of `size` bytes.
pub fn content_range(range: &Range<u64>, size: u64) -> String {
    format!("bytes {}-{}/{}", range.start, range.end.saturating_sub(1), size)
}

// ---------------------------------------------------------------------------------------
// Dates

/// RFC 7231 IMF-fixdate, e.g. `Fri, 24 May 2013 00:00:00 GMT` (Last-Modified, Date).
pub fn format_http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

/// Parses any of the three HTTP date forms (If-Modified-Since and friends).
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s.trim()).ok()
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    millis: u32,
}

fn to_civil(t: SystemTime) -> Civil {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
        millis: since.subsec_millis(),
    }
}

/// Append ISO 8601 with milliseconds as S3 XML uses, `2013-05-24T00:00:00.000Z`, written in
/// place (a listing has one per object): no formatting machinery, no allocation.
pub fn push_iso8601(out: &mut String, t: SystemTime) {
    let c = to_civil(t);
    push_digits(out, c.year.clamp(0, 9999) as u64, 4);
    for (sep, v, width) in [
        ('-', u64::from(c.month), 2),
        ('-', u64::from(c.day), 2),
        ('T', c.hour, 2),
        (':', c.minute, 2),
        (':', c.second, 2),
        ('.', u64::from(c.millis), 3),
    ] {
        out.push(sep);
        push_digits(out, v, width);
    }
    out.push('Z');
}

/// Append `n` as exactly `width` decimal digits (zero-padded; `n` must fit).
fn push_digits(out: &mut String, n: u64, width: u32) {
    debug_assert!(n < 10u64.pow(width), "{n} has more than {width} digits");
    for i in (0..width).rev() {
        out.push(char::from(b'0' + ((n / 10u64.pow(i)) % 10) as u8));
    }
}

/// `push_iso8601` with `format!`: the reference its tests compare against.
#[cfg(test)]
pub fn format_iso8601(t: SystemTime) -> String {
    let c = to_civil(t);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis)
}

/// SigV4 basic format: `20130524T000000Z`.
pub fn format_amz_date(t: SystemTime) -> String {
    let c = to_civil(t);
    format!("{:04}{:02}{:02}T{:02}{:02}{:02}Z", c.year, c.month, c.day, c.hour, c.minute, c.second)
}

fn fixed_digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn from_civil(year: u32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Option<SystemTime> {
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    // Reject 31 February and friends: the date must round-trip.
    if civil_from_days(days) != (i64::from(year), month, day) {
        return None;
    }
    let secs = days as u64 * 86_400 + u64::from(hour) * 3600 + u64::from(minute) * 60;
    Some(UNIX_EPOCH + Duration::from_secs(secs + u64::from(second)))
}

/// Parses the SigV4 `X-Amz-Date` form `YYYYMMDDTHHMMSSZ`.
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    from_civil(
        fixed_digits(s.get(0..4)?)?,
        fixed_digits(s.get(4..6)?)?,
        fixed_digits(s.get(6..8)?)?,
        fixed_digits(s.get(9..11)?)?,
        fixed_digits(s.get(11..13)?)?,
        fixed_digits(s.get(13..15)?)?,
    )
}

/// Parses ISO 8601 `YYYY-MM-DDTHH:MM:SS[.fff]Z` (UTC only).
pub fn parse_iso8601(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (main, frac) = match s.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (s, None),
    };
    let b = main.as_bytes();
    if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let base = from_civil(
        fixed_digits(main.get(0..4)?)?,
        fixed_digits(main.get(5..7)?)?,
        fixed_digits(main.get(8..10)?)?,
        fixed_digits(main.get(11..13)?)?,
        fixed_digits(main.get(14..16)?)?,
        fixed_digits(main.get(17..19)?)?,
    )?;
    let nanos = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 => {
            let digits = fixed_digits(f)?;
            digits * 10u32.pow(9 - f.len() as u32)
        }
        Some(_) => return None,
    };
    Some(base + Duration::from_nanos(u64::from(nanos)))
}

// ---------------------------------------------------------------------------------------
// ETags and conditionals

/// Wraps an ETag in double quotes unless it already is.
pub fn quote_etag(etag: &str) -> std::borrow::Cow<'_, str> {
    if etag.len() >= 2 && etag.starts_with('"') && etag.ends_with('"') {
        std::borrow::Cow::Borrowed(etag)
    } else {
        std::borrow::Cow::Owned(format!("\"{etag}\""))
    }
}

/// The ETag without quotes and without a weak `W/` prefix.
pub fn unquote_etag(etag: &str) -> &str {
    let e = etag.trim();
    let e = e.strip_prefix("W/").unwrap_or(e);
    e.strip_prefix('"').and_then(|e| e.strip_suffix('"')).unwrap_or(e)
}

/// An `If-Match` / `If-None-Match` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtagCondition {
    /// `*`
    Any,
    /// The listed ETags, unquoted.
    Tags(Vec<String>),
}

impl EtagCondition {
    /// Parses a comma-separated list of (possibly weak, possibly unquoted) ETags, or `*`.
    pub fn parse(header: &str) -> EtagCondition {
        let mut tags = Vec::new();
        for part in header.split(',') {
            let part = part.trim();
            if part == "*" {
                return EtagCondition::Any;
            }
            if !part.is_empty() {
                tags.push(unquote_etag(part).to_string());
            }
        }
        EtagCondition::Tags(tags)
    }

    /// Whether an object with this ETag (quoted or not) matches the condition.
    pub fn matches(&self, etag: &str) -> bool {
        match self {
            EtagCondition::Any => true,
            EtagCondition::Tags(tags) => {
                let etag = unquote_etag(etag);
                tags.iter().any(|t| t == etag)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_forms_resolve_against_the_object_size() {
        let r = |h: &str| parse_range(h).map(|r| r.resolve(100));
        assert_eq!(r("bytes=0-9"), Some(Ok(0..10)));
        assert_eq!(r("bytes=90-200"), Some(Ok(90..100)));
        assert_eq!(r("bytes=10-"), Some(Ok(10..100)));
        assert_eq!(r("bytes=-10"), Some(Ok(90..100)));
        assert_eq!(r("bytes=-1000"), Some(Ok(0..100)));
        assert_eq!(r("bytes=99-99"), Some(Ok(99..100)));
    }

    #[test]
    fn unsatisfiable_ranges_are_invalid_range() {
        for h in ["bytes=100-", "bytes=100-200", "bytes=-0"] {
            let e = parse_range(h).map(|r| r.resolve(100));
            assert!(matches!(e, Some(Err(ref e)) if e.code == S3ErrorCode::InvalidRange), "{h}");
        }
        let e = parse_range("bytes=0-").map(|r| r.resolve(0));
        assert!(matches!(e, Some(Err(_))));
    }

    #[test]
    fn malformed_or_multiple_ranges_are_ignored() {
        for h in ["bytes=0-1,3-4", "items=0-1", "bytes=a-b", "bytes=5-1", "bytes=-", "bytes=1"] {
            assert_eq!(parse_range(h), None, "{h}");
        }
    }

    #[test]
    fn content_range_is_inclusive() {
        assert_eq!(content_range(&(0..10), 100), "bytes 0-9/100");
    }

    #[test]
    fn dates_round_trip() {
        let t = UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        assert_eq!(format_http_date(t), "Fri, 24 May 2013 00:00:00 GMT");
        assert_eq!(parse_http_date("Fri, 24 May 2013 00:00:00 GMT"), Some(t));
        assert_eq!(format_amz_date(t), "20130524T000000Z");
        assert_eq!(parse_amz_date("20130524T000000Z"), Some(t));
        assert_eq!(format_iso8601(t), "2013-05-24T00:00:00.000Z");
        assert_eq!(parse_iso8601("2013-05-24T00:00:00.000Z"), Some(t));
        assert_eq!(parse_iso8601("2013-05-24T00:00:00Z"), Some(t));
        let leap = UNIX_EPOCH + Duration::from_millis(951_782_400_123);
        assert_eq!(format_iso8601(leap), "2000-02-29T00:00:00.123Z");
        assert_eq!(parse_iso8601("2000-02-29T00:00:00.123Z"), Some(leap));
    }

    #[test]
    fn bad_dates_are_rejected() {
        for s in ["2013052T000000Z", "20130231T000000Z", "20131324T000000Z", "2013052aT000000Z"] {
            assert_eq!(parse_amz_date(s), None, "{s}");
        }
        assert_eq!(parse_iso8601("2013-05-24 00:00:00Z"), None);
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn etags_quote_and_match_lists() {
        assert_eq!(quote_etag("abc"), "\"abc\"");
        assert_eq!(quote_etag("\"abc\""), "\"abc\"");
        assert_eq!(unquote_etag("W/\"abc\""), "abc");
        let c = EtagCondition::parse("\"a\", W/\"b\" ,c");
        assert!(c.matches("\"b\""));
        assert!(c.matches("c"));
        assert!(!c.matches("d"));
        assert!(EtagCondition::parse("*").matches("anything"));
    }
}
