//! Bounds-checked reads from a kernel image: every structure read names itself and its offset,
//! so a truncated or corrupt file gives an error that says where, never a panic.

use super::BootError;

/// The bytes `offset..offset + len` of `image`, or a `Truncated` error naming `what`.
pub(super) fn bytes<'a>(
    image: &'a [u8],
    offset: u64,
    len: u64,
    what: &str,
) -> Result<&'a [u8], BootError> {
    let truncated = || BootError::Truncated {
        what: what.to_string(),
        offset,
        need: len,
        len: image.len() as u64,
    };
    let start = usize::try_from(offset).map_err(|_| truncated())?;
    let count = usize::try_from(len).map_err(|_| truncated())?;
    let end = start.checked_add(count).ok_or_else(truncated)?;
    image.get(start..end).ok_or_else(truncated)
}

/// A little-endian u16 at `offset`.
pub(super) fn u16_at(image: &[u8], offset: u64, what: &str) -> Result<u16, BootError> {
    let b = bytes(image, offset, 2, what)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

/// A little-endian u32 at `offset`.
pub(super) fn u32_at(image: &[u8], offset: u64, what: &str) -> Result<u32, BootError> {
    let b = bytes(image, offset, 4, what)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// A little-endian u64 at `offset`.
pub(super) fn u64_at(image: &[u8], offset: u64, what: &str) -> Result<u64, BootError> {
    let b = bytes(image, offset, 8, what)?;
    let mut v = [0u8; 8];
    v.copy_from_slice(b);
    Ok(u64::from_le_bytes(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounds_checked() {
        let img = [1u8, 2, 3, 4, 5];
        assert_eq!(u32_at(&img, 1, "x").unwrap(), 0x0504_0302);
        assert!(u32_at(&img, 2, "x").is_err());
        assert!(bytes(&img, u64::MAX, 2, "x").is_err());
        assert!(bytes(&img, 1, u64::MAX, "x").is_err());
        let msg = u64_at(&img, 0, "the thing").unwrap_err().to_string();
        assert!(msg.contains("the thing") && msg.contains("0x0"), "{msg}");
    }
}
