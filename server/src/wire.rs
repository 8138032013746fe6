//! Frontend message framing, checked before pgwire decodes it.
//!
//! pgwire 0.42.1 decodes a message's fields from the connection's whole read
//! buffer, not from the message's own bytes: a Parse or Bind whose counts
//! claim more than its length holds reads into the next message, or past
//! the buffer's end and panics; one with bytes left over leaves them to be
//! read as the next message; a startup packet without its final terminator
//! swallows whatever follows. [`FrameCheck`] follows the same byte stream
//! (the untagged startup packet, then tagged messages) and refuses any
//! message whose body does not hold exactly the fields of its type, before
//! pgwire sees it. [`Checked`] applies it to a connection's reads: a
//! malformed message becomes an `InvalidData` read error, on which the front
//! end answers 08P01 and closes that connection (PostgreSQL answers
//! "invalid message format" and closes too).
//!
//! Bodies of the checked types are buffered while they arrive (pgwire holds
//! them in its read buffer as well); CopyData and unknown types are only
//! counted. Every size is bounded: startup packets by
//! `STARTUP_PACKET_BYTES_MAX`, other messages by `MESSAGE_BYTES_MAX`.

use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest startup packet, as PostgreSQL's MAX_STARTUP_PACKET_LENGTH (and pgwire's limit).
const STARTUP_PACKET_BYTES_MAX: usize = 10_000;
/// Largest other message: pgwire's own limit (just under 1 GiB, as PostgreSQL's).
const MESSAGE_BYTES_MAX: usize = 0x3fff_fffe;
/// Protocol codes of the untagged packets (PostgreSQL's pqcomm.h).
const PROTOCOL_3_MAJOR: i32 = 3;
const SSL_REQUEST_CODE: i32 = 80_877_103;
const GSS_ENC_REQUEST_CODE: i32 = 80_877_104;
const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// A cancel request: length, code, process id, then a secret key of 4 to 256 bytes.
const CANCEL_REQUEST_BYTES_MIN: usize = 16;
const CANCEL_REQUEST_BYTES_MAX: usize = 12 + 256;

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid frontend message: {0}")]
pub struct Malformed(String);

fn malformed(what: impl Into<String>) -> Malformed {
    Malformed(what.into())
}

/// A cursor over one message body; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        if self.0.len() < count {
            return None;
        }
        let (head, tail) = self.0.split_at(count);
        self.0 = tail;
        Some(head)
    }

    fn cstring(&mut self) -> Option<()> {
        let end = self.0.iter().position(|b| *b == 0)?;
        self.take(end + 1).map(|_| ())
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<usize> {
        self.take(2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn done(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

/// The body grammar of a tagged message, as pgwire reads it; `first_password`
/// says a 'p' message is the SASL initial response (the only mechanism
/// offered is SCRAM, whose first message it is).
fn body_is_well_formed(tag: u8, body: &[u8], first_password: bool) -> bool {
    let mut r = Reader(body);
    let checked = match tag {
        b'Q' | b'f' => r.cstring().and_then(|()| r.done()),
        b'P' => (|| {
            r.cstring()?;
            r.cstring()?;
            let types = r.u16()?;
            r.take(types * 4)?;
            r.done()
        })(),
        b'B' => (|| {
            r.cstring()?;
            r.cstring()?;
            let formats = r.u16()?;
            r.take(formats * 2)?;
            for _ in 0..r.u16()? {
                let length = r.i32()?;
                if length >= 0 {
                    r.take(usize::try_from(length).ok()?)?;
                }
            }
            let result_formats = r.u16()?;
            r.take(result_formats * 2)?;
            r.done()
        })(),
        b'C' | b'D' => r.u8().and_then(|_| r.cstring()).and_then(|()| r.done()),
        b'E' => r.cstring().and_then(|()| r.i32()).and_then(|_| r.done()),
        b'S' | b'H' | b'X' | b'c' => r.done(),
        b'p' if first_password => (|| {
            r.cstring()?;
            let length = r.i32()?;
            if length >= 0 {
                r.take(usize::try_from(length).ok()?)?;
            } else if length != -1 {
                return None;
            }
            r.done()
        })(),
        _ => Some(()),
    };
    checked.is_some()
}

/// Whether a message of type `tag` has its body checked (and so buffered).
fn is_checked(tag: u8) -> bool {
    matches!(tag, b'Q' | b'f' | b'P' | b'B' | b'C' | b'D' | b'E' | b'S' | b'H' | b'X' | b'c' | b'p')
}

/// An untagged packet (startup, cancel, SSL or GSS request): whether it is
/// well formed, and whether another untagged packet may follow it (after an
/// SSL or GSS request the client sends its startup packet).
fn untagged_packet(packet: &[u8]) -> Result<bool, Malformed> {
    let mut r = Reader(packet);
    let code = r.i32().ok_or_else(|| malformed("startup packet without a protocol code"))?;
    match code {
        SSL_REQUEST_CODE | GSS_ENC_REQUEST_CODE => {
            r.done().ok_or_else(|| malformed("SSL or GSS request with a body"))?;
            Ok(true)
        }
        CANCEL_REQUEST_CODE => {
            let length = packet.len() + 4;
            if !(CANCEL_REQUEST_BYTES_MIN..=CANCEL_REQUEST_BYTES_MAX).contains(&length) {
                return Err(malformed(format!("cancel request of {length} bytes")));
            }
            Ok(false)
        }
        code if code >> 16 == PROTOCOL_3_MAJOR => {
            // Name and value pairs, then the final terminator, and nothing after it.
            while r.0.first().is_some_and(|b| *b != 0) {
                r.cstring().and_then(|()| r.cstring()).ok_or_else(|| malformed("unterminated startup parameter"))?;
            }
            r.take(1).and_then(|_| r.done()).ok_or_else(|| malformed("startup packet without its terminator"))?;
            Ok(false)
        }
        // pgwire refuses other protocol versions itself, reading nothing past the code.
        _ => Ok(false),
    }
}

/// Follows a connection's frontend byte stream and checks each message.
#[derive(Debug)]
pub struct FrameCheck {
    /// The next packet is untagged (startup, cancel, SSL or GSS request).
    untagged: bool,
    /// Header bytes of the message being read (1 type byte and 4 length bytes).
    header: Vec<u8>,
    /// The message whose body is being read.
    current: Option<Current>,
    /// The SASL initial response was seen.
    password_seen: bool,
}

#[derive(Debug)]
struct Current {
    /// None for an untagged packet.
    tag: Option<u8>,
    /// Body bytes still to come.
    remaining: usize,
    /// The body so far, for the types whose body is checked.
    body: Option<Vec<u8>>,
}

impl FrameCheck {
    /// A check for a connection whose next packet is the startup packet.
    pub fn new() -> FrameCheck {
        FrameCheck { untagged: true, header: Vec::with_capacity(5), current: None, password_seen: false }
    }

    /// Checks `bytes`, the next bytes the client sent.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Malformed> {
        while !bytes.is_empty() {
            if let Some(current) = self.current.as_mut() {
                let count = current.remaining.min(bytes.len());
                if let Some(body) = current.body.as_mut() {
                    body.extend_from_slice(&bytes[..count]);
                }
                current.remaining -= count;
                bytes = &bytes[count..];
                if current.remaining == 0 {
                    self.finish_message()?;
                }
                continue;
            }
            let header_bytes = if self.untagged { 4 } else { 5 };
            let count = (header_bytes - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..count]);
            bytes = &bytes[count..];
            if self.header.len() == header_bytes {
                self.start_message()?;
            }
        }
        Ok(())
    }

    fn start_message(&mut self) -> Result<(), Malformed> {
        let (tag, length_bytes) =
            if self.untagged { (None, &self.header[..]) } else { (Some(self.header[0]), &self.header[1..]) };
        let length = i32::from_be_bytes([length_bytes[0], length_bytes[1], length_bytes[2], length_bytes[3]]);
        let length = usize::try_from(length).map_err(|_| malformed(format!("negative message length {length}")))?;
        let (least, most) = if self.untagged { (8, STARTUP_PACKET_BYTES_MAX) } else { (4, MESSAGE_BYTES_MAX) };
        if !(least..=most).contains(&length) {
            return Err(malformed(format!("message length {length} outside {least}..={most}")));
        }
        let checked = tag.is_none_or(is_checked);
        self.header.clear();
        self.current = Some(Current {
            tag,
            remaining: length - 4,
            body: checked.then(|| Vec::with_capacity((length - 4).min(4096))),
        });
        if length == 4 {
            self.finish_message()?;
        }
        Ok(())
    }

    fn finish_message(&mut self) -> Result<(), Malformed> {
        let Some(Current { tag, body, .. }) = self.current.take() else { return Ok(()) };
        let body = body.unwrap_or_default();
        match tag {
            None => self.untagged = untagged_packet(&body)?,
            Some(tag) => {
                let first_password = tag == b'p' && !std::mem::replace(&mut self.password_seen, true);
                if !body_is_well_formed(tag, &body, first_password) {
                    return Err(malformed(format!("'{}' message whose body does not match its type", tag as char)));
                }
            }
        }
        Ok(())
    }
}

impl Default for FrameCheck {
    fn default() -> FrameCheck {
        FrameCheck::new()
    }
}

/// A connection's stream whose reads pass through a [`FrameCheck`]; writes
/// pass unchanged. After a malformed message every read fails.
pub struct Checked<S> {
    inner: S,
    check: FrameCheck,
    failed: Option<Malformed>,
}

impl<S> Checked<S> {
    /// Wraps `inner`; `already_read` are bytes of the stream read before
    /// (they are checked first).
    pub fn new(inner: S, already_read: &[u8]) -> Checked<S> {
        let mut check = FrameCheck::new();
        let failed = check.feed(already_read).err();
        Checked { inner, check, failed }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Checked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if let Some(failed) = &self.failed {
            return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, failed.clone())));
        }
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => match this.check.feed(&buf.filled()[before..]) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(failed) => {
                    this.failed = Some(failed.clone());
                    Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, failed)))
                }
            },
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Checked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    fn startup() -> Vec<u8> {
        let body = b"\x00\x03\x00\x00user\0postgres\0database\0postgres\0\0";
        let mut bytes = (body.len() as i32 + 4).to_be_bytes().to_vec();
        bytes.extend_from_slice(body);
        bytes
    }

    /// Feeds `messages` after a startup packet, one byte at a time and all at once.
    fn check(messages: &[Vec<u8>]) -> Result<(), Malformed> {
        let mut stream = startup();
        for message in messages {
            stream.extend_from_slice(message);
        }
        let mut bytewise = FrameCheck::new();
        let bytewise = stream.iter().try_for_each(|b| bytewise.feed(std::slice::from_ref(b)));
        let whole = FrameCheck::new().feed(&stream);
        assert_eq!(bytewise, whole, "the result must not depend on how reads split the stream");
        whole
    }

    #[test]
    fn well_formed_messages_pass() {
        let bind = b"p1\0s1\0\x00\x01\x00\x01\x00\x02\x00\x00\x00\x02hi\xff\xff\xff\xff\x00\x01\x00\x00";
        let messages = [
            tagged(b'p', b"SCRAM-SHA-256\0\x00\x00\x00\x03abc"),
            tagged(b'p', b"c=biws,r=xyz,p=proof"),
            tagged(b'Q', b"SELECT 1\0"),
            tagged(b'P', b"s1\0SELECT $1\0\x00\x01\x00\x00\x00\x17"),
            tagged(b'B', bind),
            tagged(b'D', b"Pp1\0"),
            tagged(b'E', b"p1\0\x00\x00\x00\x0a"),
            tagged(b'C', b"Ss1\0"),
            tagged(b'H', b""),
            tagged(b'S', b""),
            tagged(b'd', b"1\t2\n"),
            tagged(b'c', b""),
            tagged(b'X', b""),
        ];
        assert_eq!(check(&messages), Ok(()));
    }

    #[test]
    fn bodies_that_do_not_match_their_counts_are_refused() {
        for message in [
            // Bind claiming 1 parameter format but carrying none.
            tagged(b'B', b"\0\0\x00\x01"),
            // Parse claiming 5 parameter types with room for 1.
            tagged(b'P', b"\0SELECT 1\0\x00\x05\x00\x00\x00\x17"),
            // Parse with bytes after its last field.
            tagged(b'P', b"\0SELECT 1\0\x00\x00junk"),
            // A parameter longer than the message.
            tagged(b'B', b"\0\0\x00\x00\x00\x01\x7f\xff\xff\xff"),
            tagged(b'Q', b"SELECT 1"),
            tagged(b'E', b"\0\x00\x00"),
            tagged(b'D', b""),
            tagged(b'S', b"x"),
            tagged(b'p', b"SCRAM-SHA-256\0\x00\x00\x00\x09ab"),
        ] {
            assert!(check(std::slice::from_ref(&message)).is_err(), "{message:?}");
        }
    }

    #[test]
    fn lengths_out_of_range_are_refused() {
        let mut short = vec![b'Q'];
        short.extend_from_slice(&3i32.to_be_bytes());
        assert!(check(&[short]).is_err());
        let mut negative = vec![b'd'];
        negative.extend_from_slice(&(-1i32).to_be_bytes());
        assert!(check(&[negative]).is_err());
        let mut huge = 20_000i32.to_be_bytes().to_vec();
        huge.extend_from_slice(&[0, 3, 0, 0]);
        assert!(FrameCheck::new().feed(&huge).is_err(), "startup packet over the limit");
    }

    #[test]
    fn startup_packets_are_checked() {
        let packet = |body: &[u8]| {
            let mut bytes = (body.len() as i32 + 4).to_be_bytes().to_vec();
            bytes.extend_from_slice(body);
            bytes
        };
        // SSL request, then the startup packet, then a tagged message.
        let mut stream = packet(&SSL_REQUEST_CODE.to_be_bytes());
        stream.extend(startup());
        stream.extend(tagged(b'Q', b"SELECT 1\0"));
        assert_eq!(FrameCheck::new().feed(&stream), Ok(()));
        // Parameters without the final terminator would swallow what follows.
        assert!(FrameCheck::new().feed(&packet(b"\x00\x03\x00\x00user\0postgres\0")).is_err());
        assert!(FrameCheck::new().feed(&packet(b"\x00\x03\x00\x00user\0postgres")).is_err());
        let mut cancel = CANCEL_REQUEST_CODE.to_be_bytes().to_vec();
        cancel.extend_from_slice(&[0, 0, 0, 1]);
        assert!(FrameCheck::new().feed(&packet(&cancel)).is_err(), "cancel request without its key");
        cancel.extend_from_slice(&[0, 0, 0, 2]);
        assert_eq!(FrameCheck::new().feed(&packet(&cancel)), Ok(()));
        // Another protocol version is pgwire's to refuse.
        assert_eq!(FrameCheck::new().feed(&packet(b"\x00\x02\x00\x00user\0")), Ok(()));
    }
}
