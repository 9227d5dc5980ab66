//! Route filters with Calico's BGPFilter semantics: ordered rules, the first
//! matching rule decides, and a route no rule matches is accepted.
//!
//! A rule matches on any combination of: a CIDR with an operator (Equal,
//! NotEqual, In, NotIn), a prefix-length range, the route's source (learned
//! from a peer, as opposed to originated here), the session type (iBGP or
//! eBGP), a community, and a prefix of the AS path. Accept may add a
//! community and prepend AS numbers; Reject drops the route.

use ipnet::IpNet;

use crate::packet::{AsPath, Community, LargeCommunity};
use crate::rib::RouteAttrs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOperator {
    /// The route's prefix is the CIDR.
    Equal,
    NotEqual,
    /// The route's prefix is the CIDR or inside it.
    In,
    NotIn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerType {
    Ibgp,
    Ebgp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyCommunity {
    Standard(Community),
    Large(LargeCommunity),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Accept { add_community: Option<AnyCommunity>, prepend_as_path: Vec<u32> },
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub cidr: Option<(IpNet, MatchOperator)>,
    /// Inclusive prefix-length range.
    pub prefix_length: Option<(u8, u8)>,
    /// Only routes learned from peers (Calico's `source: RemotePeers`).
    pub remote_peers_only: bool,
    pub peer_type: Option<PeerType>,
    pub community: Option<AnyCommunity>,
    pub as_path_prefix: Vec<u32>,
    pub action: Action,
}

/// What a route looks like to the rules.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub prefix: &'a IpNet,
    pub attrs: &'a RouteAttrs,
    /// The route was learned from a peer (not originated here).
    pub learned: bool,
    /// The session the filter is attached to.
    pub peer_type: PeerType,
}

impl Rule {
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        if let Some((cidr, op)) = self.cidr {
            let same_family = cidr.addr().is_ipv4() == s.prefix.addr().is_ipv4();
            let hit = match op {
                MatchOperator::Equal => same_family && *s.prefix == cidr,
                MatchOperator::NotEqual => same_family && *s.prefix != cidr,
                MatchOperator::In => same_family && cidr.contains(s.prefix),
                MatchOperator::NotIn => same_family && !cidr.contains(s.prefix),
            };
            if !hit {
                return false;
            }
        }
        if let Some((min, max)) = self.prefix_length {
            let l = s.prefix.prefix_len();
            if l < min || l > max {
                return false;
            }
        }
        if self.remote_peers_only && !s.learned {
            return false;
        }
        if self.peer_type.is_some_and(|t| t != s.peer_type) {
            return false;
        }
        match &self.community {
            Some(AnyCommunity::Standard(c)) if !s.attrs.communities.contains(c) => return false,
            Some(AnyCommunity::Large(c)) if !s.attrs.large_communities.contains(c) => return false,
            _ => {}
        }
        if !self.as_path_prefix.is_empty() {
            let flat = s.attrs.as_path.flat();
            if !flat.starts_with(&self.as_path_prefix) {
                return false;
            }
        }
        true
    }
}

/// The verdict of a rule list: `None` to reject, else the (possibly
/// changed) attributes. Unchanged attributes are returned as `Ok(None)` so
/// the caller can keep its shared copy.
pub fn evaluate(rules: &[Rule], s: &Subject<'_>) -> Verdict {
    for r in rules {
        if r.matches(s) {
            return match &r.action {
                Action::Reject => Verdict::Reject,
                Action::Accept { add_community: None, prepend_as_path } if prepend_as_path.is_empty() => {
                    Verdict::Accept
                }
                Action::Accept { add_community, prepend_as_path } => {
                    let mut a = s.attrs.clone();
                    match add_community {
                        Some(AnyCommunity::Standard(c)) if !a.communities.contains(c) => a.communities.push(*c),
                        Some(AnyCommunity::Large(c)) if !a.large_communities.contains(c) => {
                            a.large_communities.push(*c)
                        }
                        _ => {}
                    }
                    if !prepend_as_path.is_empty() {
                        let mut p = AsPath::sequence(prepend_as_path.clone());
                        let mut rest = a.as_path.clone();
                        if let (Some(first), Some(last)) = (rest.segments.first_mut(), p.segments.last_mut()) {
                            if first.kind == crate::packet::SegmentType::AsSequence
                                && first.asns.len() + last.asns.len() <= 255
                            {
                                last.asns.append(&mut first.asns);
                                rest.segments.remove(0);
                            }
                        }
                        p.segments.extend(rest.segments);
                        a.as_path = p;
                    }
                    Verdict::Modified(Box::new(a))
                }
            };
        }
    }
    Verdict::Accept
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Modified(Box<RouteAttrs>),
    Reject,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(path: Vec<u32>, communities: Vec<Community>) -> RouteAttrs {
        RouteAttrs { communities, ..RouteAttrs::with_path(AsPath::sequence(path)) }
    }

    fn rule(action: Action) -> Rule {
        Rule {
            cidr: None,
            prefix_length: None,
            remote_peers_only: false,
            peer_type: None,
            community: None,
            as_path_prefix: vec![],
            action,
        }
    }

    fn subject<'a>(prefix: &'a IpNet, attrs: &'a RouteAttrs) -> Subject<'a> {
        Subject { prefix, attrs, learned: true, peer_type: PeerType::Ebgp }
    }

    #[test]
    fn cidr_operators_and_lengths() {
        let a = attrs(vec![65001], vec![]);
        let p: IpNet = "10.244.1.0/26".parse().unwrap();
        let with = |cidr: &str, op| Rule { cidr: Some((cidr.parse().unwrap(), op)), ..rule(Action::Reject) };
        assert!(with("10.244.1.0/26", MatchOperator::Equal).matches(&subject(&p, &a)));
        assert!(!with("10.244.0.0/16", MatchOperator::Equal).matches(&subject(&p, &a)));
        assert!(with("10.244.0.0/16", MatchOperator::In).matches(&subject(&p, &a)));
        assert!(!with("10.244.0.0/16", MatchOperator::NotIn).matches(&subject(&p, &a)));
        assert!(with("10.96.0.0/12", MatchOperator::NotIn).matches(&subject(&p, &a)));
        assert!(with("10.0.0.0/8", MatchOperator::NotEqual).matches(&subject(&p, &a)));
        // An IPv6 CIDR never matches an IPv4 route, whatever the operator.
        assert!(!with("fd00::/8", MatchOperator::NotIn).matches(&subject(&p, &a)));
        let len = Rule { prefix_length: Some((24, 25)), ..rule(Action::Reject) };
        assert!(!len.matches(&subject(&p, &a)));
        let len = Rule { prefix_length: Some((26, 32)), ..rule(Action::Reject) };
        assert!(len.matches(&subject(&p, &a)));
    }

    #[test]
    fn first_match_wins_and_default_accepts() {
        let a = attrs(vec![65001, 65002], vec![Community::new(65000, 1)]);
        let p: IpNet = "10.244.1.0/26".parse().unwrap();
        let rules = vec![
            Rule { community: Some(AnyCommunity::Standard(Community::new(65000, 9))), ..rule(Action::Reject) },
            Rule {
                as_path_prefix: vec![65001],
                ..rule(Action::Accept {
                    add_community: Some(AnyCommunity::Standard(Community::new(64512, 7))),
                    prepend_as_path: vec![64512, 64512],
                })
            },
            rule(Action::Reject),
        ];
        match evaluate(&rules, &subject(&p, &a)) {
            Verdict::Modified(m) => {
                assert_eq!(m.as_path.flat(), vec![64512, 64512, 65001, 65002]);
                assert!(m.communities.contains(&Community::new(64512, 7)));
            }
            v => panic!("{v:?}"),
        }
        let b = attrs(vec![65003], vec![]);
        assert_eq!(evaluate(&rules, &subject(&p, &b)), Verdict::Reject);
        assert_eq!(evaluate(&[], &subject(&p, &b)), Verdict::Accept);
        // Source and peer type.
        let local = Subject { learned: false, ..subject(&p, &b) };
        let only_learned = Rule { remote_peers_only: true, ..rule(Action::Reject) };
        assert_eq!(evaluate(std::slice::from_ref(&only_learned), &local), Verdict::Accept);
        let ibgp_only = Rule { peer_type: Some(PeerType::Ibgp), ..rule(Action::Reject) };
        assert_eq!(evaluate(&[ibgp_only], &subject(&p, &b)), Verdict::Accept);
    }
}
