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
        let mut m = vec![0xff; 16];
        m.extend_from_slice(&((body.len() + 19) as u16).to_be_bytes());
        m.push(2);
        m.extend_from_slice(&body);
        self.stream.write_all(&m).unwrap();
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
        let four = caps.iter().any(|c| matches!(c, Capability::FourOctetAs(_)));
        self.send(&Message::Open(OpenMsg::new(asn, hold, id, caps)));
        let open = match self.recv(Duration::from_secs(10)) {
            Some(Message::Open(o)) => o,
            other => panic!("expected OPEN, got {other:?}"),
        };
        self.dctx.four_octet_as = four;
        self.ectx.four_octet_as = four;
        self.send(&Message::Keepalive);
        match self.recv(Duration::from_secs(10)) {
            Some(Message::Keepalive) => {}
            other => panic!("expected KEEPALIVE, got {other:?}"),
        }
        open
    }

    /// Connects and completes the handshake, trying again (up to
    /// `attempts` times, 10 ms apart) while merled closes the connection:
    /// as a real peer does while merled still holds its previous session.
    pub fn establish(src: IpAddr, dst: SocketAddr, asn: u32, id: Ipv4Addr, attempts: usize) -> Option<Self> {
        for _ in 0..attempts {
            if let Ok(mut s) = Self::connect(src, dst) {
                let caps = vec![Capability::Multiprotocol(AfiSafi::IPV4_UNICAST), Capability::FourOctetAs(asn)];
                let _ = s.stream.write_all(&Message::Open(OpenMsg::new(asn, 90, id, caps)).encode(&s.ectx));
                if let Some(Message::Open(_)) = s.recv(Duration::from_secs(5)) {
                    s.dctx.four_octet_as = true;
                    s.ectx.four_octet_as = true;
                    s.send(&Message::Keepalive);
                    if let Some(Message::Keepalive) = s.recv(Duration::from_secs(5)) {
                        return Some(s);
                    }
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
