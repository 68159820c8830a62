//! The software x86-64 CPU: decode cache, interpreter, MMU and exceptions. It reaches the
//! outside only through the seam types in `crate::accel`.
