//! Host names and addresses as outbound requests (webhooks) judge them: which addresses are
//! public, and the canonical form in which hosts are compared.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `address` is one a webhook may reach: only globally routable unicast addresses.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    let special = address.is_unspecified()
        || address.is_loopback()
        || address.is_private()
        || address.is_link_local()
        || address.is_broadcast()
        || address.is_multicast()
        || address.is_documentation()
        // "This network" (RFC 791)
        || a == 0
        // Shared address space of carrier-grade NAT (RFC 6598)
        || (a == 100 && b & 0b1100_0000 == 64)
        // IETF protocol assignments (RFC 6890)
        || (a == 192 && b == 0 && c == 0)
        // Benchmarking (RFC 2544)
        || (a == 198 && b & 0b1111_1110 == 18)
        // Reserved for future use (RFC 1112)
        || a >= 240;
    !special
}

fn is_public_v6(address: Ipv6Addr) -> bool {
    let segments = address.segments();
    // Only global unicast (RFC 4291) is routable; loopback, unspecified, link-local, unique
    // local, multicast, NAT64 and the IPv4-compatible forms all lie outside it.
    let global_unicast = segments[0] & 0xe000 == 0x2000;
    // Documentation (RFC 3849)
    let documentation = segments[0] == 0x2001 && segments[1] == 0x0db8;
    // 6to4 (RFC 3056) carries an IPv4 address that must itself be public.
    let six_to_four_private = segments[0] == 0x2002 && {
        let [hi, lo] = [segments[1].to_be_bytes(), segments[2].to_be_bytes()];
        !is_public_v4(Ipv4Addr::new(hi[0], hi[1], lo[0], lo[1]))
    };
    global_unicast && !documentation && !six_to_four_private
}

/// The hosts that `WEBHOOK_ALLOWED_HOSTS` lets through: names lower-case without a trailing
/// dot, addresses in their canonical form (IPv6 without brackets).
pub fn normalize_host(host: &str) -> String {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(address) => address.to_string(),
        Err(_) => host.trim_end_matches('.').to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_unspecified_addresses_are_not_public() {
        for address in [
            "127.0.0.1",
            "127.0.0.2",
            "127.255.255.254",
            "::1",
            "::",
            "0.0.0.0",
        ] {
            assert!(!is_public(address.parse().unwrap()), "{address}");
        }
    }

    #[test]
    fn a_loopback_address_wrapped_in_ipv6_is_not_public() {
        // IPv4-mapped, IPv4-compatible and 6to4 forms of 127.0.0.1.
        for address in ["::ffff:127.0.0.1", "::127.0.0.1", "2002:7f00:1::1"] {
            assert!(!is_public(address.parse().unwrap()), "{address}");
        }
    }

    #[test]
    fn hosts_compare_in_canonical_form() {
        assert_eq!(normalize_host("[::1]"), "::1");
        assert_eq!(normalize_host("0:0:0:0:0:0:0:1"), "::1");
        assert_eq!(normalize_host(" Hooks.Localhost. "), "hooks.localhost");
        assert_eq!(normalize_host("127.0.0.1"), "127.0.0.1");
    }
}
