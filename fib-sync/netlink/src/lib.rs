//! A blocking rtnetlink socket that pipelines requests.
//!
//! [`Netlink::execute`] packs many requests into one `sendmsg` (the kernel
//! runs them in order inside that call), asks for no per-request ACK, and
//! ends each batch with an `NLMSG_NOOP` that does ask for one. The kernel
//! answers a failed request with an error carrying its sequence number, so
//! the barrier's ACK means every request before it has been handled, and
//! any error seen before it names the request that failed. A batch of a few
//! hundred routes costs two system calls instead of two per route.

use std::io;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, NLM_F_ACK, NLM_F_ACK_TLVS,
    NLM_F_CAPPED, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// How many bytes of requests go into one `sendmsg`; well below the
/// default socket send buffer.
const BATCH_BYTES: usize = 64 * 1024;
/// Receive buffer: errors for a whole batch and the biggest dump datagram
/// must fit.
const RCVBUF: usize = 8 * 1024 * 1024;
const RECV_CHUNK: usize = 256 * 1024;
/// `NLMSGERR_ATTR_MSG`: the extended ACK's human-readable message.
const NLMSGERR_ATTR_MSG: u16 = 1;

#[derive(Debug, thiserror::Error)]
pub enum NlError {
    #[error("netlink: {0}")]
    Io(#[from] io::Error),
    #[error("netlink: cannot decode a kernel message: {0}")]
    Decode(String),
    #[error("netlink: the dump was interrupted by a concurrent change")]
    DumpInterrupted,
}

/// Why the kernel refused one request: the errno and, when the kernel gave
/// one, its extended ACK message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub errno: i32,
    pub message: Option<String>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", nix::errno::Errno::from_raw(self.errno).desc())?;
        if let Some(m) = &self.message {
            write!(f, " ({m})")?;
        }
        Ok(())
    }
}

/// One request: the message and its `NLM_F_*` flags besides `REQUEST`.
#[derive(Debug, Clone)]
pub struct Request {
    pub message: RouteNetlinkMessage,
    pub flags: u16,
}

#[derive(Debug)]
pub struct Netlink {
    sock: Socket,
    port: u32,
    seq: u32,
    tx: Vec<u8>,
    rx: Vec<u8>,
}

/// Raises a netlink socket's receive buffer past `rmem_max` when allowed
/// (root), and to `rmem_max` otherwise.
pub fn grow_rcvbuf(sock: &Socket, bytes: usize) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(sock, sockopt::RcvBufForce, &bytes).is_err() {
        let _ = setsockopt(sock, sockopt::RcvBuf, &bytes);
    }
}

impl Netlink {
    pub fn open() -> Result<Self, NlError> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        let addr = sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        sock.set_ext_ack(true)?;
        sock.set_cap_ack(true)?;
        grow_rcvbuf(&sock, RCVBUF);
        Ok(Self { sock, port: addr.port_number(), seq: 1, tx: Vec::new(), rx: Vec::with_capacity(RECV_CHUNK) })
    }

    /// This socket's netlink port ID: the kernel stamps it on the
    /// notifications our own requests cause.
    pub fn port(&self) -> u32 {
        self.port
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    fn push(&mut self, message: RouteNetlinkMessage, flags: u16, seq: u32) {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        self.push_message(NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message)));
    }

    fn push_message(&mut self, mut m: NetlinkMessage<RouteNetlinkMessage>) {
        m.finalize();
        let start = self.tx.len();
        self.tx.resize(start + m.buffer_len(), 0);
        m.serialize(&mut self.tx[start..]);
    }

    /// Runs every request, in order, and returns each one's outcome.
    pub fn execute(&mut self, requests: Vec<Request>) -> Result<Vec<Result<(), Refusal>>, NlError> {
        let mut out = Vec::with_capacity(requests.len());
        let mut rest = requests.into_iter().peekable();
        while rest.peek().is_some() {
            self.tx.clear();
            let base = self.seq.wrapping_add(1);
            let mut n = 0;
            while self.tx.len() < BATCH_BYTES {
                let Some(r) = rest.next() else { break };
                let seq = self.next_seq();
                self.push(r.message, r.flags & !NLM_F_ACK, seq);
                n += 1;
            }
            let barrier = self.next_seq();
            let mut header = NetlinkHeader::default();
            header.flags = NLM_F_REQUEST | NLM_F_ACK;
            header.sequence_number = barrier;
            self.push_message(NetlinkMessage::new(header, NetlinkPayload::Noop));
            self.sock.send(&self.tx, 0)?;

            let mut results: Vec<Result<(), Refusal>> = vec![Ok(()); n];
            let mut done = false;
            while !done {
                self.recv()?;
                for (hdr, msg) in parse_all(&self.rx)? {
                    let NetlinkPayload::Error(e) = msg.payload else { continue };
                    if hdr.sequence_number == barrier {
                        done = true;
                        continue;
                    }
                    let idx = hdr.sequence_number.wrapping_sub(base) as usize;
                    if let (Some(code), Some(slot)) = (e.code, results.get_mut(idx)) {
                        *slot = Err(Refusal { errno: -code.get(), message: ext_ack_message(hdr.flags, &e.header) });
                    }
                }
            }
            out.extend(results);
        }
        Ok(out)
    }

    /// Runs one request that expects an ACK.
    pub fn request(&mut self, message: RouteNetlinkMessage, flags: u16) -> Result<Result<(), Refusal>, NlError> {
        let mut r = self.execute(vec![Request { message, flags }])?;
        Ok(r.pop().unwrap_or(Ok(())))
    }

    /// A single-object `RTM_GET*` (no dump): the kernel's answer, or why it
    /// refused (`ENODEV` for a link that does not exist, say).
    pub fn get(&mut self, message: RouteNetlinkMessage) -> Result<Result<Vec<RouteNetlinkMessage>, Refusal>, NlError> {
        self.tx.clear();
        let seq = self.next_seq();
        self.push(message, NLM_F_ACK, seq);
        self.sock.send(&self.tx, 0)?;
        let mut out = Vec::new();
        loop {
            self.recv()?;
            for (hdr, msg) in parse_all(&self.rx)? {
                if hdr.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    NetlinkPayload::Error(e) => {
                        return Ok(match e.code {
                            None => Ok(out),
                            Some(code) => {
                                Err(Refusal { errno: -code.get(), message: ext_ack_message(hdr.flags, &e.header) })
                            }
                        });
                    }
                    _ => {}
                }
            }
        }
    }

    /// A dump request (`NLM_F_DUMP`): every message of the answer.
    pub fn dump(&mut self, message: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>, NlError> {
        self.tx.clear();
        let seq = self.next_seq();
        self.push(message, NLM_F_DUMP, seq);
        self.sock.send(&self.tx, 0)?;
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            self.recv()?;
            for (hdr, msg) in parse_all(&self.rx)? {
                if hdr.sequence_number != seq {
                    continue;
                }
                interrupted |= hdr.flags & NLM_F_DUMP_INTR != 0;
                match msg.payload {
                    NetlinkPayload::Done(_) => {
                        return if interrupted { Err(NlError::DumpInterrupted) } else { Ok(out) };
                    }
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(NlError::Io(e.to_io())),
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    _ => {}
                }
            }
        }
    }

    fn recv(&mut self) -> Result<(), NlError> {
        self.rx.clear();
        self.rx.reserve(RECV_CHUNK);
        loop {
            match self.sock.recv(&mut self.rx, 0) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The raw netlink messages of a datagram, each checked against the
/// datagram's length; a truncated message ends the walk with an error.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Result<NetlinkBuffer<&[u8]>, NlError>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < 16 {
            return None;
        }
        match NetlinkBuffer::new_checked(rest) {
            Ok(m) => {
                let len = m.length() as usize;
                let msg = NetlinkBuffer::new(&rest[..len]);
                rest = &rest[len.next_multiple_of(4).min(rest.len())..];
                Some(Ok(msg))
            }
            Err(e) => {
                let n = rest.len();
                rest = &[];
                Some(Err(NlError::Decode(format!("{e} in a {n}-byte datagram"))))
            }
        }
    })
}

/// Splits a datagram into its netlink messages and decodes them.
pub fn parse_all(buf: &[u8]) -> Result<Vec<(NetlinkHeader, NetlinkMessage<RouteNetlinkMessage>)>, NlError> {
    let mut out = Vec::new();
    for raw in messages(buf) {
        let bytes = raw?.into_inner();
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) {
            Ok(m) => out.push((m.header, m)),
            // A message type this crate does not know: skip it, the rest
            // of the datagram is still good.
            Err(e) if NetlinkBuffer::new(bytes).message_type() >= 16 => {
                tracing::trace!("skipping an undecodable netlink message: {e}");
            }
            Err(e) => return Err(NlError::Decode(e.to_string())),
        }
    }
    Ok(out)
}

/// The extended ACK's message, from an error's payload: the original
/// header (the whole request unless capped) followed by attributes.
fn ext_ack_message(flags: u16, payload: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 || payload.len() < 16 {
        return None;
    }
    let orig_len = u32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
    let skip = if flags & NLM_F_CAPPED != 0 { 16 } else { orig_len.next_multiple_of(4) };
    NlasIterator::new(payload.get(skip..)?).map_while(Result::ok).find(|a| a.kind() == NLMSGERR_ATTR_MSG).map(|a| {
        let text = a.value();
        let text = text.split(|&b| b == 0).next().unwrap_or(text);
        String::from_utf8_lossy(text).into_owned()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ext_ack_message_is_found_after_a_capped_header() {
        let mut p = vec![0u8; 16];
        p[0] = 16;
        let msg = b"Nexthop has invalid gateway\0";
        let len = 4 + msg.len();
        p.extend_from_slice(&(len as u16).to_ne_bytes());
        p.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        p.extend_from_slice(msg);
        assert_eq!(ext_ack_message(NLM_F_ACK_TLVS | NLM_F_CAPPED, &p).as_deref(), Some("Nexthop has invalid gateway"));
        assert_eq!(ext_ack_message(NLM_F_CAPPED, &p), None);
        assert_eq!(ext_ack_message(NLM_F_ACK_TLVS | NLM_F_CAPPED, &p[..20]), None);
    }

    #[test]
    fn refusal_reads_like_the_errno_and_the_kernel_message() {
        let r = Refusal { errno: libc::ENETUNREACH, message: Some("Nexthop has invalid gateway".into()) };
        assert_eq!(r.to_string(), "Network is unreachable (Nexthop has invalid gateway)");
    }

    #[test]
    fn a_truncated_datagram_is_an_error_not_a_panic() {
        assert!(parse_all(&[40, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(parse_all(&[]).unwrap().is_empty());
    }
}
