//! I/O priority classes: a per-core, share-based admission scheduler.
//!
//! Foreground requests are never delayed. While the foreground is busy, each background class
//! (repair, scrub, compaction) may move at most its share of the bytes: `share` percent of the
//! bytes it and the foreground move together, so the foreground keeps at least
//! `100 - share` percent. When the foreground is idle, background work runs at full speed.
//!
//! The share is kept with credit, not per window: every foreground byte earns each background
//! class `share / (100 - share)` bytes of credit, and a class with no debt may start an
//! operation of any size, which may leave it in debt; it then waits until foreground bytes
//! have paid the debt back. So one large operation (a 64 MiB part re-placed in one go) cannot
//! take more than its share over time, and no class starves: it progresses at its share while
//! the foreground is busy and at full speed once it is idle (debts are forgiven then).
//!
//! The foreground counts as busy while a request is in flight and for `SCHED_IDLE_AFTER_MS`
//! after its last request ended or charged bytes (so the gap between two requests, or a
//! client thread that lost its CPU for a moment, does not let background run at full speed). Bytes are device bytes (what the disks
//! move): callers charge a PUT its size times (k+m)/k, a copy its reads plus its writes.
//!
//! Plain data, no clock inside: callers pass the time, so the share logic is unit-tested.

/// One class of disk work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoClass {
    Foreground = 0,
    Repair = 1,
    Scrub = 2,
    Compaction = 3,
}

pub const IO_CLASSES: usize = 4;
/// The foreground counts as idle only after this long without a request in flight.
pub const SCHED_IDLE_AFTER_MS: u64 = 500;
/// How long a refused background operation waits before asking again.
pub const SCHED_RETRY_MS: u64 = 10;
/// Credit a background class may save up while it has nothing to do (so a class that wakes
/// up cannot burst far above its share).
pub const SCHED_MAX_CREDIT_BYTES: i64 = 8 << 20;

/// Shares (percent of the bytes moved while the foreground is busy) of the background classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoShares {
    pub repair_percent: u32,
    pub scrub_percent: u32,
    pub compaction_percent: u32,
}

impl Default for IoShares {
    fn default() -> Self {
        IoShares { repair_percent: 20, scrub_percent: 5, compaction_percent: 15 }
    }
}

pub struct IoSched {
    /// Percent per class (index 0, the foreground, is unused).
    shares: [u64; IO_CLASSES],
    /// When the foreground last charged bytes or ended a request.
    fg_last_ms: Option<u64>,
    /// Foreground requests in flight.
    fg_active: u64,
    /// Per background class: bytes it may still move (negative: a debt to pay back).
    credit: [i64; IO_CLASSES],
    /// Fractional credit carried between foreground charges, in percent-bytes (exact).
    credit_rem: [u64; IO_CLASSES],
    /// Device bytes counted per class since start (foreground charged, background admitted),
    /// and the part of them admitted while the foreground was idle.
    pub moved_bytes: [u64; IO_CLASSES],
    pub moved_idle_bytes: [u64; IO_CLASSES],
}

impl IoSched {
    pub fn new(s: IoShares) -> IoSched {
        let clamp = |p: u32| p.clamp(1, 99) as u64;
        IoSched {
            shares: [100, clamp(s.repair_percent), clamp(s.scrub_percent), clamp(s.compaction_percent)],
            fg_last_ms: None,
            fg_active: 0,
            credit: [0; IO_CLASSES],
            credit_rem: [0; IO_CLASSES],
            moved_bytes: [0; IO_CLASSES],
            moved_idle_bytes: [0; IO_CLASSES],
        }
    }

    fn busy(&self, now_ms: u64) -> bool {
        self.fg_active > 0 || self.fg_last_ms.is_some_and(|t| now_ms.saturating_sub(t) < SCHED_IDLE_AFTER_MS)
    }

    /// Record foreground work (never refused): `bytes` device bytes. Earns every background
    /// class its share of credit.
    pub fn foreground(&mut self, bytes: u64, now_ms: u64) {
        self.fg_last_ms = Some(now_ms);
        self.moved_bytes[IoClass::Foreground as usize] += bytes;
        for c in 1..IO_CLASSES {
            // bytes * share / (100 - share), with the remainder carried so no byte is lost.
            let num = bytes as u128 * self.shares[c] as u128 + self.credit_rem[c] as u128;
            let den = (100 - self.shares[c]) as u128;
            self.credit_rem[c] = (num % den) as u64;
            let earned = i64::try_from(num / den).unwrap_or(i64::MAX);
            self.credit[c] = self.credit[c].saturating_add(earned).min(SCHED_MAX_CREDIT_BYTES);
        }
    }

    /// A foreground request started (it counts as busy until `foreground_end`).
    pub fn foreground_begin(&mut self) {
        self.fg_active += 1;
    }

    pub fn foreground_end(&mut self, now_ms: u64) {
        assert!(self.fg_active > 0, "foreground_end without foreground_begin (see ForegroundGuard)");
        self.fg_active -= 1;
        self.fg_last_ms = Some(now_ms);
    }

    /// May `class` move `bytes` (device bytes) now? If yes, the bytes are counted.
    pub fn admit(&mut self, class: IoClass, bytes: u64, now_ms: u64) -> bool {
        if class == IoClass::Foreground {
            self.foreground(bytes, now_ms);
            return true;
        }
        let c = class as usize;
        if !self.busy(now_ms) {
            // Idle foreground: full speed, and whatever debt was left is forgiven.
            self.credit[c] = self.credit[c].max(0);
            self.moved_bytes[c] += bytes;
            self.moved_idle_bytes[c] += bytes;
            return true;
        }
        if self.credit[c] < 0 {
            return false;
        }
        self.credit[c] = self.credit[c].saturating_sub(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.moved_bytes[c] += bytes;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulate `ms` milliseconds: the foreground moves `fg_per_ms` bytes each ms, and each
    /// (class, bytes) asks every ms. Returns the bytes each class moved, foreground first.
    fn simulate(s: &mut IoSched, ms: u64, fg_per_ms: u64, asks: &[(IoClass, u64)]) -> Vec<u64> {
        let mut moved = vec![0u64; 1 + asks.len()];
        for now in 0..ms {
            s.foreground(fg_per_ms, now);
            moved[0] += fg_per_ms;
            for (i, (class, bytes)) in asks.iter().enumerate() {
                if s.admit(*class, *bytes, now) {
                    moved[i + 1] += bytes;
                }
            }
        }
        moved
    }

    #[test]
    fn background_share_is_bounded_while_foreground_is_busy() {
        let mut s = IoSched::new(IoShares { repair_percent: 20, scrub_percent: 5, compaction_percent: 15 });
        // 10 s: the foreground moves 1 MiB per ms; repair and scrub ask for 256 KiB every ms.
        let m = simulate(&mut s, 10_000, 1 << 20, &[(IoClass::Repair, 256 << 10), (IoClass::Scrub, 256 << 10)]);
        // Each class against the foreground alone: class / (class + foreground) <= share.
        let (fg, rep, scr) = (m[0] as f64, m[1] as f64, m[2] as f64);
        let (rp, sp) = (rep / (rep + fg) * 100.0, scr / (scr + fg) * 100.0);
        assert!(rp <= 20.1 && rp > 19.0, "repair got {rp:.2}% of its bytes plus the foreground's");
        assert!(sp <= 5.1 && sp > 4.5, "scrub got {sp:.2}% of its bytes plus the foreground's");
    }

    #[test]
    fn one_large_operation_cannot_exceed_the_share() {
        // Re-placing 64 MiB parts while the foreground moves 100 KiB per ms (100 MB/s): a free
        // operation per window would give repair 640 MB/s; the share allows 25 MB/s.
        let mut s = IoSched::new(IoShares::default());
        let m = simulate(&mut s, 60_000, 100 << 10, &[(IoClass::Repair, 64 << 20)]);
        let share = m[1] as f64 / (m[0] + m[1]) as f64 * 100.0;
        // Over a minute, one operation's worth of overshoot at most.
        let limit = 20.0 + (64 << 20) as f64 / (m[0] + m[1]) as f64 * 100.0;
        assert!(share <= limit, "repair got {share:.1}% (limit {limit:.1}%)");
        assert!(m[1] >= 5 * (64 << 20), "repair made too little progress: {} bytes", m[1]);
    }

    #[test]
    fn background_runs_at_full_speed_when_foreground_is_idle() {
        let mut s = IoSched::new(IoShares::default());
        for now in 0..1000u64 {
            assert!(s.admit(IoClass::Scrub, 1 << 20, now), "scrub refused at {now} ms with no foreground work");
            assert!(s.admit(IoClass::Compaction, 1 << 20, now));
        }
        // Foreground starts: background is throttled...
        s.foreground(64 << 20, 1000);
        let mut refused = 0;
        for _ in 0..100 {
            if !s.admit(IoClass::Scrub, 1 << 20, 1001) {
                refused += 1;
            }
        }
        assert!(refused > 90, "only {refused} of 100 scrub requests were refused");
        // ...and released once the foreground has been quiet for a while, debt forgiven.
        assert!(!s.admit(IoClass::Scrub, 1 << 20, 1000 + SCHED_IDLE_AFTER_MS - 1));
        assert!(s.admit(IoClass::Scrub, 1 << 20, 1000 + SCHED_IDLE_AFTER_MS));
    }

    #[test]
    fn a_request_in_flight_keeps_the_foreground_busy() {
        let mut s = IoSched::new(IoShares::default());
        s.foreground_begin();
        // No bytes charged yet (a long PUT charges at its end), yet background is throttled
        // once it has spent its credit.
        assert!(s.admit(IoClass::Repair, 1 << 20, 5_000), "a class with no debt may start");
        assert!(!s.admit(IoClass::Repair, 1 << 20, 5_001), "a class in debt must wait");
        s.foreground_end(5_002);
        assert!(!s.admit(IoClass::Repair, 1 << 20, 5_100), "the foreground was busy a moment ago");
        assert!(s.admit(IoClass::Repair, 1 << 20, 5_002 + SCHED_IDLE_AFTER_MS), "idle foreground: full speed again");
    }

    #[test]
    fn every_background_class_progresses_while_foreground_is_busy() {
        let mut s = IoSched::new(IoShares { repair_percent: 1, scrub_percent: 1, compaction_percent: 1 });
        // Far more foreground work than 1% could ever match with one request: each class
        // still moves about 1% of the foreground's bytes, none starves.
        let ask = 1 << 20;
        let m = simulate(
            &mut s,
            10_000,
            1 << 20,
            &[(IoClass::Repair, ask), (IoClass::Scrub, ask), (IoClass::Compaction, ask)],
        );
        for (i, moved) in m[1..].iter().enumerate() {
            let pct = *moved as f64 / m[0] as f64 * 100.0;
            assert!(pct > 0.9 && pct < 1.2, "class {} moved {pct:.2}% of the foreground's bytes", i + 1);
        }
    }
}
