//! Length-prefixed frames: a `u32` little-endian length, then that many bytes.
//!
//! Every byte that crosses a process boundary goes through these frames. The length is
//! checked against a maximum *before* anything is allocated, so a corrupt or hostile prefix
//! is an error, never an allocation bomb.
//!
//! Between the pool and a worker, after the ready frame:
//! ```text
//! request = ChunkHeader  { count: u32, flags: u8 }          then count times:
//!           TaskHeader   { id: u64, attempt: u32, len: u32 } postcard task (len bytes)
//! result  = ResultsHeader{ count: u32, busy_ns: u64, flags: u8 } then count times:
//!           ResultHeader { id: u64, tag: u8, len: u32, ns: u64 } body (len bytes)
//! ```
//! All integers are little-endian; the types below are the one place that encodes and
//! decodes them. A worker sends one result frame per chunk (per task when asked), and the
//! results always come in the order of the tasks it was sent.

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

/// Reads one frame into `buf` (cleared first, its capacity reused). `Ok(false)` means a clean
/// end of stream before the first length byte, as `Ok(None)` for [`read_frame`].
pub(crate) fn read_frame_into(r: &mut (impl Read + ?Sized), max: usize, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(false),
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
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf)?;
    Ok(true)
}

/// Starts a frame at the end of `buf`: a length placeholder that [`finish_frame`] fills in.
/// Returns where the frame starts.
pub(crate) fn begin_frame(buf: &mut Vec<u8>) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    at
}

/// Fills in the length of the frame begun at `at`; errors if its payload exceeds `max`.
pub(crate) fn finish_frame(buf: &mut [u8], at: usize, max: usize) -> io::Result<()> {
    let len = buf.len() - at - 4;
    if len > max || len > u32::MAX as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {len} bytes exceeds the maximum of {max}"),
        ));
    }
    buf[at..at + 4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// A little-endian reader over a frame payload; every read checks the length.
pub(crate) struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { rest: bytes }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.rest.split_at_checked(n)?;
        self.rest = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

/// The header of a request frame: one chunk of tasks for one worker. `count` records follow,
/// each a [`TaskHeader`] and its postcard task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkHeader {
    pub(crate) count: u32,
    /// Report every result at once (one result frame per task) instead of one frame per
    /// chunk; the pool asks for it when tasks have a timeout, so that it knows which task runs.
    pub(crate) flush_each: bool,
}

impl ChunkHeader {
    /// Encoded size: `count` (u32 LE), then a flags byte.
    pub(crate) const LEN: usize = 5;

    pub(crate) fn to_bytes(self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..4].copy_from_slice(&self.count.to_le_bytes());
        b[4] = u8::from(self.flush_each);
        b
    }

    pub(crate) fn decode(c: &mut Cursor<'_>) -> Option<ChunkHeader> {
        let count = c.u32()?;
        let flush_each = match c.u8()? {
            0 => false,
            1 => true,
            _ => return None,
        };
        Some(ChunkHeader { count, flush_each })
    }
}

/// The header in front of a task in a request frame: which task, which attempt at it (fault
/// injection fires on early attempts only), and the length of the postcard task after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TaskHeader {
    pub(crate) id: TaskId,
    pub(crate) attempt: u32,
    pub(crate) len: u32,
}

impl TaskHeader {
    /// Encoded size: `id` (u64 LE), `attempt` (u32 LE), `len` (u32 LE).
    pub(crate) const LEN: usize = 16;

    pub(crate) fn to_bytes(self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&self.id.to_le_bytes());
        b[8..12].copy_from_slice(&self.attempt.to_le_bytes());
        b[12..16].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// The header and the task body after it.
    pub(crate) fn decode<'a>(c: &mut Cursor<'a>) -> Option<(TaskHeader, &'a [u8])> {
        let head = TaskHeader { id: c.u64()?, attempt: c.u32()?, len: c.u32()? };
        Some((head, c.bytes(head.len as usize)?))
    }
}

/// The header of a result frame: `count` records follow, each a [`ResultHeader`] and its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ResultsHeader {
    pub(crate) count: u32,
    /// Nanoseconds the worker spent on these tasks: what the adaptive chunk size learns from.
    pub(crate) busy_ns: u64,
    /// The worker has reported every task it ran and is now running the next one in order (or
    /// waits for one): if it dies before its next frame, that task is the one that killed it.
    pub(crate) sure: bool,
    /// An injected fault fires on the next task: the worker will report nothing more, so the
    /// pool sends the tasks queued behind that one to other workers.
    pub(crate) faulting: bool,
}

impl ResultsHeader {
    /// Encoded size: `count` (u32 LE), `busy_ns` (u64 LE), a flags byte.
    pub(crate) const LEN: usize = 13;

    pub(crate) fn to_bytes(self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..4].copy_from_slice(&self.count.to_le_bytes());
        b[4..12].copy_from_slice(&self.busy_ns.to_le_bytes());
        b[12] = u8::from(self.sure) | (u8::from(self.faulting) << 1);
        b
    }

    pub(crate) fn decode(c: &mut Cursor<'_>) -> Option<ResultsHeader> {
        let (count, busy_ns, flags) = (c.u32()?, c.u64()?, c.u8()?);
        if flags > 3 {
            return None;
        }
        Some(ResultsHeader { count, busy_ns, sure: flags & 1 != 0, faulting: flags & 2 != 0 })
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

/// The header in front of one task's result in a result frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ResultHeader {
    pub(crate) id: TaskId,
    pub(crate) tag: Tag,
    pub(crate) len: u32,
    /// Nanoseconds the worker spent on this task (decoding it, running it).
    pub(crate) ns: u64,
}

impl ResultHeader {
    /// Encoded size: `id` (u64 LE), the tag byte, `len` (u32 LE), `ns` (u64 LE).
    pub(crate) const LEN: usize = 21;

    pub(crate) fn to_bytes(self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&self.id.to_le_bytes());
        b[8] = self.tag as u8;
        b[9..13].copy_from_slice(&self.len.to_le_bytes());
        b[13..21].copy_from_slice(&self.ns.to_le_bytes());
        b
    }

    /// The header and the body after it; `None` if too short or the tag is unknown.
    pub(crate) fn decode<'a>(c: &mut Cursor<'a>) -> Option<(ResultHeader, &'a [u8])> {
        let id = c.u64()?;
        let tag = match c.u8()? {
            0 => Tag::Ok,
            1 => Tag::Panic,
            2 => Tag::Codec,
            _ => return None,
        };
        let (len, ns) = (c.u32()?, c.u64()?);
        let head = ResultHeader { id, tag, len, ns };
        Some((head, c.bytes(head.len as usize)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&ChunkHeader { count: 2, flush_each: true }.to_bytes());
        buf.extend_from_slice(&TaskHeader { id: 7, attempt: 2, len: 4 }.to_bytes());
        buf.extend_from_slice(b"task");
        buf.extend_from_slice(&ResultsHeader { count: 1, busy_ns: 99, sure: true, faulting: true }.to_bytes());
        buf.extend_from_slice(&ResultHeader { id: u64::MAX, tag: Tag::Panic, len: 2, ns: u64::MAX - 1 }.to_bytes());
        buf.extend_from_slice(b"no");
        let mut c = Cursor::new(&buf);
        assert_eq!(ChunkHeader::decode(&mut c), Some(ChunkHeader { count: 2, flush_each: true }));
        assert_eq!(TaskHeader::decode(&mut c), Some((TaskHeader { id: 7, attempt: 2, len: 4 }, &b"task"[..])));
        assert_eq!(
            ResultsHeader::decode(&mut c),
            Some(ResultsHeader { count: 1, busy_ns: 99, sure: true, faulting: true })
        );
        let r = ResultHeader::decode(&mut c);
        assert_eq!(r, Some((ResultHeader { id: u64::MAX, tag: Tag::Panic, len: 2, ns: u64::MAX - 1 }, &b"no"[..])));
        assert!(c.is_empty());
        // A body shorter than its header claims, and an unknown tag, are refused.
        assert_eq!(TaskHeader::decode(&mut Cursor::new(&TaskHeader { id: 1, attempt: 0, len: 9 }.to_bytes())), None);
        let mut bad = ResultHeader { id: 1, tag: Tag::Ok, len: 0, ns: 5 }.to_bytes();
        bad[8] = 9;
        assert_eq!(ResultHeader::decode(&mut Cursor::new(&bad)), None);
    }

    #[test]
    fn frames_built_in_place_and_read_into_a_reused_buffer() {
        let mut buf = Vec::new();
        let at = begin_frame(&mut buf);
        buf.extend_from_slice(b"abc");
        finish_frame(&mut buf, at, 16).unwrap();
        let at = begin_frame(&mut buf);
        buf.extend_from_slice(&[0; 17]);
        assert!(finish_frame(&mut buf, at, 16).is_err());
        buf.truncate(at);
        let mut r = &buf[..];
        let mut into = Vec::with_capacity(64);
        assert!(read_frame_into(&mut r, 16, &mut into).unwrap());
        assert_eq!(into, b"abc");
        assert!(!read_frame_into(&mut r, 16, &mut into).unwrap());
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
