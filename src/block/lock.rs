//! Advisory whole-file locks (`flock`) so two kemu processes never write one image: a writer
//! takes an exclusive lock, a reader (or a backing file) a shared one. The lock lives as long as
//! the open file description, i.e. as long as the image is open.

use std::fs::File;
use std::os::unix::io::AsRawFd;

use super::BlockError;

/// Takes a non-blocking `flock` on `file`: exclusive when `write`, shared otherwise.
///
/// A busy lock is retried for up to 200 ms: a process that just closed the image may
/// have a freshly forked child still sharing the descriptor (and so the lock) until it execs.
pub fn lock_file(file: &File, name: &str, write: bool) -> Result<(), BlockError> {
    let op = if write { libc::LOCK_EX } else { libc::LOCK_SH } | libc::LOCK_NB;
    let mut tries = 0;
    let err = loop {
        // SAFETY: flock only reads the fd number, which `file` keeps open for the duration of
        // the call; it touches no memory of ours.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        tries += 1;
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) || tries >= 100 {
            break err;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Err(BlockError::Locked {
            file: name.to_string(),
            kind: if write { "write" } else { "shared" },
        })
    } else {
        Err(BlockError::io(name, "locking the image", err))
    }
}
