//! The model the crash tests check a reopened engine against: a child process reports every
//! write before it starts (`BEGIN`) and once it is acknowledged (`ACK`); after a SIGKILL each
//! key must hold its last acknowledged content or the one in flight, bit-exact.

use super::{block_on, data, md5_hex};
use engine::{Engine, Error, ListItem, ListQuery, RequestError};
use std::collections::{BTreeMap, HashSet};

/// What a key may hold: (content seed, size) or absent.
pub type Content = Option<(u64, usize)>;

#[derive(Default)]
pub struct KeyModel {
    /// The last acknowledged state.
    pub acked: Content,
    /// An operation begun but not acknowledged when the child died: it may or may not have
    /// taken effect.
    pub in_flight: Option<Content>,
    /// Every content ever attempted for this key (to judge listed objects).
    pub ever: HashSet<(u64, usize)>,
}

pub type Model = BTreeMap<String, KeyModel>;

/// Applies the child's complete report lines (`BEGIN|ACK PUT key seed size`, `BEGIN|ACK DEL
/// key`; anything else is ignored); returns how many operations were acknowledged.
pub fn apply_lines<'a>(model: &mut Model, lines: impl IntoIterator<Item = &'a str>) -> usize {
    let mut acks = 0;
    for line in lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |s: &str| s.parse::<u64>().unwrap_or_else(|_| panic!("bad child line {line:?}"));
        match f.as_slice() {
            ["BEGIN", "PUT", key, s, n] => {
                let c = (num(s), num(n) as usize);
                let m = model.entry(key.to_string()).or_default();
                m.ever.insert(c);
                m.in_flight = Some(Some(c));
            }
            ["BEGIN", "DEL", key] => model.entry(key.to_string()).or_default().in_flight = Some(None),
            ["ACK", "PUT", key, s, n] => {
                let m = model.entry(key.to_string()).or_default();
                m.acked = Some((num(s), num(n) as usize));
                m.in_flight = None;
                acks += 1;
            }
            ["ACK", "DEL", key] => {
                let m = model.entry(key.to_string()).or_default();
                m.acked = None;
                m.in_flight = None;
                acks += 1;
            }
            _ => {}
        }
    }
    acks
}

/// Every key holds its last acknowledged content or what was in flight, bit-exact; every listed
/// object exists in the model with the listed size and ETag of the bytes it holds. Afterwards
/// the model holds what was found (an in-flight write that survived is now the state).
pub fn verify(e: &Engine, bucket: &str, model: &mut Model, ctx: &str) {
    for (key, m) in model.iter_mut() {
        let found: Content = match block_on(e.get_bytes(bucket, key, None)) {
            Ok((info, bytes)) => {
                let hit = m.ever.iter().find(|(s, n)| *n == bytes.len() && data(*s, *n).as_ref() == bytes.as_slice());
                let Some(&c) = hit else {
                    panic!("{ctx}: {key} reads back {} bytes matching no content ever written", bytes.len());
                };
                assert_eq!(info.size, c.1 as u64, "{ctx}: {key} size");
                Some(c)
            }
            Err(Error::Request(RequestError::NoSuchKey { .. })) => None,
            Err(err) => panic!("{ctx}: reading {key} failed: {err}"),
        };
        let allowed = found == m.acked || m.in_flight.is_some_and(|f| f == found);
        assert!(allowed, "{ctx}: {key} holds {found:?}; last acknowledged {:?}, in flight {:?}", m.acked, m.in_flight);
        m.acked = found;
        m.in_flight = None;
    }
    let page = block_on(e.list_objects(bucket, ListQuery { max_keys: 10_000, ..Default::default() })).unwrap();
    let mut listed = Vec::new();
    for it in page.items {
        let ListItem::Object(o) = it else { panic!("{ctx}: unexpected common prefix") };
        let m = model.get(&o.key).unwrap_or_else(|| panic!("{ctx}: listed key {} was never written", o.key));
        let (s, n) = m.acked.unwrap_or_else(|| panic!("{ctx}: listed key {} should be absent", o.key));
        assert_eq!(o.size, n as u64, "{ctx}: listed size of {}", o.key);
        assert_eq!(o.etag, format!("\"{}\"", md5_hex(&data(s, n))), "{ctx}: ETag of {}", o.key);
        listed.push(o.key);
    }
    let present: Vec<String> = model.iter().filter(|(_, m)| m.acked.is_some()).map(|(k, _)| k.clone()).collect();
    assert_eq!(listed, present, "{ctx}: listing differs from the objects that read back");
}
