//! The address of the client behind a request: the peer itself, unless the peer is one of the
//! `TRUSTED_PROXIES`; then the right-most address of `X-Forwarded-For` that is not a trusted
//! proxy. Addresses left of that one were written by the client and prove nothing.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client's address for `peer`, believing `X-Forwarded-For` only as far as it was written
/// by `trusted` proxies.
pub fn client_addr(trusted: &[IpNet], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let is_trusted = |addr: &IpAddr| trusted.iter().any(|net| net.contains(addr));
    let mut client = canonical(peer);
    if !is_trusted(&client) {
        return client;
    }
    // Every X-Forwarded-For header in order, as one list; the nearest hop is the last.
    let hops: Vec<Option<IpAddr>> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .flat_map(|value| match value.to_str() {
            Ok(list) => list.split(',').map(parse_hop).collect::<Vec<_>>(),
            Err(_) => vec![None],
        })
        .collect();
    for hop in hops.into_iter().rev() {
        // A hop a trusted proxy wrote but that is no address: the proxy is as far as we know.
        let Some(addr) = hop else { break };
        client = addr;
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is its IPv4 address.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        IpAddr::V4(_) => addr,
    }
}

/// One entry of `X-Forwarded-For`: `a.b.c.d`, `x:y::z`, `[x:y::z]`, or either with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse().ok())
        })
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(trusted: &str, peer: &str, forwarded: &[&str]) -> String {
        let trusted: Vec<IpNet> = trusted
            .split(',')
            .filter(|net| !net.is_empty())
            .map(|net| net.trim().parse().unwrap())
            .collect();
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append(X_FORWARDED_FOR, value.parse().unwrap());
        }
        client_addr(&trusted, peer.parse().unwrap(), &headers).to_string()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        assert_eq!(resolve("", "127.0.0.1", &["127.0.0.9"]), "127.0.0.1");
        assert_eq!(
            resolve("127.0.0.2/32", "127.0.0.1", &["127.0.0.9"]),
            "127.0.0.1"
        );
        assert_eq!(
            resolve("::1/128", "::ffff:127.0.0.1", &["::1"]),
            "127.0.0.1"
        );
    }

    #[test]
    fn a_trusted_peer_names_the_right_most_untrusted_hop() {
        let trusted = "127.0.0.1/32, 127.0.1.0/24";
        // The client wrote 127.0.0.66 itself; the proxy appended what it saw.
        assert_eq!(
            resolve(trusted, "127.0.0.1", &["127.0.0.66, 127.0.0.5"]),
            "127.0.0.5"
        );
        // Through two trusted proxies, over two headers.
        assert_eq!(
            resolve(
                trusted,
                "127.0.0.1",
                &["127.0.0.66, 127.0.0.5", "127.0.1.7"]
            ),
            "127.0.0.5"
        );
        assert_eq!(
            resolve(trusted, "127.0.0.1", &["127.0.0.5:4711, 127.0.1.7"]),
            "127.0.0.5"
        );
        assert_eq!(
            resolve("::1/128", "::1", &["[::ffff:127.0.0.5]:80"]),
            "127.0.0.5"
        );
        assert_eq!(resolve("::1/128", "::1", &["[::2]"]), "::2");
    }

    #[test]
    fn a_trusted_peer_without_a_usable_hop_is_the_client() {
        let trusted = "127.0.0.1/32, 127.0.1.0/24";
        assert_eq!(resolve(trusted, "127.0.0.1", &[]), "127.0.0.1");
        assert_eq!(resolve(trusted, "127.0.0.1", &["unknown"]), "127.0.0.1");
        // Garbage behind a trusted hop: the trusted hop is as far as is known.
        assert_eq!(
            resolve(trusted, "127.0.0.1", &["127.0.0.5, nonsense, 127.0.1.7"]),
            "127.0.1.7"
        );
        // Only trusted hops: the furthest one.
        assert_eq!(
            resolve(trusted, "127.0.0.1", &["127.0.1.8, 127.0.1.7"]),
            "127.0.1.8"
        );
    }
}
