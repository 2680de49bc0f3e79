//! Making attacker-controlled or secret-bearing text safe to log.

/// `text` bounded to `max_chars` characters with every control character escaped, so that a
/// value from an incident or an alert can never forge a log line; `…` marks a cut.
pub fn for_log(text: &str, max_chars: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max_chars)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > max_chars {
        out.push('…');
    }
    out
}

/// Query parameters whose values are credentials (SAS signatures, keys, tokens).
const SECRET_PARAMS: &[&str] = &[
    "sig",
    "code",
    "key",
    "token",
    "access_token",
    "client_secret",
    "skoid",
    "sktid",
    "skt",
    "ske",
    "sks",
    "skv",
    "se",
    "st",
    "sp",
    "spr",
    "sr",
    "ss",
    "srt",
    "sv",
];

/// `text` with every URL query string's credentials replaced by `REDACTED`: a SAS token
/// (`sig=`, `se=`, `sp=` …), a function key (`code=`) or any `token`/`key` parameter, wherever
/// it appears (a `reqwest` error, a response body, a log line). Text without such parameters
/// comes back unchanged.
pub fn redact_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(q) = rest.find(['?', '&']) {
        out.push_str(&rest[..=q]);
        rest = &rest[q + 1..];
        let end = rest
            .find(|c: char| c == '&' || c.is_whitespace() || "\"'<>)]}`,;".contains(c))
            .unwrap_or(rest.len());
        let pair = &rest[..end];
        match pair.split_once('=') {
            Some((name, _)) if is_secret(name) => {
                out.push_str(name);
                out.push_str("=REDACTED");
            }
            _ => out.push_str(pair),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.contains(&name.as_str()) || name.contains("secret") || name.contains("password")
}

/// `text` escaped for HTML and XML (SVG) text and attribute values (`&`, `<`, `>`, `"`,
/// `'`); control characters other than tab, line feed and carriage return, which neither
/// allows, are dropped.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_text_is_escaped_and_bounded() {
        assert_eq!(for_log("a\nb", 10), "a\\nb");
        assert_eq!(for_log("abcdef", 3), "abc…");
    }

    #[test]
    fn sas_tokens_and_keys_are_redacted_wherever_they_appear() {
        let e = "error sending request for url (http://127.0.0.1:10000/devstoreaccount1/c/b?sv=2021-08-06&ss=bq&srt=sco&sp=rwdl&se=2030-01-01&spr=https,http&sig=abc%2Bdef%3D): connection refused";
        let r = redact_secrets(e);
        assert!(!r.contains("abc%2Bdef"), "{r}");
        assert!(!r.contains("rwdl"), "{r}");
        assert!(r.contains("sig=REDACTED"));
        assert!(r.ends_with("): connection refused"), "{r}");
        assert!(r.contains("/devstoreaccount1/c/b?"));
        assert_eq!(
            redact_secrets("POST /api/x?code=k3y&name=ok"),
            "POST /api/x?code=REDACTED&name=ok"
        );
        assert_eq!(redact_secrets("no query here"), "no query here");
        assert_eq!(redact_secrets("a ? b & c"), "a ? b & c");
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(escape_html("a\u{7}b\u{0}\tc\nd"), "ab\tc\nd");
    }
}
