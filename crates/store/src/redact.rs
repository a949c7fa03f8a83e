//! Passwords out of everything printed: URLs and connection strings with their secrets masked.

/// `url` with any password replaced by `***`: the `user:password@` part of a URL, and
/// `password=...` parameters (in a URL's query or in a `key=value` connection string).
/// Everything this crate prints or stores about a server goes through here.
pub fn redact(url: &str) -> String {
    let mut out = url.to_string();
    // user:password@ in the authority.
    if let Some(scheme_end) = out.find("://") {
        let rest = &out[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            let start = scheme_end + 3 + colon + 1;
            let end = scheme_end + 3 + at;
            out.replace_range(start..end, "***");
        }
    }
    // password=... as a query parameter or a key=value pair.
    let lower = out.to_ascii_lowercase();
    let mut cuts = Vec::new();
    let mut from = 0;
    while let Some(i) = lower[from..].find("password") {
        let i = from + i;
        let before_ok = i == 0 || matches!(lower.as_bytes()[i - 1], b'?' | b'&' | b' ' | b'\t');
        let mut j = i + "password".len();
        while lower.as_bytes().get(j) == Some(&b' ') {
            j += 1;
        }
        if before_ok && lower.as_bytes().get(j) == Some(&b'=') {
            let mut k = j + 1;
            while lower.as_bytes().get(k) == Some(&b' ') {
                k += 1;
            }
            let start = k;
            let end = if lower.as_bytes().get(k) == Some(&b'\'') {
                // A quoted value: up to the closing quote (backslash escapes allowed).
                let mut e = k + 1;
                while e < lower.len() && lower.as_bytes()[e] != b'\'' {
                    e += if lower.as_bytes()[e] == b'\\' { 2 } else { 1 };
                }
                (e + 1).min(lower.len())
            } else {
                lower[k..].find(['&', ' ', '\t']).map_or(lower.len(), |e| k + e)
            };
            cuts.push((start, end));
            from = end;
        } else {
            from = i + 1;
        }
    }
    for (start, end) in cuts.into_iter().rev() {
        out.replace_range(start..end, "***");
    }
    out
}

/// `message` with every occurrence of `secret` masked, for errors that might echo it.
pub(crate) fn scrub(message: &str, secret: Option<&[u8]>) -> String {
    match secret.and_then(|s| std::str::from_utf8(s).ok()).filter(|s| !s.is_empty()) {
        Some(s) => message.replace(s, "***"),
        None => message.to_string(),
    }
}
