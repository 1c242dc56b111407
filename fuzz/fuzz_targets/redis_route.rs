//! The Redis store's reading of a route (`store::redis::parse_route`) from any `GET` and
//! `HGETALL` replies: no panic, a missing target is no route, and a route read and
//! written back (as the write script stores it) reads the same.
#![no_main]

use arbitrary::Arbitrary;
use ceryx::fuzzing::redis::{PushKind, Value, VerbatimFormat};
use ceryx::fuzzing::{redis_route, redis_written};
use libfuzzer_sys::fuzz_target;

/// A RESP3 value (all of `redis::Value` but server errors and big numbers).
#[derive(Arbitrary, Debug)]
enum Reply {
    Nil,
    Int(i64),
    Bulk(Vec<u8>),
    Text(String),
    Simple(String),
    Okay,
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
    Pairs(Vec<(String, String)>),
    Set(Vec<Reply>),
    Double(f64),
    Boolean(bool),
    Verbatim(String),
    Attribute(Box<Reply>, Vec<(Reply, Reply)>),
    Push(Vec<Reply>),
}

impl Reply {
    fn value(&self, depth: u8) -> Value {
        if depth > 6 {
            return Value::Nil;
        }
        let all = |v: &[Reply]| v.iter().map(|r| r.value(depth + 1)).collect();
        let pairs = |v: &[(Reply, Reply)]| {
            v.iter()
                .map(|(k, r)| (k.value(depth + 1), r.value(depth + 1)))
                .collect()
        };
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        match self {
            Reply::Nil => Value::Nil,
            Reply::Int(i) => Value::Int(*i),
            Reply::Bulk(b) => Value::BulkString(b.clone()),
            Reply::Text(s) => bulk(s),
            Reply::Simple(s) => Value::SimpleString(s.clone()),
            Reply::Okay => Value::Okay,
            Reply::Array(v) => Value::Array(all(v)),
            Reply::Map(v) => Value::Map(pairs(v)),
            Reply::Pairs(v) => Value::Map(v.iter().map(|(k, r)| (bulk(k), bulk(r))).collect()),
            Reply::Set(v) => Value::Set(all(v)),
            Reply::Double(d) => Value::Double(*d),
            Reply::Boolean(b) => Value::Boolean(*b),
            Reply::Verbatim(s) => Value::VerbatimString {
                format: VerbatimFormat::Text,
                text: s.clone(),
            },
            Reply::Attribute(data, attributes) => Value::Attribute {
                data: Box::new(data.value(depth + 1)),
                attributes: pairs(attributes),
            },
            Reply::Push(v) => Value::Push {
                kind: PushKind::Message,
                data: all(v),
            },
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    source: String,
    target: Reply,
    settings: Reply,
    rules: Reply,
}

fuzz_target!(|input: Input| {
    let target = input.target.value(0);
    let missing = target == Value::Nil;
    let Ok(route) = redis_route(
        &input.source,
        target,
        input.settings.value(0),
        input.rules.value(0),
    ) else {
        return;
    };
    let Some(route) = route else {
        return;
    };
    assert!(!missing, "{input:?}");
    assert_eq!(route.source, input.source);
    assert!(
        route.target.starts_with("http://") || route.target.starts_with("https://"),
        "{route:?}"
    );
    for path in [&route.settings.certificate_path, &route.settings.key_path] {
        assert!(
            path.as_ref().is_none_or(|p| !p.trim().is_empty()),
            "{route:?}"
        );
    }
    let (target, settings, rules) = redis_written(&route);
    let again = redis_route(&route.source, target, settings, rules);
    assert_eq!(again.as_ref(), Ok(&Some(route.clone())), "{input:?}");
});
