//! I/O priority classes: a per-core, share-based admission scheduler.
//!
//! Foreground requests are never delayed. Each background class (repair, scrub, compaction)
//! may use at most its share (percent) of the bytes moved in a time window *while foreground
//! work is active*; when the foreground is idle, background work runs at full speed. Each
//! background class is always allowed one operation per window, so it cannot starve.
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
/// The accounting window.
pub const SCHED_WINDOW_MS: u64 = 100;
/// How long a refused background operation waits before asking again.
pub const SCHED_RETRY_MS: u64 = 10;

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
    shares: [u64; IO_CLASSES],
    window_start_ms: u64,
    used: [u64; IO_CLASSES],
    /// Bytes the foreground moved in the previous window: it counts as "busy" if either
    /// window saw foreground work.
    prev_foreground: u64,
}

impl IoSched {
    pub fn new(s: IoShares) -> IoSched {
        let clamp = |p: u32| p.clamp(1, 100) as u64;
        IoSched {
            shares: [100, clamp(s.repair_percent), clamp(s.scrub_percent), clamp(s.compaction_percent)],
            window_start_ms: 0,
            used: [0; IO_CLASSES],
            prev_foreground: 0,
        }
    }

    fn roll(&mut self, now_ms: u64) {
        if now_ms >= self.window_start_ms + SCHED_WINDOW_MS {
            let consecutive = now_ms < self.window_start_ms + 2 * SCHED_WINDOW_MS;
            self.prev_foreground = if consecutive { self.used[IoClass::Foreground as usize] } else { 0 };
            self.used = [0; IO_CLASSES];
            self.window_start_ms = now_ms - (now_ms - self.window_start_ms) % SCHED_WINDOW_MS;
        }
    }

    /// Record foreground work (never refused).
    pub fn foreground(&mut self, bytes: u64, now_ms: u64) {
        self.roll(now_ms);
        self.used[IoClass::Foreground as usize] += bytes;
    }

    /// May `class` move `bytes` now? If yes, the bytes are counted.
    pub fn admit(&mut self, class: IoClass, bytes: u64, now_ms: u64) -> bool {
        self.roll(now_ms);
        let c = class as usize;
        let fg = self.used[IoClass::Foreground as usize];
        let busy = fg > 0 || self.prev_foreground > 0;
        let ok = class == IoClass::Foreground || !busy || self.used[c] == 0 || {
            // used[c] + bytes <= share * (fg + all background + bytes)
            let total: u64 = self.used.iter().sum::<u64>() + bytes;
            (self.used[c] + bytes) * 100 <= self.shares[c] * total
        };
        if ok {
            self.used[c] += bytes;
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_share_is_bounded_while_foreground_is_busy() {
        let mut s = IoSched::new(IoShares { repair_percent: 20, scrub_percent: 5, compaction_percent: 15 });
        let (mut fg, mut rep, mut scr) = (0u64, 0u64, 0u64);
        // 10 s of simulated time in 1 ms steps: the foreground moves 1 MiB per ms, repair and
        // scrub ask for 256 KiB every ms.
        for now in 0..10_000u64 {
            s.foreground(1 << 20, now);
            fg += 1 << 20;
            if s.admit(IoClass::Repair, 256 << 10, now) {
                rep += 256 << 10;
            }
            if s.admit(IoClass::Scrub, 256 << 10, now) {
                scr += 256 << 10;
            }
        }
        let total = (fg + rep + scr) as f64;
        let (rp, sp) = (rep as f64 / total * 100.0, scr as f64 / total * 100.0);
        assert!(rp <= 20.5 && rp > 10.0, "repair got {rp:.1}% of the disk");
        assert!(sp <= 5.5 && sp > 1.0, "scrub got {sp:.1}% of the disk");
    }

    #[test]
    fn background_runs_at_full_speed_when_foreground_is_idle() {
        let mut s = IoSched::new(IoShares::default());
        for now in 0..1000u64 {
            assert!(s.admit(IoClass::Scrub, 1 << 20, now), "scrub refused at {now} ms with no foreground work");
            assert!(s.admit(IoClass::Compaction, 1 << 20, now));
        }
        // Foreground starts: background is throttled within a window...
        s.foreground(64 << 20, 1000);
        let mut refused = 0;
        for _ in 0..100 {
            if !s.admit(IoClass::Scrub, 1 << 20, 1001) {
                refused += 1;
            }
        }
        assert!(refused > 90, "only {refused} of 100 scrub requests were refused");
        // ...and released two windows after the foreground went quiet.
        assert!(s.admit(IoClass::Scrub, 1 << 20, 1000 + 2 * SCHED_WINDOW_MS + 1));
    }

    #[test]
    fn every_background_class_gets_one_operation_per_window() {
        let mut s = IoSched::new(IoShares { repair_percent: 1, scrub_percent: 1, compaction_percent: 1 });
        let mut granted_per_window = [0u32; 10];
        for now in 0..1000u64 {
            // Far more foreground work than 1% could ever match with a 1 GiB request.
            s.foreground(1 << 20, now);
            if s.admit(IoClass::Repair, 1 << 30, now) {
                granted_per_window[(now / SCHED_WINDOW_MS) as usize] += 1;
            }
        }
        assert_eq!(granted_per_window, [1; 10], "repair must progress exactly once per window");
    }
}
