//! Origins and `Host` values as the config lists them and as requests carry them, normalised so
//! the two can be compared (used by config validation and by the server's request guard).

use std::net::IpAddr;

/// True for addresses only this machine can reach.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host part of a `Host` header value: `[::1]:3456` → `[::1]`, `localhost:3456` → `localhost`.
pub(crate) fn host_name(host: &str) -> &str {
    let host = host.trim();
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// An origin, normalised for comparison: lower-case scheme and host, default port filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

/// Parse `scheme://host[:port]` (no path). `None` for anything else, including `null`.
pub(crate) fn parse_origin(text: &str) -> Option<Origin> {
    let (scheme, rest) = text.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let name = host_name(rest);
    let port = match &rest[name.len()..] {
        "" => default_port,
        p => p.strip_prefix(':')?.parse().ok()?,
    };
    if name.is_empty() || (name.contains(':') && !name.starts_with('[')) {
        return None;
    }
    Some(Origin { scheme, host: name.to_ascii_lowercase(), port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        for host in ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["0.0.0.0", "192.168.1.2", "::", "example.com"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn origins_parse_and_normalise() {
        let o = parse_origin("HTTP://LocalHost:8080").unwrap();
        assert_eq!((o.scheme.as_str(), o.host.as_str(), o.port), ("http", "localhost", 8080));
        assert_eq!(parse_origin("https://example.com").unwrap().port, 443);
        assert_eq!(parse_origin("http://[::1]:3").unwrap().host, "[::1]");
        for bad in ["null", "example.com", "file://x", "http://a/b", "http://", "http://a:x"] {
            assert!(parse_origin(bad).is_none(), "{bad}");
        }
    }
}
