//! I/O buffers for O_DIRECT: 4 KiB-aligned, carved from a per-core pool backed by transparent
//! huge pages (2 MiB-aligned region, `MADV_HUGEPAGE`), recycled, never allocated per request
//! on the hot path. When the pool is empty a plain aligned allocation is used and counted, so a
//! benchmark can see the pool was too small.

use std::alloc::{alloc, dealloc, Layout};
use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::rc::Rc;

use crate::util::ALIGN_BYTES;

const HUGE_PAGE_BYTES: usize = 2 << 20;

struct Region {
    base: NonNull<u8>,
    layout: Layout,
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `BufPool::new` with this layout.
        unsafe { dealloc(self.base.as_ptr(), self.layout) }
    }
}

struct PoolInner {
    region: Region,
    buf_bytes: usize,
    free: RefCell<Vec<u32>>,
    overflow_allocs: Cell<u64>,
    /// Bytes of buffers handed out and not yet returned (pool and overflow), and the most
    /// ever at once.
    out: Cell<usize>,
    peak_out: Cell<usize>,
}

/// A per-core pool of equal-sized aligned buffers. Not `Send`: it belongs to one core.
#[derive(Clone)]
pub struct BufPool {
    inner: Rc<PoolInner>,
}

impl BufPool {
    /// `count` buffers of `buf_bytes` each (a multiple of 4 KiB).
    pub fn new(buf_bytes: usize, count: usize) -> BufPool {
        assert!(buf_bytes > 0 && buf_bytes.is_multiple_of(ALIGN_BYTES), "buffer size must be a multiple of 4 KiB");
        let count = count.max(1);
        let total = (buf_bytes * count).div_ceil(HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES;
        let layout = Layout::from_size_align(total, HUGE_PAGE_BYTES).expect("pool layout");
        // SAFETY: non-zero size layout.
        let ptr = unsafe { alloc(layout) };
        let base = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        // SAFETY: the range is our own fresh allocation; advice failure is harmless.
        unsafe {
            libc::madvise(base.as_ptr() as *mut libc::c_void, total, libc::MADV_HUGEPAGE);
        }
        let free = (0..count as u32).rev().collect();
        BufPool {
            inner: Rc::new(PoolInner {
                region: Region { base, layout },
                buf_bytes,
                free: RefCell::new(free),
                overflow_allocs: Cell::new(0),
                out: Cell::new(0),
                peak_out: Cell::new(0),
            }),
        }
    }

    pub fn buf_bytes(&self) -> usize {
        self.inner.buf_bytes
    }

    /// Buffers handed out beyond the pool's size since start.
    pub fn overflow_allocs(&self) -> u64 {
        self.inner.overflow_allocs.get()
    }

    pub fn free_count(&self) -> usize {
        self.inner.free.borrow().len()
    }

    /// The most bytes of buffers handed out at once since start (pool and overflow): what the
    /// requests in flight held.
    pub fn peak_bytes(&self) -> u64 {
        self.inner.peak_out.get() as u64
    }

    /// A zero-length buffer of the pool's size.
    pub fn get(&self) -> AlignedBuf {
        self.get_for(self.inner.buf_bytes)
    }

    fn count_out(&self, bytes: usize) {
        let inner = &self.inner;
        inner.out.set(inner.out.get() + bytes);
        inner.peak_out.set(inner.peak_out.get().max(inner.out.get()));
    }

    /// A zero-length buffer of at least `len` bytes: the pool's size when that is enough,
    /// else a buffer of its own (a shard of an object written with a larger chunk than the
    /// pool's, which is read, rebuilt and re-encoded at its own size).
    pub fn get_for(&self, len: usize) -> AlignedBuf {
        if len > self.inner.buf_bytes {
            let mut b = AlignedBuf::alloc(len);
            if let Home::Heap(layout) = b.home {
                self.count_out(layout.size());
                b.home = Home::Overflow(self.inner.clone(), layout);
            }
            return b;
        }
        self.count_out(self.inner.buf_bytes);
        let slot = self.inner.free.borrow_mut().pop();
        match slot {
            Some(i) => {
                // SAFETY: slot i lies inside the region.
                let ptr = unsafe { self.inner.region.base.as_ptr().add(i as usize * self.inner.buf_bytes) };
                AlignedBuf {
                    ptr: NonNull::new(ptr).expect("non-null"),
                    cap: self.inner.buf_bytes,
                    len: 0,
                    home: Home::Pool(self.inner.clone(), i),
                }
            }
            None => {
                self.inner.overflow_allocs.set(self.inner.overflow_allocs.get() + 1);
                let mut b = AlignedBuf::alloc(self.inner.buf_bytes);
                if let Home::Heap(layout) = b.home {
                    // Counted above, at the pool's size (the same as this layout's).
                    b.home = Home::Overflow(self.inner.clone(), layout);
                }
                b
            }
        }
    }
}

enum Home {
    Pool(Rc<PoolInner>, u32),
    Heap(Layout),
    /// Allocated outside the pool (the pool was empty, or the buffer is larger than the
    /// pool's): counted as handed out by the pool, in bytes.
    Overflow(Rc<PoolInner>, Layout),
}

/// An owned, 4 KiB-aligned buffer with a fixed capacity and an initialised length.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    cap: usize,
    len: usize,
    home: Home,
}

impl AlignedBuf {
    /// A standalone aligned buffer (not pooled).
    pub fn alloc(cap: usize) -> AlignedBuf {
        let cap = cap.max(ALIGN_BYTES).div_ceil(ALIGN_BYTES) * ALIGN_BYTES;
        let layout = Layout::from_size_align(cap, ALIGN_BYTES).expect("buffer layout");
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, cap, len: 0, home: Home::Heap(layout) }
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Set the initialised length; bytes between the old and new length are zeroed.
    pub fn resize_zeroed(&mut self, len: usize) {
        assert!(len <= self.cap);
        if len > self.len {
            // SAFETY: within capacity.
            unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(self.len), 0, len - self.len) };
        }
        self.len = len;
    }

    /// Append as much of `src` as fits; returns the number of bytes taken.
    pub fn extend_from(&mut self, src: &[u8]) -> usize {
        let n = src.len().min(self.cap - self.len);
        // SAFETY: within capacity, no overlap (src is not ours).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(self.len), n) };
        self.len += n;
        n
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: len bytes are initialised.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: len bytes are initialised, we hold &mut.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        match &self.home {
            Home::Pool(p, i) => {
                p.out.set(p.out.get() - p.buf_bytes);
                p.free.borrow_mut().push(*i)
            }
            // SAFETY: allocated by `alloc` with this layout.
            Home::Heap(l) => unsafe { dealloc(self.ptr.as_ptr(), *l) },
            Home::Overflow(p, l) => {
                p.out.set(p.out.get() - l.size());
                // SAFETY: allocated by `alloc` with this layout.
                unsafe { dealloc(self.ptr.as_ptr(), *l) }
            }
        }
    }
}

// SAFETY: the pointer stays valid and fixed for the buffer's life (it never reallocates), and
// `bytes_init` never exceeds the allocation.
unsafe impl monoio::buf::IoBuf for AlignedBuf {
    fn read_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// One aligned buffer written by several I/Os at once (the mirrors of a log append): each
/// I/O holds a reference, none a copy.
#[derive(Clone)]
pub struct SharedBuf(pub std::rc::Rc<AlignedBuf>);

// SAFETY: the Rc keeps the buffer alive and unmoved while any I/O holds a clone; the bytes
// are only read (no `IoBufMut`).
unsafe impl monoio::buf::IoBuf for SharedBuf {
    fn read_ptr(&self) -> *const u8 {
        self.0.as_slice().as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.0.len()
    }
}

impl AsRef<[u8]> for SharedBuf {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

// SAFETY: as above; `set_init` is only called by the runtime with the count the kernel wrote.
unsafe impl monoio::buf::IoBufMut for AlignedBuf {
    fn write_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    fn bytes_total(&mut self) -> usize {
        self.cap
    }
    unsafe fn set_init(&mut self, pos: usize) {
        self.len = pos.min(self.cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_larger_than_the_pool_s_are_their_own_and_counted() {
        let pool = BufPool::new(8192, 2);
        let a = pool.get();
        let mut big = pool.get_for(3 * 8192);
        assert!(big.capacity() >= 3 * 8192, "a buffer for a larger shard holds it");
        big.resize_zeroed(3 * 8192);
        assert_eq!(pool.free_count(), 1, "a larger buffer does not take a pool slot");
        assert_eq!(pool.peak_bytes(), 4 * 8192);
        drop(big);
        drop(a);
        let _c = pool.get_for(100);
        assert_eq!(pool.free_count(), 1, "a smaller request is served from the pool");
        assert_eq!(pool.peak_bytes(), 4 * 8192, "the peak stays; what is out went back");
    }

    #[test]
    fn pool_recycles_and_overflows_cleanly() {
        let pool = BufPool::new(8192, 2);
        let a = pool.get();
        let b = pool.get();
        assert_eq!(a.read_ptr_addr() % ALIGN_BYTES, 0);
        let c = pool.get();
        assert_eq!(pool.overflow_allocs(), 1);
        drop((a, b, c));
        assert_eq!(pool.free_count(), 2);
    }

    impl AlignedBuf {
        fn read_ptr_addr(&self) -> usize {
            self.ptr.as_ptr() as usize
        }
    }
}
