//! `index-memory`: bytes of heap per object in a tablet's in-memory index.
//!
//! Builds an `engine::index::TabletState` with N inline objects by applying `Record::ObjectPut`
//! records exactly as the engine does after a commit (short keys `obj/000123`, no headers,
//! one bucket), and reports the heap bytes allocated in between (requested sizes, counted by the
//! global allocator in `main.rs`, so the figure does not depend on the allocator's size
//! classes), divided by N. The key's own allocation is included.

use engine::index::TabletState;
use engine::record::{DataLoc, ObjectMeta, Record};
use engine::segment::Segments;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

/// Live heap bytes (requested sizes) since counting was enabled, maintained by `CountingAlloc`.
pub static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
/// Off by default, so the other workloads pay one uncontended load per allocation, not a
/// shared atomic add.
static COUNTING: AtomicBool = AtomicBool::new(false);

fn count(delta: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE_BYTES.fetch_add(delta, Ordering::Relaxed);
    }
}

/// The system allocator, counting live bytes.
pub struct CountingAlloc;

unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        count(l.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        count(-(l.size() as isize));
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: std::alloc::Layout) -> *mut u8 {
        count(l.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        count(new as isize - l.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.realloc(p, l, new) }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct IndexMemArgs {
    /// Objects in the index.
    #[arg(long, default_value_t = 1_000_000)]
    pub objects: u64,
}

pub fn run(a: IndexMemArgs) -> Result<(), String> {
    let devs: Vec<(Option<std::path::PathBuf>, bool)> = vec![(None, false); 6];
    let mut segs = Segments::open(0, 1 << 20, &devs).map_err(|e| e.to_string())?;
    let mut st = TabletState::default();
    let width = a.objects.max(1).to_string().len().max(6);
    COUNTING.store(true, Ordering::SeqCst);
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let t0 = std::time::Instant::now();
    for i in 0..a.objects {
        let meta = ObjectMeta {
            size: 4096,
            md5: [i as u8; 16],
            parts_count: 0,
            mtime_ms: 1_700_000_000_000 + i,
            headers: Default::default(),
            data: DataLoc::Inline { gen: 1, offset: i * 4200, len: 4200 },
        };
        let key = format!("obj/{i:0width$}");
        let rec = Record::ObjectPut { bucket: "bench".into(), key, meta, inline: Vec::new(), completes: None };
        st.apply(rec, &mut segs);
    }
    let secs = t0.elapsed().as_secs_f64();
    let bytes = LIVE_BYTES.load(Ordering::Relaxed) - before;
    COUNTING.store(false, Ordering::SeqCst);
    assert_eq!(st.object_count() as u64, a.objects);
    println!(
        "index-memory: {} objects, {} bytes of heap, {:.1} bytes/object (key included; \
         size_of ObjectMeta = {} B), built in {:.2} s",
        a.objects,
        bytes,
        bytes as f64 / a.objects.max(1) as f64,
        std::mem::size_of::<ObjectMeta>(),
        secs
    );
    drop(st);
    Ok(())
}
