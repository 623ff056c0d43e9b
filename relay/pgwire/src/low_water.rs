//! The socket's receive low-water mark (`SO_RCVLOWAT`), raised while a paced reader
//! sleeps (`FrameReader::coalesce_reads`).
//!
//! Why: while the reader waits out its read gap, the kernel would still wake its thread
//! for every packet the walsender sends (the socket stays registered with epoll; each
//! wake finds nothing to do). Below the low-water mark TCP does not signal the socket
//! readable, so the thread sleeps through the gap; lowering the mark again makes the
//! kernel check at once and signal what is queued (`tcp_set_rcvlowat` calls
//! `tcp_data_ready`), so nothing that arrived is left waiting.
//!
//! The mark is only ever high inside [`Raised`]'s lifetime, and its drop lowers it, also
//! when the read is cancelled (a `select!` on shutdown): a mark left high would hold back
//! a quiet stream's last bytes until the receive timeout.

use std::os::fd::RawFd;

/// The mark while sleeping: about half a millisecond of the fastest stream measured
/// (150k events/s of ~600 bytes), so a stream that fast still wakes the reader early
/// rather than filling the socket buffer. The kernel caps it at half of `tcp_rmem`'s max.
pub(crate) const RAISED_BYTES: i32 = 64 * 1024;

/// A raised low-water mark, lowered back to one byte on drop.
pub(crate) struct Raised {
    fd: RawFd,
}

impl Raised {
    /// Raises the mark of `fd`; `None` when the socket refuses (the read then simply
    /// does not save the wake-ups).
    pub(crate) fn raise(fd: RawFd) -> Option<Raised> {
        set(fd, RAISED_BYTES).then_some(Raised { fd })
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        if !set(self.fd, 1) {
            // Cannot happen on a socket that took the raise; if it did, the next bytes
            // would still arrive, only later (at the mark or the receive timeout).
            tracing::warn!(
                fd = self.fd,
                "could not lower the socket's receive low-water mark"
            );
        }
    }
}

fn set(fd: RawFd, bytes: i32) -> bool {
    // SAFETY: `fd` is the open socket of the stream being read (the caller holds it for
    // at least as long as this call); the option value is a plain int of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        ) == 0
    }
}

/// The mark as the kernel has it now.
#[cfg(test)]
pub(crate) fn get(fd: RawFd) -> i32 {
    let mut value: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: as in `set`; `value` and `len` are valid for writes of an int.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&mut value as *mut i32).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "getsockopt SO_RCVLOWAT");
    value
}
