//! A scripted BGP speaker for tests: real TCP, real codec, arbitrary bytes.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bgpd::packet::{frame_len, AfiSafi, Capability, DecodeCtx, EncodeCtx, Message, OpenMsg};

pub struct Speaker {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pub dctx: DecodeCtx,
    pub ectx: EncodeCtx,
}

impl Speaker {
    /// Connects from `src` (which must be an address of the current
    /// namespace) to `dst`.
    pub fn connect(src: IpAddr, dst: SocketAddr) -> std::io::Result<Self> {
        Self::connect_ttl(src, dst, None)
    }

    /// Connects with the given IP TTL on outgoing packets.
    pub fn connect_ttl(src: IpAddr, dst: SocketAddr, ttl: Option<u32>) -> std::io::Result<Self> {
        let s = socket2::Socket::new(socket2::Domain::for_address(dst), socket2::Type::STREAM, None)?;
        if let Some(t) = ttl {
            s.set_ttl_v4(t)?;
        }
        s.bind(&SocketAddr::new(src, 0).into())?;
        s.connect_timeout(&dst.into(), Duration::from_secs(5))?;
        let stream: TcpStream = s.into();
        stream.set_nodelay(true)?;
        Ok(Self { stream, buf: Vec::new(), dctx: DecodeCtx::default(), ectx: EncodeCtx::default() })
    }

    pub fn send(&mut self, m: &Message) {
        let b = m.encode(&self.ectx);
        self.stream.write_all(&b).unwrap();
    }

    /// Sends an UPDATE built from raw path attributes and IPv4 NLRI bytes.
    pub fn send_update_raw(&mut self, attrs: &[u8], nlri: &[u8]) {
        self.send_update_parts(&[], attrs, nlri);
    }

    /// Sends an UPDATE from raw IPv4 withdrawn routes, attributes and NLRI.
    pub fn send_update_parts(&mut self, withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) {
        let mut body = (withdrawn.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(withdrawn);
        body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        body.extend_from_slice(attrs);
        body.extend_from_slice(nlri);
        self.stream.write_all(&frame(2, &body)).unwrap();
    }

    /// The next message, or `None` on timeout or close.
    pub fn recv(&mut self, timeout: Duration) -> Option<Message> {
        let end = Instant::now() + timeout;
        loop {
            if let Ok(Some(len)) = frame_len(&self.buf) {
                let frame: Vec<u8> = self.buf.drain(..len).collect();
                return Message::decode(&frame, &self.dctx).ok();
            }
            let left = end.checked_duration_since(Instant::now())?;
            self.stream.set_read_timeout(Some(left.max(Duration::from_millis(10)))).ok()?;
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return None,
            }
        }
    }

    /// The NOTIFICATION's (code, subcode) if one arrives within `timeout`
    /// (other messages are skipped); `None` on silence or close.
    pub fn notification(&mut self, timeout: Duration) -> Option<(u8, u8)> {
        let end = Instant::now() + timeout;
        loop {
            match self.recv(end.checked_duration_since(Instant::now())?) {
                Some(Message::Notification(n)) => return Some((n.code, n.subcode)),
                Some(_) => continue,
                None => return None,
            }
        }
    }

    /// Whether the other side closed the connection within `timeout`
    /// without sending anything.
    pub fn closed_without_data(&mut self, timeout: Duration) -> bool {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let mut b = [0u8; 64];
        matches!(self.stream.read(&mut b), Ok(0))
    }

    /// OPEN, KEEPALIVE both ways, as a 4-octet AS speaker; returns the
    /// peer's OPEN.
    pub fn handshake(&mut self, asn: u32, id: Ipv4Addr, hold: u16) -> OpenMsg {
        let caps = vec![Capability::Multiprotocol(AfiSafi::IPV4_UNICAST), Capability::FourOctetAs(asn)];
        self.handshake_with(asn, id, hold, caps)
    }

    /// The handshake with the given capabilities. Without the 4-octet AS
    /// capability the session decodes and encodes 2-octet AS numbers.
    pub fn handshake_with(&mut self, asn: u32, id: Ipv4Addr, hold: u16, caps: Vec<Capability>) -> OpenMsg {
        self.try_handshake(asn, id, hold, caps, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The handshake, or what came instead of the peer's OPEN or KEEPALIVE.
    fn try_handshake(
        &mut self,
        asn: u32,
        id: Ipv4Addr,
        hold: u16,
        caps: Vec<Capability>,
        wait: Duration,
    ) -> Result<OpenMsg, String> {
        let four = caps.iter().any(|c| matches!(c, Capability::FourOctetAs(_)));
        let _ = self.stream.write_all(&Message::Open(OpenMsg::new(asn, hold, id, caps)).encode(&self.ectx));
        let open = match self.recv(wait) {
            Some(Message::Open(o)) => o,
            other => return Err(format!("expected OPEN, got {other:?}")),
        };
        self.dctx.four_octet_as = four;
        self.ectx.four_octet_as = four;
        self.send(&Message::Keepalive);
        match self.recv(wait) {
            Some(Message::Keepalive) => Ok(open),
            other => Err(format!("expected KEEPALIVE, got {other:?}")),
        }
    }

    /// Connects and completes the handshake, trying again (up to
    /// `attempts` times, 10 ms apart) while merled closes the connection:
    /// as a real peer does while merled still holds its previous session.
    pub fn establish(src: IpAddr, dst: SocketAddr, asn: u32, id: Ipv4Addr, attempts: usize) -> Option<Self> {
        for _ in 0..attempts {
            if let Ok(mut s) = Self::connect(src, dst) {
                let caps = vec![Capability::Multiprotocol(AfiSafi::IPV4_UNICAST), Capability::FourOctetAs(asn)];
                if s.try_handshake(asn, id, 90, caps, Duration::from_secs(5)).is_ok() {
                    return Some(s);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Connects (trying again while merled refuses, 10 ms apart, for up
    /// to 10 s) and sends `first` raw, for a handshake that is meant to
    /// fail.
    pub fn establish_raw(src: IpAddr, dst: SocketAddr, first: &[u8]) -> Self {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = Self::connect(src, dst) {
                if s.stream.write_all(first).is_ok() {
                    return s;
                }
            }
            assert!(Instant::now() < end, "merled refused every connection for 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A BGP message of type `kind` around `body`: marker, length, type.
pub fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((body.len() + 19) as u16).to_be_bytes());
    m.push(kind);
    m.extend_from_slice(body);
    m
}

/// Raw path attributes for scripted UPDATEs from AS 65002 at 10.1.0.2:
/// ORIGIN IGP, a 4-octet AS_PATH of 65002, NEXT_HOP 10.1.0.2.
pub const ORIGIN: &[u8] = &[0x40, 1, 1, 0];
pub const AS_PATH: &[u8] = &[0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xea];
pub const NEXT_HOP: &[u8] = &[0x40, 3, 4, 10, 1, 0, 2];
