//! Domain names: syntax, the public suffix (ICANN section of the Public Suffix List, shipped in
//! `handlers/data/public-suffixes.dat`), and the registrable domain a host name belongs to.

use std::collections::HashSet;
use std::sync::OnceLock;

const LIST: &str = include_str!("../../data/public-suffixes.dat");

struct Suffixes {
    rules: HashSet<&'static str>,
    /// `x.y` for every `*.x.y` rule.
    wildcards: HashSet<&'static str>,
    /// `a.x.y` for every `!a.x.y` rule.
    exceptions: HashSet<&'static str>,
    /// Every top-level label a rule ends with.
    tlds: HashSet<&'static str>,
}

fn suffixes() -> &'static Suffixes {
    static SUFFIXES: OnceLock<Suffixes> = OnceLock::new();
    SUFFIXES.get_or_init(|| {
        let mut s = Suffixes {
            rules: HashSet::new(),
            wildcards: HashSet::new(),
            exceptions: HashSet::new(),
            tlds: HashSet::new(),
        };
        for line in LIST.lines().map(str::trim) {
            if line.is_empty() || line.starts_with("//") {
                continue;
            }
            if let Some(rest) = line.strip_prefix("!") {
                s.exceptions.insert(rest);
            } else if let Some(rest) = line.strip_prefix("*.") {
                s.wildcards.insert(rest);
            } else {
                s.rules.insert(line);
            }
            if let Some(tld) = line.rsplit('.').next() {
                s.tlds.insert(tld);
            }
        }
        s
    })
}

/// True when `label` (lower case) is a top-level domain of the public suffix list.
pub fn is_known_tld(label: &str) -> bool {
    suffixes().tlds.contains(label)
}

/// True for DNS name syntax: at least two labels of ASCII letters, digits, `-` and `_`, each
/// 1–63 characters, at most 253 in all, the last one alphabetic (so no address is a name).
pub fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && name.rsplit('.').next().is_some_and(|tld| {
            tld.bytes().all(|b| b.is_ascii_alphabetic()) || tld.starts_with("xn--")
        })
}

/// How many labels of `name` (lower case, no trailing dot) form its public suffix under the
/// ICANN rules, or `None` when its top-level domain is not on the list (`corp`, `local`,
/// `internal`, `example`, `test`, …).
pub fn public_suffix_labels(name: &str) -> Option<usize> {
    let s = suffixes();
    // Start of each label, so every suffix is a slice of `name` (no allocation).
    let starts: Vec<usize> = std::iter::once(0)
        .chain(name.match_indices('.').map(|(i, _)| i + 1))
        .collect();
    let n = starts.len();
    for k in (1..=n).rev() {
        let suffix = &name[starts[n - k]..];
        if s.exceptions.contains(suffix) {
            return Some(k - 1);
        }
        let parent = if k > 1 {
            &name[starts[n - k + 1]..]
        } else {
            ""
        };
        if s.rules.contains(suffix) || (k > 1 && s.wildcards.contains(parent)) {
            return Some(k);
        }
    }
    None
}

/// The registrable domain of `name` (its public suffix and one more label: `evil.co.uk` for
/// `www.evil.co.uk`), or `None` when the name is itself a public suffix or its top-level
/// domain is unknown.
pub fn registrable(name: &str) -> Option<String> {
    let labels: Vec<&str> = name.split('.').collect();
    let k = public_suffix_labels(name)?;
    (labels.len() > k).then(|| labels[labels.len() - k - 1..].join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_suffixes_and_registrable_domains() {
        assert_eq!(registrable("www.evil.co.uk").as_deref(), Some("evil.co.uk"));
        assert_eq!(registrable("evil.com").as_deref(), Some("evil.com"));
        assert_eq!(
            registrable("a.b.cdn.example.com").as_deref(),
            Some("example.com")
        );
        assert_eq!(registrable("co.uk"), None);
        assert_eq!(registrable("host.corp"), None, "unknown top-level domain");
        assert_eq!(registrable("fin-ws-042.corp.example"), None);
        // Wildcard and exception rules (`*.ck`, `!www.ck`).
        assert_eq!(registrable("shop.foo.ck").as_deref(), Some("shop.foo.ck"));
        assert_eq!(registrable("www.ck").as_deref(), Some("www.ck"));
        assert!(is_known_tld("com") && is_known_tld("uk") && !is_known_tld("exe"));
    }

    #[test]
    fn dns_name_syntax() {
        for ok in ["evil.com", "a-b.c_d.example.org.", "xn--bcher-kva.example"] {
            assert!(is_dns_name(ok), "{ok}");
        }
        for bad in [
            "localhost",
            "1.2.3.4",
            "a..com",
            "-",
            "a.b/c",
            &format!("{}.com", "a".repeat(64)),
        ] {
            assert!(!is_dns_name(bad), "{bad}");
        }
    }
}
