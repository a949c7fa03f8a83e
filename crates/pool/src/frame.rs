//! Length-prefixed frames: a `u32` little-endian length, then that many bytes.
//!
//! Every byte that crosses a process boundary goes through [`read_frame`] and
//! [`write_frame`]. The length is checked against a maximum *before* anything is
//! allocated, so a corrupt or hostile prefix is an error, never an allocation bomb.

use std::io::{self, Read, Write};

/// Default maximum frame payload: 64 MiB.
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;

/// Writes one frame and flushes the writer.
pub fn write_frame(w: &mut (impl Write + ?Sized), payload: &[u8], max: usize) -> io::Result<()> {
    if payload.len() > max || payload.len() > u32::MAX as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {} bytes exceeds the maximum of {max}", payload.len()),
        ));
    }
    let len = (payload.len() as u32).to_le_bytes();
    // One buffer, one write: a small frame reaches the pipe atomically.
    let mut buf = Vec::with_capacity(4 + payload.len());
    buf.extend_from_slice(&len);
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame. `Ok(None)` means a clean end of stream before the first
/// length byte; a stream that ends inside a frame is `UnexpectedEof`.
pub fn read_frame(r: &mut (impl Read + ?Sized), max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame length {len} exceeds the maximum of {max}"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"hello", 16).unwrap();
        write_frame(&mut buf, b"", 16).unwrap();
        assert!(write_frame(&mut buf, &[0; 17], 16).is_err());
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r, 16).unwrap().unwrap(), b"hello");
        assert_eq!(read_frame(&mut r, 16).unwrap().unwrap(), b"");
        assert!(read_frame(&mut r, 16).unwrap().is_none());
    }

    #[test]
    fn oversized_prefix_is_an_error_without_allocation() {
        let bytes = u32::MAX.to_le_bytes();
        let err = read_frame(&mut &bytes[..], 1024).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn truncated_frame_is_an_error() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"hello", 16).unwrap();
        buf.truncate(6);
        let err = read_frame(&mut &buf[..], 16).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let err = read_frame(&mut &buf[..2], 16).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
