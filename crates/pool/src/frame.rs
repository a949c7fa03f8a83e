//! Length-prefixed frames: a `u32` little-endian length, then that many bytes.
//!
//! Every byte that crosses a process boundary goes through [`read_frame`] and
//! [`write_frame`]. The length is checked against a maximum *before* anything is
//! allocated, so a corrupt or hostile prefix is an error, never an allocation bomb.

use std::io::{self, Read, Write};

use crate::TaskId;

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

/// The header in front of a task in a request frame: which task, and which attempt at it
/// (fault injection fires on early attempts only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TaskHeader {
    pub(crate) id: TaskId,
    pub(crate) attempt: u32,
}

impl TaskHeader {
    /// Encoded size: `id` (u64 LE), then `attempt` (u32 LE).
    pub(crate) const LEN: usize = 12;

    pub(crate) fn to_bytes(self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&self.id.to_le_bytes());
        b[8..12].copy_from_slice(&self.attempt.to_le_bytes());
        b
    }

    pub(crate) fn encode(self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.to_bytes());
    }

    /// The header and the bytes after it; `None` if `bytes` is too short.
    pub(crate) fn decode(bytes: &[u8]) -> Option<(TaskHeader, &[u8])> {
        let (head, rest) = bytes.split_at_checked(Self::LEN)?;
        let id = TaskId::from_le_bytes(head[0..8].try_into().ok()?);
        let attempt = u32::from_le_bytes(head[8..12].try_into().ok()?);
        Some((TaskHeader { id, attempt }, rest))
    }
}

/// What a result body holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tag {
    /// The postcard output of the task.
    Ok = 0,
    /// The task panicked; the body is the panic message.
    Panic = 1,
    /// The task or its output could not be (de)serialized; the body says why.
    Codec = 2,
}

/// The header in front of a result in a result frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ResultHeader {
    pub(crate) id: TaskId,
    pub(crate) tag: Tag,
}

impl ResultHeader {
    /// Encoded size: `id` (u64 LE), then the tag byte.
    pub(crate) const LEN: usize = 9;

    pub(crate) fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.id.to_le_bytes());
        buf.push(self.tag as u8);
    }

    /// The header and the body after it; `None` if `bytes` is too short or the tag unknown.
    pub(crate) fn decode(bytes: &[u8]) -> Option<(ResultHeader, &[u8])> {
        let (head, rest) = bytes.split_at_checked(Self::LEN)?;
        let id = TaskId::from_le_bytes(head[0..8].try_into().ok()?);
        let tag = match head[8] {
            0 => Tag::Ok,
            1 => Tag::Panic,
            2 => Tag::Codec,
            _ => return None,
        };
        Some((ResultHeader { id, tag }, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let mut buf = Vec::new();
        TaskHeader { id: 7, attempt: 2 }.encode(&mut buf);
        buf.extend_from_slice(b"task");
        assert_eq!(TaskHeader::decode(&buf), Some((TaskHeader { id: 7, attempt: 2 }, &b"task"[..])));
        assert_eq!(TaskHeader::decode(&buf[..11]), None);
        let mut buf = Vec::new();
        ResultHeader { id: u64::MAX, tag: Tag::Panic }.encode(&mut buf);
        assert_eq!(ResultHeader::decode(&buf), Some((ResultHeader { id: u64::MAX, tag: Tag::Panic }, &[][..])));
        buf[8] = 9;
        assert_eq!(ResultHeader::decode(&buf), None);
    }

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
