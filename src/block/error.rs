//! The block layer's one error type. Every message names the image file and, where one is
//! involved, the on-disk structure and its offset, so a user can find the damage with a hex dump.

use std::io;

/// What went wrong opening, reading, writing or creating a disk image.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// A host I/O call failed.
    #[error("{file}: {what}: {source}")]
    Io {
        /// The image file.
        file: String,
        /// What we were doing (e.g. "reading L2 table at 0x50000").
        what: String,
        /// The host error.
        #[source]
        source: io::Error,
    },
    /// The image contents are inconsistent; nothing is written to it after this.
    #[error("{file}: {msg}")]
    Corrupt {
        /// The image file.
        file: String,
        /// The structure, offset and what is wrong with it.
        msg: String,
    },
    /// A valid image that uses a feature this reader does not implement.
    #[error("{file}: unsupported image: {msg}")]
    Unsupported {
        /// The image file.
        file: String,
        /// The feature.
        msg: String,
    },
    /// A request outside the device.
    #[error("{file}: request of {len} bytes at 0x{offset:x} is past the end of the device (0x{size:x} bytes)")]
    OutOfRange {
        /// The image file.
        file: String,
        /// Request offset.
        offset: u64,
        /// Request length.
        len: u64,
        /// Device size.
        size: u64,
    },
    /// A write to a device opened read-only (or an image we refuse to modify).
    #[error("{file}: {why}")]
    ReadOnly {
        /// The image file.
        file: String,
        /// Why writing is not allowed.
        why: String,
    },
    /// Another process holds the image's lock.
    #[error("{file}: the image is in use by another process (failed to get a {kind} lock); is another kemu using it?")]
    Locked {
        /// The image file.
        file: String,
        /// "write" or "shared".
        kind: &'static str,
    },
    /// A bad argument from the caller (size, option, format name).
    #[error("{0}")]
    Invalid(String),
}

impl BlockError {
    /// Builds an `Io` error with context.
    pub fn io(file: &str, what: impl Into<String>, source: io::Error) -> Self {
        BlockError::Io {
            file: file.to_string(),
            what: what.into(),
            source,
        }
    }

    /// Builds a `Corrupt` error.
    pub fn corrupt(file: &str, msg: impl Into<String>) -> Self {
        BlockError::Corrupt {
            file: file.to_string(),
            msg: msg.into(),
        }
    }

    /// Builds an `Unsupported` error.
    pub fn unsupported(file: &str, msg: impl Into<String>) -> Self {
        BlockError::Unsupported {
            file: file.to_string(),
            msg: msg.into(),
        }
    }
}
