//! Indicators of compromise as threat intelligence should see them: refanged and in canonical
//! form ([`normalise`]), screened before any internet look-up ([`screen`]: no private or
//! otherwise non-global address, no URL on one, no unqualified or non-public name, no
//! "hash" of one repeated character), and found in free text ([`extract`]). Offline lists
//! and the workspace see every indicator; only the internet providers are screened
//! (docs/decisions/0013-triage-real-sentinel-issue-22.md).

mod addr;
mod extract;
mod names;
mod refang;

pub use addr::{legacy_ipv4, not_global, read_ip};
pub use extract::{extract, ExtractLimits, Extracted};
pub use names::{is_dns_name, is_known_tld, public_suffix_labels, registrable};
pub use refang::refang;

use crate::sentinel::Indicator;
use std::net::IpAddr;

/// Lowest Shannon entropy (bits per character) of a string sent to providers as a hash: a
/// run of one or two repeated characters is a placeholder, not a file's hash.
pub const MIN_HASH_ENTROPY: f64 = 3.0;

fn indicator(kind: &str, value: impl Into<String>) -> Indicator {
    Indicator {
        kind: kind.into(),
        value: value.into(),
    }
}

fn entropy(text: &str) -> f64 {
    let mut counts = [0usize; 256];
    for b in text.bytes() {
        counts[b as usize] += 1;
    }
    let n = text.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// The indicator an entity field or a piece of text of `kind` (`ip`, `url`, `domain`,
/// `filehash`, `email`) names, refanged and in canonical form (addresses as the standard
/// library prints them, names and hashes in lower case), or why it is not one.
pub fn normalise(kind: &str, raw: &str) -> Result<Indicator, String> {
    let text = refang(raw.trim());
    let text = text.trim();
    let shown = || socwire_common::text::for_log(text, 80);
    match kind {
        "ip" | "ipv4" | "ipv6" => match read_ip(text) {
            Some(Ok(IpAddr::V4(v4))) => Ok(indicator("ipv4", v4.to_string())),
            Some(Ok(IpAddr::V6(v6))) => Ok(indicator("ipv6", v6.to_string())),
            Some(Err(why)) => Err(why),
            None => Err(format!("{} is not an IP address", shown())),
        },
        "url" => {
            let parsed =
                url::Url::parse(text).map_err(|e| format!("{} is not a URL ({e})", shown()))?;
            if parsed.host().is_none() {
                return Err(format!("{} is a URL without a host", shown()));
            }
            Ok(indicator("url", text))
        }
        "domain" => {
            let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
            if read_ip(&name).is_some() {
                return Err(format!("{} is an address, not a name", shown()));
            }
            if !is_dns_name(&name) {
                return Err(format!("{} is not a DNS name", shown()));
            }
            Ok(indicator("domain", name))
        }
        "filehash" => {
            if matches!(text.len(), 32 | 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(indicator("filehash", text.to_ascii_lowercase()))
            } else {
                Err(format!("{} is not an MD5, SHA-1 or SHA-256 hash", shown()))
            }
        }
        "email" => {
            let lower = text.to_ascii_lowercase();
            match lower.rsplit_once('@') {
                Some((local, domain))
                    if !local.is_empty() && local.len() <= 64 && is_dns_name(domain) =>
                {
                    Ok(indicator("email", lower))
                }
                _ => Err(format!("{} is not an e-mail address", shown())),
            }
        }
        other => Err(format!("unknown indicator kind {other:?}")),
    }
}

/// Why the name `host` must not go to internet providers, if it must not.
fn name_withheld(host: &str) -> Option<String> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if !host.contains('.') {
        return Some(format!("{host} is an unqualified name (no domain)"));
    }
    match public_suffix_labels(host) {
        None => Some(format!(
            "{host} is not a public name (top-level domain .{} is not on the public suffix list)",
            host.rsplit('.').next().unwrap_or("")
        )),
        Some(k) if k >= host.split('.').count() => {
            Some(format!("{host} is a public suffix, not a domain"))
        }
        Some(_) => None,
    }
}

/// `Ok` when `indicator` may be sent to internet threat-intelligence providers; otherwise why
/// not (the report lists it under "not sent"). Expects the canonical form [`normalise`] gives.
pub fn screen(indicator: &Indicator) -> Result<(), String> {
    let withheld = match indicator.kind.as_str() {
        "ipv4" | "ipv6" => match indicator.value.parse::<IpAddr>() {
            Ok(ip) => not_global(&ip).map(|why| format!("{ip} is {why}")),
            Err(_) => Some("not a canonical address".to_string()),
        },
        "url" => match url::Url::parse(&indicator.value) {
            Err(_) => Some("not a URL".to_string()),
            Ok(u) if !matches!(u.scheme(), "http" | "https" | "ftp" | "ftps") => {
                Some(format!("a {}: URL", u.scheme()))
            }
            Ok(u) => match u.host() {
                None => Some("a URL without a host".to_string()),
                Some(url::Host::Ipv4(v4)) => {
                    not_global(&IpAddr::V4(v4)).map(|why| format!("its host {v4} is {why}"))
                }
                Some(url::Host::Ipv6(v6)) => {
                    not_global(&IpAddr::V6(v6)).map(|why| format!("its host {v6} is {why}"))
                }
                Some(url::Host::Domain(d)) => {
                    name_withheld(&d.to_ascii_lowercase()).map(|why| format!("its host {why}"))
                }
            },
        },
        "domain" => name_withheld(&indicator.value),
        "email" => indicator
            .value
            .rsplit_once('@')
            .and_then(|(_, d)| name_withheld(d)),
        "filehash" => (entropy(&indicator.value) < MIN_HASH_ENTROPY)
            .then(|| "too little variety to be a real file hash".to_string()),
        other => Some(format!("kind {other} is not looked up on the internet")),
    };
    match withheld {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(kind: &str, raw: &str) -> Indicator {
        normalise(kind, raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn normalise_refangs_and_canonicalises() {
        assert_eq!(n("ip", " 8.8.8[.]8 ").value, "8.8.8.8");
        assert_eq!(n("ip", "::FFFF:1.2.3.4").kind, "ipv4");
        assert_eq!(n("ip", "fe80::1%eth0").value, "fe80::1");
        assert_eq!(
            n("domain", "Evil[.]Example[.]COM.").value,
            "evil.example.com"
        );
        assert_eq!(n("url", "hxxps://evil[.]com/a").value, "https://evil.com/a");
        assert_eq!(
            n("filehash", "44D88612FEA8A8F36DE82E1278ABB02F").value,
            "44d88612fea8a8f36de82e1278abb02f"
        );
        assert_eq!(
            n("email", "Bad[at]Phish[.]Example[.]net").value,
            "bad@phish.example.net"
        );
        for (kind, raw) in [
            ("ip", "999.1.1.1"),
            ("ip", "0x7f.1"),
            ("domain", "1.2.3.4"),
            ("domain", "cmd"),
            ("filehash", "xyz"),
            ("url", "not a url"),
            ("email", "@evil.com"),
        ] {
            assert!(normalise(kind, raw).is_err(), "{kind} {raw}");
        }
    }

    #[test]
    fn only_public_observables_pass_the_screen() {
        let pass = |k: &str, v: &str| screen(&n(k, v));
        assert!(pass("ip", "8.8.8.8").is_ok());
        assert!(pass("ip", "10.1.2.3").unwrap_err().contains("private"));
        assert!(pass("ip", "fe80::1%eth0")
            .unwrap_err()
            .contains("link-local"));
        assert!(pass("domain", "evil.co.uk").is_ok());
        assert!(pass("domain", "fin-ws-042.corp")
            .unwrap_err()
            .contains("not a public name"));
        assert!(pass("domain", "co.uk")
            .unwrap_err()
            .contains("public suffix"));
        assert!(pass("url", "https://evil.com/x").is_ok());
        assert!(pass("url", "http://10.0.0.5/x")
            .unwrap_err()
            .contains("private"));
        // A browser reads this host as 127.0.0.1; so does the screen.
        assert!(pass("url", "http://0x7f.1/x")
            .unwrap_err()
            .contains("loopback"));
        assert!(pass("url", "http://intranet/login")
            .unwrap_err()
            .contains("unqualified"));
        assert!(pass("url", "file://server/share/x.exe")
            .unwrap_err()
            .contains("file"));
        assert!(pass("filehash", &"0".repeat(32))
            .unwrap_err()
            .contains("variety"));
        assert!(pass("filehash", "44d88612fea8a8f36de82e1278abb02f").is_ok());
    }
}
