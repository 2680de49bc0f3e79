//! IP addresses as written in incidents and text: the canonical reading, the ambiguous legacy
//! IPv4 forms (octal, hex, shortened) that different parsers read differently, and whether an
//! address is reachable on the internet at all (IANA's special-purpose address registries).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address as written: `Ok` with its canonical form (an IPv6 zone id dropped, an
/// IPv4-mapped IPv6 address as IPv4); `Err` with why it is not read as one (an octal, hex or
/// shortened IPv4 form); `None` when it does not look like an address.
pub fn read_ip(text: &str) -> Option<Result<IpAddr, String>> {
    let text = text.trim();
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    if let Ok(v4) = text.parse::<Ipv4Addr>() {
        return Some(Ok(IpAddr::V4(v4)));
    }
    // A zone id (`fe80::1%eth0`) names a link on the machine that saw the address: it says
    // nothing about the address itself and is dropped.
    let (address, _zone) = text.split_once('%').unwrap_or((text, ""));
    if let Ok(v6) = address.parse::<Ipv6Addr>() {
        return Some(Ok(match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }));
    }
    legacy_ipv4(text).map(|reading| {
        Err(format!(
            "{} is not a dotted-decimal address (octal, hex or shortened form; some parsers read it as {reading}): not looked up",
            socwire_common::text::for_log(text, 60)
        ))
    })
}

/// The address `inet_aton` (and browsers' URL parsers) would read from a legacy form: one to
/// four parts, each decimal, octal (leading `0`) or hex (`0x`), the last filling the remaining
/// bytes. `None` for anything else, and for the canonical form (handled by the caller).
pub fn legacy_ipv4(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.is_empty() || parts.len() > 4 || parts.iter().any(|p| p.is_empty() || p.len() > 12) {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for p in &parts {
        let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X"))
        {
            (h, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            (&p[1..], 8)
        } else {
            (*p, 10)
        };
        let v = if digits.is_empty() {
            0
        } else {
            u64::from_str_radix(digits, radix).ok()?
        };
        values.push(v);
    }
    let (last, head) = values.split_last()?;
    if head.iter().any(|v| *v > 255) {
        return None;
    }
    let room = 8 * (4 - head.len() as u32);
    if room < 64 && *last >= 1u64 << room {
        return None;
    }
    let mut n: u64 = *last;
    for (i, v) in head.iter().enumerate() {
        n |= v << (8 * (3 - i as u32));
    }
    Some(Ipv4Addr::from(n as u32))
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

/// Why `ip` is not a global unicast address (private, loopback, link-local, documentation,
/// reserved, multicast, …), or `None` when it is one. Ranges from IANA's IPv4 and IPv6
/// special-purpose address registries ("globally reachable: false") plus multicast.
pub fn not_global(ip: &IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => not_global_v4(*v4),
        IpAddr::V6(v6) => not_global_v6(*v6),
    }
}

/// IANA's IPv4 special-purpose ranges that are not globally reachable, plus multicast.
const V4_SPECIAL: &[([u8; 4], u32, &str)] = &[
    ([0, 0, 0, 0], 8, "\"this network\" (0.0.0.0/8)"),
    ([10, 0, 0, 0], 8, "a private address (10.0.0.0/8)"),
    ([100, 64, 0, 0], 10, "shared address space (100.64.0.0/10)"),
    ([127, 0, 0, 0], 8, "a loopback address"),
    ([169, 254, 0, 0], 16, "a link-local address"),
    ([172, 16, 0, 0], 12, "a private address (172.16.0.0/12)"),
    ([192, 0, 2, 0], 24, "a documentation address (192.0.2.0/24)"),
    ([192, 88, 99, 0], 24, "the deprecated 6to4 relay range"),
    ([192, 168, 0, 0], 16, "a private address (192.168.0.0/16)"),
    (
        [198, 18, 0, 0],
        15,
        "the benchmarking range (198.18.0.0/15)",
    ),
    (
        [198, 51, 100, 0],
        24,
        "a documentation address (198.51.100.0/24)",
    ),
    (
        [203, 0, 113, 0],
        24,
        "a documentation address (203.0.113.0/24)",
    ),
    ([224, 0, 0, 0], 4, "a multicast address"),
    ([240, 0, 0, 0], 4, "a reserved address (240.0.0.0/4)"),
];

/// IANA's IPv6 special-purpose ranges that are not globally reachable, plus multicast.
const V6_SPECIAL: &[([u16; 8], u32, &str)] = &[
    (
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "a local-use NAT64 address",
    ),
    (
        [0x100, 0, 0, 0, 0, 0, 0, 0],
        64,
        "a discard-only address (100::/64)",
    ),
    (
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "a documentation address (2001:db8::/32)",
    ),
    (
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        "a documentation address (3fff::/20)",
    ),
    (
        [0x2002, 0, 0, 0, 0, 0, 0, 0],
        16,
        "a 6to4 address (2002::/16)",
    ),
    (
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "an IETF protocol assignment (2001::/23)",
    ),
    (
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        "a segment-routing SID (5f00::/16)",
    ),
    (
        [0xfc00, 0, 0, 0, 0, 0, 0, 0],
        7,
        "a unique local address (fc00::/7)",
    ),
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "a link-local address"),
    ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "a site-local address"),
    ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "a multicast address"),
];

/// [`not_global`] for IPv4.
fn not_global_v4(v4: Ipv4Addr) -> Option<&'static str> {
    // 192.0.0.9 and 192.0.0.10 (PCP and TURN anycast) are the registry's two globally
    // reachable exceptions in 192.0.0.0/24.
    if in_v4(v4, [192, 0, 0, 0], 24) && !matches!(v4.octets()[3], 9 | 10) {
        return Some("an IETF protocol assignment (192.0.0.0/24)");
    }
    V4_SPECIAL
        .iter()
        .find(|(net, prefix, _)| in_v4(v4, *net, *prefix))
        .map(|(_, _, why)| *why)
}

/// [`not_global`] for IPv6.
fn not_global_v6(v6: Ipv6Addr) -> Option<&'static str> {
    if v6.is_unspecified() {
        return Some("the unspecified address");
    }
    if v6.is_loopback() {
        return Some("a loopback address");
    }
    if let Some((_, _, why)) = V6_SPECIAL.iter().find(|(net, p, _)| in_v6(v6, *net, *p)) {
        return Some(why);
    }
    // Global unicast is 2000::/3; everything else is unassigned or special.
    if !in_v6(v6, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        return Some("not in the global unicast range (2000::/3)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> IpAddr {
        read_ip(text).unwrap().unwrap()
    }

    #[test]
    fn canonical_zone_and_mapped_forms_are_read() {
        assert_eq!(v(" 8.8.8.8 "), "8.8.8.8".parse::<IpAddr>().unwrap());
        assert_eq!(v("fe80::1%eth0"), "fe80::1".parse::<IpAddr>().unwrap());
        assert_eq!(
            v("[2606:4700::1111]"),
            "2606:4700::1111".parse::<IpAddr>().unwrap()
        );
        assert_eq!(v("::ffff:10.1.2.3"), "10.1.2.3".parse::<IpAddr>().unwrap());
        assert!(read_ip("evil.example").is_none());
        assert!(read_ip("999.1.1.1").is_none());
    }

    #[test]
    fn octal_hex_and_short_forms_are_refused_with_their_reading() {
        for (text, reading) in [
            ("0x7f.0.0.1", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("010.1.2.3", "8.1.2.3"),
            ("2130706433", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("0xa000001", "10.0.0.1"),
        ] {
            let why = read_ip(text).unwrap().unwrap_err();
            assert!(why.contains(reading), "{text}: {why}");
        }
        assert_eq!(legacy_ipv4("1.2.3.4.5"), None);
        assert_eq!(legacy_ipv4("256.1.1.1"), None);
        assert_eq!(legacy_ipv4("0x100000000"), None);
    }

    #[test]
    fn only_global_unicast_addresses_pass() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "192.0.0.9",
            "2606:4700::1111",
            "2001:4860::8888",
        ] {
            assert_eq!(not_global(&v(ip)), None, "{ip}");
        }
        for ip in [
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "192.0.2.10",
            "198.51.100.23",
            "203.0.113.66",
            "224.0.0.1",
            "255.255.255.255",
            "0.1.2.3",
            "192.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "2001:db8::1",
            "ff02::1",
            "2002:a00:1::1",
            "3fff::1",
            "1::1",
        ] {
            assert!(not_global(&v(ip)).is_some(), "{ip}");
        }
    }
}
