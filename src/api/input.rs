//! Reading a route from a request body the way Ceryx's API did (non-strict booleans,
//! explicit `null`s, unknown fields ignored, strings trimmed), but with every problem
//! reported per field instead of a 500. Only the JSON shapes are judged here; what a
//! valid source, target or mode is, [`crate::route`] decides.

use crate::route::{
    Route, RouteError, Rule, Settings, Wake, normalize_source, rules, validate_target, wake,
};
use serde_json::{Map, Value};

/// Field name → what is wrong with it (`settings` nests its own map).
pub type FieldErrors = Map<String, Value>;

const REQUIRED: &str = "This field is required.";

/// Parses a route body. `path_source` is the source from the URL (PUT), which wins over
/// any `source` in the body, as in Ceryx.
pub fn parse_route(body: &Value, path_source: Option<&str>) -> Result<Route, FieldErrors> {
    let mut errors = FieldErrors::new();
    let Some(fields) = body.as_object() else {
        errors.insert(
            "body".into(),
            "Must be a JSON object with source and target.".into(),
        );
        return Err(errors);
    };

    let source = match path_source {
        Some(source) => source_from(Some(source)),
        None => string(fields.get("source")).and_then(|s| source_from(s.as_deref())),
    };
    let target = string(fields.get("target"))
        .and_then(|t| validate_target(&t.ok_or(REQUIRED)?).map_err(|e| refusal(&e)));
    let settings = parse_settings(fields.get("settings"));
    let rules = parse_rules(fields.get("rules"));
    let wake = parse_wake(fields.get("wake"));

    match (source, target, settings, rules, wake) {
        (Ok(source), Ok(target), Ok(settings), Ok(rules), Ok(wake)) => Ok(Route {
            source,
            target,
            settings,
            rules,
            wake: wake.map(Box::new),
        }),
        (source, target, settings, rules, wake) => {
            if let Err(e) = source {
                errors.insert("source".into(), e.into());
            }
            if let Err(e) = target {
                errors.insert("target".into(), e.into());
            }
            if let Err(e) = settings {
                errors.insert("settings".into(), e);
            }
            if let Err(e) = rules {
                errors.insert("rules".into(), e.into());
            }
            if let Err(e) = wake {
                errors.insert("wake".into(), e.into());
            }
            Err(errors)
        }
    }
}

fn source_from(source: Option<&str>) -> Result<String, &'static str> {
    normalize_source(source.ok_or(REQUIRED)?).map_err(|e| refusal(&e))
}

/// The API's words for a value the route model refused (the field is the key it is
/// reported under).
fn refusal(error: &RouteError) -> &'static str {
    match error {
        RouteError::InvalidSource(_) => {
            "Must be a host name, a *.suffix pattern or $wildcard, at most 253 characters."
        }
        RouteError::InvalidTarget(_) => {
            "Must be an http:// or https:// URL with a host name or IP address and, if given, a port from 1 to 65535."
        }
        RouteError::InvalidMode(_) => "Must be one of: proxy, redirect.",
    }
}

/// A trimmed string without NULs; `None` for missing, `null` or blank.
fn string(value: Option<&Value>) -> Result<Option<String>, &'static str> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let s = s.replace('\0', "");
            let s = s.trim();
            Ok((!s.is_empty()).then(|| s.to_owned()))
        }
        Some(_) => Err("Must be a string."),
    }
}

fn parse_settings(value: Option<&Value>) -> Result<Settings, Value> {
    let fields = match value {
        None | Some(Value::Null) => return Ok(Settings::default()),
        Some(Value::Object(fields)) => fields,
        Some(_) => return Err("Must be an object.".into()),
    };
    let mut errors = Map::new();
    let mut field = |name: &str, result: Result<(), &'static str>| {
        if let Err(e) = result {
            errors.insert(name.into(), e.into());
        }
    };
    let mut settings = Settings::default();
    field(
        "enforce_https",
        boolean(fields.get("enforce_https")).map(|b| settings.enforce_https = b),
    );
    field(
        "mode",
        match string(fields.get("mode")) {
            Ok(None) => Ok(()),
            Ok(Some(m)) => m
                .parse()
                .map(|m| settings.mode = m)
                .map_err(|e| refusal(&e)),
            Err(_) => {
                // Not a string: refused like an unknown word.
                let value = fields.get("mode").map(Value::to_string).unwrap_or_default();
                Err(refusal(&RouteError::InvalidMode(value)))
            }
        },
    );
    field(
        "certificate_path",
        string(fields.get("certificate_path"))
            .map(|p| settings.certificate_path = p)
            .map_err(|_| "Must be a string or null."),
    );
    field(
        "key_path",
        string(fields.get("key_path"))
            .map(|p| settings.key_path = p)
            .map_err(|_| "Must be a string or null."),
    );
    if errors.is_empty() {
        Ok(settings)
    } else {
        Err(Value::Object(errors))
    }
}

/// The routing rules (ours): strict JSON in the HTTPRoute shape, then [`rules::validate`];
/// the message names the field by its path (`rules[0].matches[0].path.type: ...`).
fn parse_rules(value: Option<&Value>) -> Result<Vec<Rule>, String> {
    let value = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(value) => value.clone(),
    };
    let rules: Vec<Rule> = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        format!("rules{path}: {}", e.into_inner())
    })?;
    rules::validate(&rules, rules::Backends::Urls).map_err(|e| e.to_string())?;
    Ok(rules)
}

/// How to wake the backend (ours): strict JSON, then [`wake::validate`]; the message
/// names the field by its path (`wake.timeout: ...`).
fn parse_wake(value: Option<&Value>) -> Result<Option<Wake>, String> {
    let value = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(value) => value.clone(),
    };
    let mut wake: Wake = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            String::new()
        } else {
            format!(".{path}")
        };
        format!("wake{path}: {}", e.into_inner())
    })?;
    // The API wakes through webhooks only: `scale` is the controller's.
    if wake.scale.is_some() {
        return Err("wake: unknown field `scale`".to_owned());
    }
    if wake.webhook.is_none() {
        return Err("wake: missing field `webhook`".to_owned());
    }
    wake::validate(&mut wake).map_err(|e| e.to_string())?;
    Ok(Some(wake))
}

/// Ceryx's non-strict booleans: `true`/`false`, 1/0, and the strings "true", "false",
/// "on", "off", "yes", "no", "1", "0" and "" in any case.
fn boolean(value: Option<&Value>) -> Result<bool, &'static str> {
    const BAD: &str = "Must be a boolean.";
    match value {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            _ => Err(BAD),
        },
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Ok(true),
            "false" | "off" | "no" | "0" | "" => Ok(false),
            _ => Err(BAD),
        },
        Some(_) => Err(BAD),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Mode;
    use serde_json::json;

    #[test]
    fn old_client_bodies_are_accepted() {
        let body = json!({
            "source": " App.Example.com ",
            "target": "api:5555",
            "settings": {"enforce_https": "1", "mode": null, "certificate_path": null, "key_path": "  ", "extra": 1},
            "unknown": true
        });
        let route = parse_route(&body, None).unwrap();
        assert_eq!(route.source, "app.example.com");
        assert_eq!(route.target, "http://api:5555");
        assert!(route.settings.enforce_https);
        assert_eq!(route.settings.mode, Mode::Proxy);
        assert_eq!(route.settings.key_path, None);
        let put = parse_route(
            &json!({"source": "ignored.test", "target": "https://x"}),
            Some("path.test"),
        )
        .unwrap();
        assert_eq!(put.source, "path.test");
    }

    #[test]
    fn every_bad_field_is_named() {
        let body = json!({"source": "bad host", "settings": {"enforce_https": "maybe", "mode": "tunnel", "key_path": 3}});
        let errors = parse_route(&body, None).unwrap_err();
        assert_eq!(errors["target"], REQUIRED);
        assert!(errors["source"].as_str().unwrap().contains("host name"));
        assert_eq!(errors["settings"]["enforce_https"], "Must be a boolean.");
        assert_eq!(
            errors["settings"]["mode"],
            "Must be one of: proxy, redirect."
        );
        assert_eq!(errors["settings"]["key_path"], "Must be a string or null.");
        let wake =
            json!({"source": "a.test", "target": "x", "wake": {"webhook": "w", "timeout": 60}});
        assert_eq!(
            parse_route(&wake, None).unwrap_err()["wake"],
            "wake.timeout: invalid type: integer `60`, expected a string"
        );
        let wake =
            json!({"source": "a.test", "target": "x", "wake": {"webhook": "w", "strategy": "nap"}});
        assert!(
            parse_route(&wake, None).unwrap_err()["wake"]
                .as_str()
                .unwrap()
                .starts_with("wake.strategy: unknown variant `nap`")
        );
        assert!(
            parse_route(&json!(["not", "an", "object"]), None)
                .unwrap_err()
                .contains_key("body")
        );
        let long = format!("{}.com", "a.".repeat(130));
        assert!(
            parse_route(&json!({"source": long, "target": "x"}), None)
                .unwrap_err()
                .contains_key("source")
        );
    }
}
