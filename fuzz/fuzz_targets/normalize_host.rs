//! The proxy's host normalisation (`route::normalize_host`), on any Host header or SNI
//! name: no panic, and what it gives is a fixed point a route can be stored under.
#![no_main]

use ceryx::fuzzing::{normalize_host, normalize_source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let host = normalize_host(raw);
    // Case never matters.
    assert_eq!(normalize_host(&raw.to_ascii_uppercase()), host, "{raw:?}");
    assert_eq!(normalize_host(&raw.to_ascii_lowercase()), host, "{raw:?}");
    // A port never changes the host (where there was none).
    if !raw.contains(':') {
        assert_eq!(normalize_host(&format!("{raw}:443")), host, "{raw:?}");
    }
    let Some(host) = host else {
        return;
    };
    assert!(!host.is_empty(), "{raw:?}");
    assert!(host.is_ascii(), "{raw:?} -> {host:?}");
    assert!(
        !host.bytes().any(|b| b.is_ascii_uppercase()),
        "{raw:?} -> {host:?}"
    );
    assert!(!host.ends_with('.'), "{raw:?} -> {host:?}");
    // Idempotent.
    assert_eq!(
        normalize_host(&host).as_deref(),
        Some(host.as_str()),
        "{raw:?}"
    );
    if host.starts_with('[') {
        assert!(host.ends_with(']'), "{raw:?} -> {host:?}");
    } else {
        assert!(
            host.len() <= 253 && !host.contains(':'),
            "{raw:?} -> {host:?}"
        );
        // Every name the proxy looks up is a source a route can have, as is.
        assert_eq!(
            normalize_source(&host).as_deref(),
            Some(host.as_str()),
            "{raw:?}"
        );
    }
});
