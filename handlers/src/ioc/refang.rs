//! Undoing the usual defanging of indicators in reports and tickets (`hxxp://`, `evil[.]com`,
//! `user[at]example[.]com`).

use std::borrow::Cow;

/// Bracketed and spelled-out forms and what they stand for (matched case-insensitively).
const BRACKETED: &[(&str, &str)] = &[
    ("[.]", "."),
    ("(.)", "."),
    ("{.}", "."),
    ("[dot]", "."),
    ("(dot)", "."),
    ("{dot}", "."),
    ("[:]", ":"),
    ("[://]", "://"),
    ("[/]", "/"),
    ("[at]", "@"),
    ("(at)", "@"),
    ("{at}", "@"),
    ("[@]", "@"),
];

/// Defanged schemes, recognised only when a `:` (or `[:]`) follows, so ordinary words that
/// happen to start the same way are left alone.
const SCHEMES: &[(&str, &str)] = &[
    ("hxxps", "https"),
    ("hxxp", "http"),
    ("fxps", "ftps"),
    ("fxp", "ftp"),
];

fn starts_with_ci(rest: &[u8], pattern: &str) -> bool {
    rest.len() >= pattern.len() && rest[..pattern.len()].eq_ignore_ascii_case(pattern.as_bytes())
}

/// `text` with defanging undone, in one left-to-right pass (the result is never longer than
/// the input, and a form that only appears after a replacement is not replaced again).
pub fn refang(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    if !bytes
        .iter()
        .any(|b| matches!(b, b'[' | b'(' | b'{' | b'x' | b'X'))
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::new();
    let mut i = 0;
    let mut copied_from = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let replacement = match bytes[i] {
            b'[' | b'(' | b'{' => BRACKETED
                .iter()
                .find(|(p, _)| starts_with_ci(rest, p))
                .map(|(p, r)| (p.len(), *r)),
            b'h' | b'H' | b'f' | b'F' => SCHEMES
                .iter()
                .find(|(p, _)| {
                    starts_with_ci(rest, p)
                        && matches!(rest.get(p.len()), Some(b':') | Some(b'['))
                        // Not the tail of a longer word (`xhxxp:`).
                        && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
                })
                .map(|(p, r)| (p.len(), *r)),
            _ => None,
        };
        match replacement {
            Some((len, with)) => {
                out.push_str(&text[copied_from..i]);
                out.push_str(with);
                i += len;
                copied_from = i;
            }
            None => i += 1,
        }
    }
    if copied_from == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied_from..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::refang;

    #[test]
    fn common_defanged_forms_are_restored_and_words_are_left_alone() {
        for (defanged, plain) in [
            (
                "hxxps[:]//evil[.]example[.]com/a",
                "https://evil.example.com/a",
            ),
            ("hXXp://1.2.3[.]4/x", "http://1.2.3.4/x"),
            ("fxp://files(.)example(dot)net", "ftp://files.example.net"),
            ("user[at]mail{.}example[DOT]org", "user@mail.example.org"),
            ("evil[.]com", "evil.com"),
            ("hxxp[://]evil.com", "http://evil.com"),
            (
                "plain text with fxpro and hxxpy",
                "plain text with fxpro and hxxpy",
            ),
            ("xhxxp://a.com", "xhxxp://a.com"),
            ("[[.]]", "[.]"),
            ("ünïcode [.] ☃", "ünïcode . ☃"),
        ] {
            assert_eq!(refang(defanged), plain, "{defanged}");
        }
    }
}
