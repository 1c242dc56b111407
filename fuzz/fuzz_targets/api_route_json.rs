//! The REST API's reading of a route body (`api::input::parse_route`), on any bytes:
//! no panic, every refusal is reported per field, and an accepted route reads back the
//! same from its own JSON (as a POST body, as a PUT body and through serde).
//!
//! An input starting `PUT <source>\n` is read as a PUT to that source's URL.
#![no_main]

use ceryx::fuzzing::serde_json::{self, Value};
use ceryx::fuzzing::{api_route, normalize_source};
use ceryx::route::Route;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (path_source, body) = match data.strip_prefix(b"PUT ") {
        Some(rest) => {
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let Ok(source) = std::str::from_utf8(&rest[..end]) else {
                return;
            };
            (Some(source), rest.get(end + 1..).unwrap_or_default())
        }
        None => (None, data),
    };
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    match api_route(&body, path_source) {
        Ok(route) => {
            assert_eq!(
                normalize_source(&route.source).as_deref(),
                Some(route.source.as_str()),
                "{route:?}"
            );
            assert!(
                route.target.starts_with("http://") || route.target.starts_with("https://"),
                "{route:?}"
            );
            let json = serde_json::to_value(&route).unwrap();
            assert_eq!(api_route(&json, None).as_ref(), Ok(&route), "{json}");
            assert_eq!(
                api_route(&json, Some(&route.source)).as_ref(),
                Ok(&route),
                "{json}"
            );
            let text = serde_json::to_string(&route).unwrap();
            assert_eq!(
                serde_json::from_str::<Route>(&text).unwrap(),
                route,
                "{text}"
            );
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "{body}");
            for (field, error) in &errors {
                match field.as_str() {
                    "body" | "source" | "target" => assert!(error.is_string(), "{errors:?}"),
                    "settings" => assert!(
                        error.is_string()
                            || error
                                .as_object()
                                .is_some_and(|m| !m.is_empty() && m.values().all(Value::is_string)),
                        "{errors:?}"
                    ),
                    _ => panic!("unknown field {field:?} in {errors:?}"),
                }
            }
        }
    }
});
