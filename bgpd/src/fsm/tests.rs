//! Socket-free tests of the session state machine.

use super::*;
use crate::packet::error::{cease_sub, code};
use crate::packet::{AfiSafi, GracefulRestart};

const LOCAL_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn cfg() -> FsmConfig {
    let mut c = FsmConfig::new(64512, LOCAL_ID, 65001);
    c.capabilities = vec![Capability::Multiprotocol(AfiSafi::IPV4_UNICAST), Capability::FourOctetAs(64512)];
    c.jitter_seed = 7;
    c
}

fn peer_open(id: [u8; 4], hold: u16) -> Message {
    Message::Open(OpenMsg::new(65001, hold, Ipv4Addr::from(id), vec![Capability::FourOctetAs(65001)]))
}

fn connect_id(actions: &[Action]) -> ConnId {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Connect(id) => Some(*id),
            _ => None,
        })
        .expect("a Connect action")
}

fn timer_of(actions: &[Action], t: Timer) -> Option<Duration> {
    actions.iter().rev().find_map(|a| match a {
        Action::StartTimer(x, d) if *x == t => Some(*d),
        _ => None,
    })
}

fn sent(actions: &[Action]) -> Vec<(ConnId, Message)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(c, m) => Some((*c, m.clone())),
            _ => None,
        })
        .collect()
}

fn notifications(actions: &[Action]) -> Vec<NotificationMsg> {
    sent(actions)
        .into_iter()
        .filter_map(|(_, m)| match m {
            Message::Notification(n) => Some(n),
            _ => None,
        })
        .collect()
}

/// Drives a fresh machine to Established over an outbound connection.
fn established(cfg: FsmConfig, peer_hold: u16) -> (Fsm, ConnId) {
    let mut f = Fsm::new(cfg);
    let a = f.handle(Event::ManualStart);
    let c = connect_id(&a);
    f.handle(Event::TcpCrAcked(c));
    f.handle(Event::Message(c, peer_open([10, 0, 0, 2], peer_hold)));
    let a = f.handle(Event::Message(c, Message::Keepalive));
    assert!(a.iter().any(|x| matches!(x, Action::Established(..))));
    (f, c)
}

#[test]
fn active_open_walks_every_state_to_established() {
    let mut f = Fsm::new(cfg());
    assert_eq!(f.state(), State::Idle);
    let a = f.handle(Event::ManualStart);
    assert_eq!(f.state(), State::Connect);
    let c = connect_id(&a);
    assert!(timer_of(&a, Timer::ConnectRetry).is_some());

    let a = f.handle(Event::TcpCrAcked(c));
    assert_eq!(f.state(), State::OpenSent);
    assert!(matches!(sent(&a)[0].1, Message::Open(ref o) if o.hold_time == 90 && o.bgp_id == LOCAL_ID));
    assert_eq!(timer_of(&a, Timer::Hold(c)), Some(OPEN_HOLD_TIME));
    assert!(a.contains(&Action::StopTimer(Timer::ConnectRetry)));

    let a = f.handle(Event::Message(c, peer_open([10, 0, 0, 2], 30)));
    assert_eq!(f.state(), State::OpenConfirm);
    assert_eq!(sent(&a), vec![(c, Message::Keepalive)]);
    // Negotiated hold time is the smaller one; keepalive a third of it.
    assert_eq!(timer_of(&a, Timer::Hold(c)), Some(Duration::from_secs(30)));
    assert_eq!(timer_of(&a, Timer::Keepalive(c)), Some(Duration::from_secs(10)));

    let a = f.handle(Event::Message(c, Message::Keepalive));
    assert_eq!(f.state(), State::Established);
    let n = a.iter().find_map(|x| match x {
        Action::Established(id, n) => Some((*id, n.clone())),
        _ => None,
    });
    let (id, n) = n.unwrap();
    assert_eq!(id, c);
    assert_eq!((n.hold_time, n.remote_as, n.four_octet_as, n.ebgp), (30, 65001, true, true));

    // Keepalive timer sends a KEEPALIVE and re-arms.
    let a = f.handle(Event::TimerExpired(Timer::Keepalive(c)));
    assert_eq!(sent(&a), vec![(c, Message::Keepalive)]);
    assert_eq!(timer_of(&a, Timer::Keepalive(c)), Some(Duration::from_secs(10)));
    // UPDATEs go to the RIB and restart the hold timer.
    let a = f.handle(Event::Message(c, Message::Update(UpdateMsg::default())));
    assert!(a.iter().any(|x| matches!(x, Action::Update(_))));
    assert_eq!(timer_of(&a, Timer::Hold(c)), Some(Duration::from_secs(30)));
}

#[test]
fn hold_time_zero_means_no_keepalives() {
    let (mut f, c) = established(cfg(), 0);
    assert_eq!(f.negotiated().unwrap().hold_time, 0);
    let a = f.handle(Event::TimerExpired(Timer::Keepalive(c)));
    assert!(sent(&a).is_empty());
    let a = f.handle(Event::Message(c, Message::Keepalive));
    assert!(timer_of(&a, Timer::Hold(c)).is_none());
}

#[test]
fn hold_timer_expiry_sends_notification_and_restarts_after_idle_hold() {
    let (mut f, c) = established(cfg(), 90);
    let a = f.handle(Event::TimerExpired(Timer::Hold(c)));
    assert_eq!(notifications(&a)[0].code, code::HOLD_TIMER_EXPIRED);
    assert!(a.contains(&Action::SessionDown(DownReason::HoldTimerExpired)));
    assert!(a.contains(&Action::Close(c)));
    assert_eq!(f.state(), State::Idle);
    let d = timer_of(&a, Timer::IdleHold).unwrap();
    assert!(d <= Duration::from_secs(1) && d >= Duration::from_millis(750));
    // Inbound connections are refused while Idle.
    let a = f.handle(Event::TcpConnectionConfirmed(ConnId(99)));
    assert_eq!(a, vec![Action::Close(ConnId(99))]);
    let a = f.handle(Event::TimerExpired(Timer::IdleHold));
    assert_eq!(f.state(), State::Connect);
    connect_id(&a);
}

#[test]
fn idle_hold_doubles_on_flaps_and_resets_when_stable() {
    let mut f = Fsm::new(cfg());
    let mut waits = Vec::new();
    f.handle(Event::ManualStart);
    for _ in 0..10 {
        let c = ConnId(f.next_conn - 1);
        f.handle(Event::TcpCrAcked(c));
        let a = f.handle(Event::TimerExpired(Timer::Hold(c)));
        waits.push(timer_of(&a, Timer::IdleHold).unwrap());
        f.handle(Event::TimerExpired(Timer::IdleHold));
    }
    // Nominal waits 1, 2, 4, ... capped at 120 s, each jittered to 75–100 %.
    for (i, w) in waits.iter().enumerate() {
        let nominal = Duration::from_secs((1u64 << i).min(120));
        assert!(*w <= nominal && *w >= nominal.mul_f64(0.75), "wait {i}: {w:?} vs {nominal:?}");
    }
    assert_eq!(f.idle_hold_time(), Duration::from_secs(120));
    let c = ConnId(f.next_conn - 1);
    f.handle(Event::TcpCrAcked(c));
    f.handle(Event::Message(c, peer_open([10, 0, 0, 2], 90)));
    let a = f.handle(Event::Message(c, Message::Keepalive));
    assert_eq!(timer_of(&a, Timer::Stable), Some(Duration::from_secs(60)));
    f.handle(Event::TimerExpired(Timer::Stable));
    assert_eq!(f.idle_hold_time(), Duration::from_secs(1));
}

#[test]
fn connect_retry_backs_off_with_jitter() {
    let mut f = Fsm::new(cfg());
    let a = f.handle(Event::ManualStart);
    let mut delays = vec![timer_of(&a, Timer::ConnectRetry).unwrap()];
    let mut c = connect_id(&a);
    for _ in 0..6 {
        // The connection attempt fails: Active, retry timer re-armed.
        // The connection attempt fails: Active until the retry timer fires.
        let a = f.handle(Event::TcpConnectionFails(c));
        assert_eq!(f.state(), State::Active);
        assert!(timer_of(&a, Timer::ConnectRetry).is_none());
        let a = f.handle(Event::TimerExpired(Timer::ConnectRetry));
        assert_eq!(f.state(), State::Connect);
        delays.push(timer_of(&a, Timer::ConnectRetry).unwrap());
        c = connect_id(&a);
    }
    let nominal = [5u64, 10, 20, 40, 60, 60, 60];
    for (d, n) in delays.iter().zip(nominal) {
        let n = Duration::from_secs(n);
        assert!(*d <= n && *d >= n.mul_f64(0.75), "{d:?} vs {n:?}");
    }
    // Jitter actually varies the delays.
    assert_ne!(delays[4], delays[5]);
}

#[test]
fn connect_retry_expiry_in_connect_abandons_the_attempt() {
    let mut f = Fsm::new(cfg());
    let c1 = connect_id(&f.handle(Event::ManualStart));
    let a = f.handle(Event::TimerExpired(Timer::ConnectRetry));
    assert!(a.contains(&Action::Close(c1)));
    let c2 = connect_id(&a);
    assert_ne!(c1, c2);
    // A late completion of the abandoned attempt is closed.
    assert_eq!(f.handle(Event::TcpCrAcked(c1)), vec![Action::Close(c1)]);
}

#[test]
fn passive_peer_waits_for_the_peer() {
    let mut c = cfg();
    c.passive = true;
    let mut f = Fsm::new(c);
    let a = f.handle(Event::ManualStart);
    assert!(a.iter().all(|x| !matches!(x, Action::Connect(_))));
    assert_eq!(f.state(), State::Active);
    assert!(f.handle(Event::TimerExpired(Timer::ConnectRetry)).is_empty());
    let id = f.new_conn_id();
    let a = f.handle(Event::TcpConnectionConfirmed(id));
    assert_eq!(f.state(), State::OpenSent);
    assert!(matches!(sent(&a)[0].1, Message::Open(_)));
}

/// Both sides connect at once; each connection gets an OPEN.
fn collision(local_id: [u8; 4], remote_id: [u8; 4]) -> (Vec<Action>, ConnId, ConnId) {
    let mut c = cfg();
    c.local_id = Ipv4Addr::from(local_id);
    let mut f = Fsm::new(c);
    let out = connect_id(&f.handle(Event::ManualStart));
    f.handle(Event::TcpCrAcked(out));
    let inb = f.new_conn_id();
    f.handle(Event::TcpConnectionConfirmed(inb));
    assert_eq!(f.conns.len(), 2);
    f.handle(Event::Message(out, peer_open(remote_id, 90)));
    let a = f.handle(Event::Message(inb, peer_open(remote_id, 90)));
    assert_eq!(f.conns.len(), 1);
    (a, out, inb)
}

#[test]
fn collision_keeps_the_connection_of_the_higher_identifier() {
    // Local identifier higher: our outbound connection survives.
    let (a, _out, inb) = collision([10, 0, 0, 9], [10, 0, 0, 2]);
    assert!(a.contains(&Action::Close(inb)));
    let n = notifications(&a);
    assert_eq!((n[0].code, n[0].subcode), (code::CEASE, cease_sub::CONNECTION_COLLISION_RESOLUTION));
    // Local identifier lower: the peer's connection survives.
    let (a, out, inb) = collision([10, 0, 0, 1], [10, 0, 0, 2]);
    assert!(a.contains(&Action::Close(out)));
    assert!(!a.contains(&Action::Close(inb)));
}

#[test]
fn established_session_refuses_new_connections_without_graceful_restart() {
    let (mut f, c) = established(cfg(), 90);
    let id = f.new_conn_id();
    assert_eq!(f.handle(Event::TcpConnectionConfirmed(id)), vec![Action::Close(id)]);
    assert_eq!(f.established_conn(), Some(c));
}

#[test]
fn new_connection_with_graceful_restart_replaces_the_session() {
    let mut c = cfg();
    let gr = GracefulRestart { restart_state: false, notification: true, restart_time: 120, families: vec![] };
    c.capabilities.push(Capability::GracefulRestart(gr.clone()));
    let mut f = Fsm::new(c);
    let out = connect_id(&f.handle(Event::ManualStart));
    f.handle(Event::TcpCrAcked(out));
    let open = OpenMsg::new(65001, 90, Ipv4Addr::new(10, 0, 0, 2), vec![Capability::GracefulRestart(gr)]);
    f.handle(Event::Message(out, Message::Open(open)));
    f.handle(Event::Message(out, Message::Keepalive));
    assert!(f.negotiated().unwrap().graceful_restart);
    let id = f.new_conn_id();
    let a = f.handle(Event::TcpConnectionConfirmed(id));
    assert!(a.contains(&Action::SessionDown(DownReason::PeerRestarted)));
    assert!(a.contains(&Action::Close(out)));
    assert_eq!(f.state(), State::OpenSent);
}

#[test]
fn open_errors_send_the_right_notification() {
    let mut f = Fsm::new(cfg());
    let c = connect_id(&f.handle(Event::ManualStart));
    f.handle(Event::TcpCrAcked(c));
    let wrong_as = Message::Open(OpenMsg::new(65009, 90, Ipv4Addr::new(10, 0, 0, 2), vec![]));
    let a = f.handle(Event::Message(c, wrong_as));
    let n = &notifications(&a)[0];
    assert_eq!((n.code, n.subcode, &n.data[..]), (code::OPEN_MESSAGE, 2, &[0xfd, 0xf1][..]));
    assert_eq!(f.state(), State::Idle);

    // iBGP peer with our own identifier.
    let mut c2 = cfg();
    c2.peer_as = 64512;
    let mut f = Fsm::new(c2);
    let c = connect_id(&f.handle(Event::ManualStart));
    f.handle(Event::TcpCrAcked(c));
    let a = f.handle(Event::Message(c, Message::Open(OpenMsg::new(64512, 90, LOCAL_ID, vec![]))));
    assert_eq!(notifications(&a)[0].subcode, 3);
}

#[test]
fn unexpected_messages_are_fsm_errors() {
    let mut f = Fsm::new(cfg());
    let c = connect_id(&f.handle(Event::ManualStart));
    f.handle(Event::TcpCrAcked(c));
    let a = f.handle(Event::Message(c, Message::Keepalive));
    assert_eq!((notifications(&a)[0].code, notifications(&a)[0].subcode), (code::FSM, 1));

    let (mut f, c) = established(cfg(), 90);
    let a = f.handle(Event::Message(c, peer_open([10, 0, 0, 2], 90)));
    assert_eq!((notifications(&a)[0].code, notifications(&a)[0].subcode), (code::FSM, 3));
    assert!(a.iter().any(|x| matches!(x, Action::SessionDown(DownReason::NotificationSent(_)))));
}

#[test]
fn decode_errors_reset_with_their_notification() {
    let (mut f, c) = established(cfg(), 90);
    let a = f.handle(Event::DecodeError(c, DecodeError::BadMessageType(9)));
    let n = &notifications(&a)[0];
    assert_eq!((n.code, n.subcode, &n.data[..]), (1, 3, &[9][..]));
    assert_eq!(f.state(), State::Idle);
}

#[test]
fn notification_received_takes_the_session_down() {
    let (mut f, c) = established(cfg(), 90);
    let n = NotificationMsg::cease_with_communication(cease_sub::ADMINISTRATIVE_SHUTDOWN, "bye");
    let a = f.handle(Event::Message(c, Message::Notification(n.clone())));
    assert!(a.contains(&Action::SessionDown(DownReason::NotificationReceived(n))));
    assert!(notifications(&a).is_empty());
    assert_eq!(f.state(), State::Idle);
}

#[test]
fn stop_sends_cease_with_communication_and_stays_idle() {
    let (mut f, c) = established(cfg(), 90);
    let n = NotificationMsg::cease_with_communication(cease_sub::ADMINISTRATIVE_SHUTDOWN, "maintenance");
    let a = f.handle(Event::Stop { notification: Some(n.clone()), restart_after: None });
    assert_eq!(notifications(&a), vec![n.clone()]);
    assert!(a.contains(&Action::Close(c)));
    assert!(a.contains(&Action::SessionDown(DownReason::NotificationSent(n))));
    assert_eq!(f.state(), State::Idle);
    assert!(f.handle(Event::TimerExpired(Timer::IdleHold)).is_empty());
    assert!(f.handle(Event::TimerExpired(Timer::ConnectRetry)).is_empty());
}

#[test]
fn stop_with_restart_comes_back_after_the_delay() {
    let (mut f, _c) = established(cfg(), 90);
    let a = f.handle(Event::Stop { notification: None, restart_after: Some(Duration::from_secs(30)) });
    assert_eq!(timer_of(&a, Timer::IdleHold), Some(Duration::from_secs(30)));
    assert_eq!(f.state(), State::Idle);
    f.handle(Event::TimerExpired(Timer::IdleHold));
    assert_eq!(f.state(), State::Connect);
}

#[test]
fn connection_loss_in_open_sent_returns_to_active() {
    let mut f = Fsm::new(cfg());
    let c = connect_id(&f.handle(Event::ManualStart));
    f.handle(Event::TcpCrAcked(c));
    let a = f.handle(Event::TcpConnectionFails(c));
    assert_eq!(f.state(), State::Active);
    assert!(timer_of(&a, Timer::ConnectRetry).is_some());
    assert!(a.iter().all(|x| !matches!(x, Action::SessionDown(_))));
}

#[test]
fn stale_timers_and_unknown_connections_are_ignored() {
    let (mut f, c) = established(cfg(), 90);
    assert!(f.handle(Event::TimerExpired(Timer::Hold(ConnId(999)))).is_empty());
    assert!(f.handle(Event::Message(ConnId(999), Message::Keepalive)).is_empty());
    assert!(f.handle(Event::TcpConnectionFails(ConnId(999))).is_empty());
    assert_eq!(f.established_conn(), Some(c));
}

#[test]
fn collision_loser_never_gets_a_keepalive() {
    // Local identifier lower: the inbound connection must win. The OPEN on
    // our outbound connection arrives second, so that connection loses at
    // once with a Cease and no KEEPALIVE.
    let mut c = cfg();
    c.local_id = Ipv4Addr::new(10, 0, 0, 1);
    let mut f = Fsm::new(c);
    let out = connect_id(&f.handle(Event::ManualStart));
    f.handle(Event::TcpCrAcked(out));
    let inb = f.new_conn_id();
    f.handle(Event::TcpConnectionConfirmed(inb));
    f.handle(Event::Message(inb, peer_open([10, 0, 0, 2], 90)));
    let a = f.handle(Event::Message(out, peer_open([10, 0, 0, 2], 90)));
    assert!(!sent(&a).iter().any(|(c, m)| *c == out && *m == Message::Keepalive), "{a:?}");
    assert!(a.contains(&Action::Close(out)));
    assert_eq!(notifications(&a)[0].subcode, cease_sub::CONNECTION_COLLISION_RESOLUTION);
    let a = f.handle(Event::Message(inb, Message::Keepalive));
    assert!(a.iter().any(|x| matches!(x, Action::Established(id, _) if *id == inb)));
}

#[test]
fn equal_identifiers_break_the_tie_on_as_number() {
    // eBGP with the same identifier on both sides (RFC 6286): the side with
    // the higher AS keeps its own connection. Local AS 64512 < 65001, so the
    // peer's (inbound) connection survives.
    let mut c = cfg();
    c.local_id = Ipv4Addr::new(10, 0, 0, 7);
    let mut f = Fsm::new(c);
    let out = connect_id(&f.handle(Event::ManualStart));
    f.handle(Event::TcpCrAcked(out));
    let inb = f.new_conn_id();
    f.handle(Event::TcpConnectionConfirmed(inb));
    f.handle(Event::Message(out, peer_open([10, 0, 0, 7], 90)));
    let a = f.handle(Event::Message(inb, peer_open([10, 0, 0, 7], 90)));
    assert!(a.contains(&Action::Close(out)));
    assert_eq!(f.conns.len(), 1);
    assert_eq!(f.conns[0].id, inb);
}

#[test]
fn an_active_peer_always_keeps_a_way_to_reconnect() {
    // Outbound still connecting, inbound in OpenSent: ConnectRetry fires
    // and is skipped. Then both connections fail. The machine must re-arm
    // ConnectRetry rather than sit in Active with no timer.
    let mut f = Fsm::new(cfg());
    let out = connect_id(&f.handle(Event::ManualStart));
    let inb = f.new_conn_id();
    f.handle(Event::TcpConnectionConfirmed(inb));
    assert!(f.handle(Event::TimerExpired(Timer::ConnectRetry)).iter().all(|a| !matches!(a, Action::Connect(_))));
    f.handle(Event::TcpConnectionFails(inb));
    let a = f.handle(Event::TcpConnectionFails(out));
    assert_eq!(f.state(), State::Active);
    assert!(f.connect_retry_armed, "{a:?}");
    let a = f.handle(Event::TimerExpired(Timer::ConnectRetry));
    connect_id(&a);
}

#[test]
fn hold_time_zero_keeps_the_open_hold_timer_until_established() {
    let mut f = Fsm::new(cfg());
    let c = connect_id(&f.handle(Event::ManualStart));
    f.handle(Event::TcpCrAcked(c));
    let a = f.handle(Event::Message(c, peer_open([10, 0, 0, 2], 0)));
    assert!(!a.contains(&Action::StopTimer(Timer::Hold(c))));
    // A peer that never sends its KEEPALIVE is dropped by the OPEN hold timer.
    let a = f.handle(Event::TimerExpired(Timer::Hold(c)));
    assert_eq!(notifications(&a)[0].code, code::HOLD_TIMER_EXPIRED);
    // Normal path: the KEEPALIVE stops it.
    let mut f = Fsm::new(cfg());
    let c = connect_id(&f.handle(Event::ManualStart));
    f.handle(Event::TcpCrAcked(c));
    f.handle(Event::Message(c, peer_open([10, 0, 0, 2], 0)));
    let a = f.handle(Event::Message(c, Message::Keepalive));
    assert!(a.contains(&Action::StopTimer(Timer::Hold(c))));
}

/// A passive peer brought Established by the peer's connection.
fn passive_established() -> (Fsm, ConnId) {
    let mut c = cfg();
    c.passive = true;
    let mut f = Fsm::new(c);
    assert!(f.handle(Event::ManualStart).iter().all(|a| !matches!(a, Action::Connect(_))));
    let id = f.new_conn_id();
    f.handle(Event::TcpConnectionConfirmed(id));
    f.handle(Event::Message(id, peer_open([10, 0, 0, 2], 90)));
    let a = f.handle(Event::Message(id, Message::Keepalive));
    assert!(a.iter().any(|x| matches!(x, Action::Established(..))));
    (f, id)
}

#[test]
fn a_damped_passive_peer_still_accepts_the_peers_connection() {
    let (mut f, c) = passive_established();
    let a = f.handle(Event::TimerExpired(Timer::Hold(c)));
    assert!(timer_of(&a, Timer::IdleHold).is_some(), "damped");
    let id = f.new_conn_id();
    let a = f.handle(Event::TcpConnectionConfirmed(id));
    assert!(!a.contains(&Action::Close(id)), "accepted during the wait: {a:?}");
    assert!(a.contains(&Action::StopTimer(Timer::IdleHold)));
    assert!(a.iter().any(|x| matches!(x, Action::Send(i, Message::Open(_)) if *i == id)));
}

#[test]
fn a_restart_delay_refuses_inbound_connections_even_when_passive() {
    let (mut f, _) = passive_established();
    f.handle(Event::Stop { notification: None, restart_after: Some(Duration::from_secs(60)) });
    let id = f.new_conn_id();
    assert_eq!(f.handle(Event::TcpConnectionConfirmed(id)), vec![Action::Close(id)]);
}

#[test]
fn damping_off_retries_after_connect_retry_and_accepts_at_once() {
    let mut c = cfg();
    c.idle_hold = Duration::ZERO;
    c.idle_hold_max = Duration::ZERO;
    let (mut f, conn) = established(c, 90);
    let a = f.handle(Event::TimerExpired(Timer::Hold(conn)));
    assert!(timer_of(&a, Timer::IdleHold).is_none(), "no damping: {a:?}");
    assert!(timer_of(&a, Timer::ConnectRetry).is_some(), "the next attempt is ConnectRetry's");
    let id = f.new_conn_id();
    let a = f.handle(Event::TcpConnectionConfirmed(id));
    assert!(!a.contains(&Action::Close(id)), "{a:?}");
}

#[test]
fn a_damping_edit_applies_within_the_new_bounds() {
    let mut f = Fsm::new(cfg());
    f.handle(Event::ManualStart);
    for _ in 0..8 {
        let c = ConnId(f.next_conn - 1);
        f.handle(Event::TcpCrAcked(c));
        f.handle(Event::TimerExpired(Timer::Hold(c)));
        f.handle(Event::TimerExpired(Timer::IdleHold));
    }
    assert_eq!(f.idle_hold_time(), Duration::from_secs(120));
    let mut c = cfg();
    c.idle_hold = Duration::from_secs(5);
    c.idle_hold_max = Duration::from_secs(30);
    f.set_config(c);
    assert_eq!(f.idle_hold_time(), Duration::from_secs(30));
    let mut c = cfg();
    c.idle_hold = Duration::ZERO;
    c.idle_hold_max = Duration::ZERO;
    f.set_config(c);
    assert_eq!(f.idle_hold_time(), Duration::ZERO, "off");
}
