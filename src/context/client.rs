//! The client's address: the TCP peer, or, when the peer is a trusted proxy,
//! the right-most untrusted address of X-Forwarded-For (all its header lines
//! as one list, RFC 9110 §5.3).

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// Most addresses read from X-Forwarded-For; a longer chain is cut.
const MAX_HOPS: usize = 32;

pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// The visitor's address. Walks X-Forwarded-For from the right past trusted
/// proxies; a malformed entry stops the walk at the last address known good.
/// `lines` are the header's lines in the order received: a proxy appends its
/// own line, so a visitor's line comes first and must not decide.
pub fn client_address<'a>(
    peer: IpAddr,
    lines: impl DoubleEndedIterator<Item = &'a [u8]>,
    trusted: &[IpNet],
) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut client = peer;
    let hops = lines.rev().flat_map(|line| line.rsplit(|&b| b == b','));
    for hop in hops.take(MAX_HOPS) {
        let Some(ip) = std::str::from_utf8(hop.trim_ascii())
            .ok()
            .and_then(parse_hop)
        else {
            break;
        };
        client = ip;
        if !is_trusted(ip, trusted) {
            break;
        }
    }
    client
}

/// `1.2.3.4`, `1.2.3.4:567`, `::1` or `[::1]:567`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    hop.parse::<SocketAddr>()
        .ok()
        .map(|s| s.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> Vec<IpNet> {
        vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ]
    }

    fn addr(peer: &str, xff: Option<&str>) -> String {
        lines(peer, xff.as_slice())
    }

    fn lines(peer: &str, lines: &[&str]) -> String {
        let lines = lines.iter().map(|l| l.as_bytes());
        client_address(peer.parse().unwrap(), lines, &trusted()).to_string()
    }

    #[test]
    fn untrusted_peers_cannot_claim_an_address() {
        assert_eq!(addr("203.0.113.9", Some("81.2.69.142")), "203.0.113.9");
    }

    #[test]
    fn trusted_peers_pass_the_right_most_untrusted_hop() {
        assert_eq!(addr("127.0.0.1", Some("81.2.69.142")), "81.2.69.142");
        assert_eq!(
            addr("127.0.0.1", Some("1.1.1.1, 81.2.69.142, 10.0.0.5")),
            "81.2.69.142"
        );
        assert_eq!(addr("::1", Some("[2001:218::1]:443")), "2001:218::1");
        assert_eq!(
            addr("::ffff:127.0.0.1", Some("::ffff:81.2.69.142")),
            "81.2.69.142"
        );
        assert_eq!(addr("127.0.0.1", Some("81.2.69.142:5555")), "81.2.69.142");
    }

    #[test]
    fn malformed_chains_stop_at_the_last_good_hop() {
        assert_eq!(addr("127.0.0.1", Some("garbage")), "127.0.0.1");
        assert_eq!(
            addr("127.0.0.1", Some("81.2.69.142, nonsense, 10.0.0.1")),
            "10.0.0.1"
        );
        assert_eq!(addr("127.0.0.1", Some("")), "127.0.0.1");
        assert_eq!(
            addr("127.0.0.1", Some(&"10.1.1.1,".repeat(5000))),
            "127.0.0.1"
        );
    }

    #[test]
    fn every_line_counts_as_one_list() {
        // The visitor's own line comes first; the proxy appends its own.
        assert_eq!(
            lines("127.0.0.1", &["81.2.69.142", "203.0.113.9"]),
            "203.0.113.9"
        );
        assert_eq!(
            lines("127.0.0.1", &["81.2.69.142", "203.0.113.9, 10.0.0.5"]),
            "203.0.113.9"
        );
        assert_eq!(
            lines("127.0.0.1", &["1.1.1.1, 81.2.69.142", "10.0.0.5"]),
            "81.2.69.142"
        );
        // A bad line stops the walk as a bad entry does.
        assert_eq!(
            lines("127.0.0.1", &["81.2.69.142", "nonsense", "10.0.0.5"]),
            "10.0.0.5"
        );
        assert_eq!(lines("127.0.0.1", &[]), "127.0.0.1");
    }
}
