//! Zone-safe choice of devices for a stripe (or for the mirrors of a log).

use crate::layout::MAX_SHARDS_PER_STRIPE;

/// Choose `count` distinct devices, at most `per_zone_max` in any one zone, among those for
/// which `healthy[i]` is true, starting the scan at `rotate` so load spreads over devices.
/// Returns `None` when no zone-safe choice exists among the healthy devices.
pub fn choose(zones: &[u16], healthy: &[bool], count: usize, per_zone_max: usize, rotate: usize) -> Option<Vec<u16>> {
    debug_assert_eq!(zones.len(), healthy.len());
    let n = zones.len();
    if n == 0 || count > n || count > MAX_SHARDS_PER_STRIPE {
        return None;
    }
    let mut per_zone = [0usize; 256];
    let mut out = Vec::with_capacity(count);
    for j in 0..n {
        let i = (rotate + j) % n;
        let z = zones[i] as usize % 256;
        if healthy[i] && per_zone[z] < per_zone_max {
            per_zone[z] += 1;
            out.push(i as u16);
            if out.len() == count {
                break;
            }
        }
    }
    (out.len() == count).then_some(out)
}

/// Check the invariant on a placement read back from disk or about to be written.
pub fn is_zone_safe(zones: &[u16], devices: &[u16], per_zone_max: usize) -> bool {
    let mut per_zone = [0usize; 256];
    let mut seen = std::collections::HashSet::new();
    for &d in devices {
        let Some(&z) = zones.get(d as usize) else { return false };
        per_zone[z as usize % 256] += 1;
        if per_zone[z as usize % 256] > per_zone_max || !seen.insert(d) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rotation_is_zone_safe() {
        let zones = [0, 0, 1, 1, 2, 2, 2];
        let healthy = [true; 7];
        for r in 0..20 {
            let c = choose(&zones, &healthy, 6, 2, r).unwrap();
            assert!(is_zone_safe(&zones, &c, 2), "{c:?}");
        }
    }

    #[test]
    fn refuses_when_a_zone_is_gone_and_no_room_is_left() {
        let zones = [0, 0, 1, 1, 2, 2];
        let healthy = [true, true, true, true, false, false];
        assert!(choose(&zones, &healthy, 6, 2, 0).is_none());
        assert!(choose(&zones, &healthy, 3, 2, 1).is_some());
    }
}
