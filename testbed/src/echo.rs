//! Servers that answer every TCP connection or UDP datagram with who they
//! are and the peer address they saw, and the clients that ask them: how
//! the service tests tell which backend took a flow and whether the
//! client's own address reached it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::netns::Enter;

/// A running echo server; stopped when dropped.
#[derive(Debug)]
pub struct Echo {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<anyhow::Result<anyhow::Result<()>>>>,
}

impl Echo {
    /// Answers each connection on `bind` with `"{name} {peer}\n"`, then
    /// closes it.
    pub fn tcp(ns: &impl Enter, bind: SocketAddr, name: &str) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, name) = (stop.clone(), name.to_owned());
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = ns.enter(move || -> anyhow::Result<()> {
            let l = TcpListener::bind(bind);
            let ok = l.is_ok();
            let _ = tx.send(l.as_ref().map(|_| ()).map_err(|e| e.to_string()));
            if !ok {
                return Ok(());
            }
            let l = l?;
            l.set_nonblocking(true)?;
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, peer)) => {
                        c.set_nonblocking(false)?;
                        let _ = c.write_all(format!("{name} {peer}\n").as_bytes());
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        })?;
        rx.recv_timeout(Duration::from_secs(5))?.map_err(|e| anyhow::anyhow!("binding {bind}: {e}"))?;
        Ok(Self { stop, handle: Some(handle) })
    }

    /// Answers each datagram on `bind` with `"{name} {peer}\n"`.
    pub fn udp(ns: &impl Enter, bind: SocketAddr, name: &str) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, name) = (stop.clone(), name.to_owned());
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = ns.enter(move || -> anyhow::Result<()> {
            let u = UdpSocket::bind(bind);
            let _ = tx.send(u.as_ref().map(|_| ()).map_err(|e| e.to_string()));
            let Ok(u) = u else { return Ok(()) };
            u.set_read_timeout(Some(Duration::from_millis(20)))?;
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if let Ok((_, peer)) = u.recv_from(&mut buf) {
                    let _ = u.send_to(format!("{name} {peer}\n").as_bytes(), peer);
                }
            }
            Ok(())
        })?;
        rx.recv_timeout(Duration::from_secs(5))?.map_err(|e| anyhow::anyhow!("binding {bind}: {e}"))?;
        Ok(Self { stop, handle: Some(handle) })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A server of long connections: each gets `"{name}\n"`, then every byte
/// it sends comes back, until it closes.
#[derive(Debug)]
pub struct Stream {
    _echo: Echo,
}

impl Stream {
    pub fn start(ns: &impl Enter, bind: SocketAddr, name: &str) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, name) = (stop.clone(), name.to_owned());
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = ns.enter(move || -> anyhow::Result<()> {
            let l = TcpListener::bind(bind);
            let _ = tx.send(l.as_ref().map(|_| ()).map_err(|e| e.to_string()));
            let Ok(l) = l else { return Ok(()) };
            l.set_nonblocking(true)?;
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        c.set_nonblocking(false)?;
                        let (name, s) = (name.clone(), s.clone());
                        std::thread::spawn(move || {
                            let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
                            if c.write_all(format!("{name}\n").as_bytes()).is_err() {
                                return;
                            }
                            let mut buf = vec![0u8; 65536];
                            while !s.load(Ordering::Relaxed) {
                                match c.read(&mut buf) {
                                    Ok(0) => return,
                                    Ok(n) => {
                                        if c.write_all(&buf[..n]).is_err() {
                                            return;
                                        }
                                    }
                                    Err(e)
                                        if matches!(
                                            e.kind(),
                                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                        ) => {}
                                    Err(_) => return,
                                }
                            }
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        })?;
        rx.recv_timeout(Duration::from_secs(5))?.map_err(|e| anyhow::anyhow!("binding {bind}: {e}"))?;
        Ok(Self { _echo: Echo { stop, handle: Some(handle) } })
    }
}

/// A long connection to a [`Stream`] server, made in a namespace.
#[derive(Debug)]
pub struct Conn {
    pub server: String,
    s: TcpStream,
}

impl Conn {
    pub fn open(ns: &impl Enter, to: SocketAddr) -> anyhow::Result<Self> {
        ns.enter(move || -> anyhow::Result<Conn> {
            let s = TcpStream::connect_timeout(&to, Duration::from_secs(3)).with_context(|| format!("connect {to}"))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut line = Vec::new();
            let mut b = [0u8; 1];
            while b[0] != b'\n' {
                (&s).read_exact(&mut b).with_context(|| format!("the greeting of {to}"))?;
                line.push(b[0]);
            }
            Ok(Conn { server: String::from_utf8_lossy(&line).trim().to_owned(), s })
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("client thread panicked"))??
    }

    /// Sends `data` and reads it back.
    pub fn echo(&mut self, data: &[u8]) -> anyhow::Result<()> {
        self.s.write_all(data)?;
        let mut back = vec![0u8; data.len()];
        self.s.read_exact(&mut back)?;
        anyhow::ensure!(back == data, "the echo differs");
        Ok(())
    }
}

/// What an echo server said: its name and the peer address it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub server: String,
    pub peer: SocketAddr,
    /// The address the answer came from, as the client's socket saw it.
    pub from: SocketAddr,
}

fn parse(text: &str, from: SocketAddr) -> anyhow::Result<Answer> {
    let mut it = text.split_whitespace();
    let server = it.next().context("empty answer")?.to_owned();
    let peer = it.next().context("no peer in the answer")?.parse().with_context(|| format!("answer {text:?}"))?;
    Ok(Answer { server, peer, from })
}

/// Connects from `ns` to `to` and reads the answer.
pub fn ask_tcp(ns: &impl Enter, to: SocketAddr) -> anyhow::Result<Answer> {
    ns.enter(move || -> anyhow::Result<Answer> {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3)).with_context(|| format!("connect {to}"))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut text = String::new();
        s.read_to_string(&mut text).with_context(|| format!("reading from {to}"))?;
        parse(&text, s.peer_addr()?)
    })?
    .join()
    .map_err(|_| anyhow::anyhow!("client thread panicked"))??
}

/// Sends one datagram from `ns` to `to` and reads the answer; up to three
/// tries, since UDP may lose one.
pub fn ask_udp(ns: &impl Enter, to: SocketAddr) -> anyhow::Result<Answer> {
    ns.enter(move || -> anyhow::Result<Answer> {
        let bind: SocketAddr = if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse()?;
        let u = UdpSocket::bind(bind)?;
        u.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut buf = [0u8; 2048];
        let mut last = None;
        for _ in 0..3 {
            u.send_to(b"who", to)?;
            match u.recv_from(&mut buf) {
                Ok((n, from)) => return parse(std::str::from_utf8(&buf[..n])?, from),
                Err(e) => last = Some(e),
            }
        }
        Err(anyhow::anyhow!("no answer from {to}: {last:?}"))
    })?
    .join()
    .map_err(|_| anyhow::anyhow!("client thread panicked"))??
}
