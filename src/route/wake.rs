//! How a route's backend is woken when it is asleep (connections refused, or a
//! Kubernetes Service with no ready endpoint), and put back to sleep when idle: webhooks the proxy calls, or
//! a workload the Kubernetes controller scales (`scale`), and how long requests are held.
//! Stored under a key of its own, beside the route's target and rules.
//!
//! Exactly one of `webhook` and `scale` is set. The REST API takes `webhook` only;
//! `scale` is written by the controller for a CeryxRoute's `spec.wake.scaleTargetRef`:
//! the proxy then leaves a wake request in the store instead of calling anything, since
//! it never talks to Kubernetes.

use super::rules::parse_duration;
use super::validate_target;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long requests are held when `timeout` is not given.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest hold allowed: a client (or a balancer in front) gives up long before.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// A route's wake settings (the REST API's `wake` object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Wake {
    /// Called with `POST {"host": ..., "route": ...}` when the backend refuses connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// The workload the Kubernetes controller scales from zero, `<Kind>/<name>` in the
    /// route's namespace (e.g. `Deployment/web`): set by the controller, never by the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<String>,
    /// How long requests are held for the backend to accept, e.g. `60s` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// What a browser navigation gets while the backend starts.
    #[serde(default)]
    pub strategy: Strategy,
    /// Called the same way once the route has served nothing for `idleAfter` (with
    /// `webhook`; a `scale` target is scaled to zero by the controller instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_webhook: Option<String>,
    /// Time without requests after which `sleepWebhook` is called (or the `scale` target
    /// scaled to zero), e.g. `15m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_after: Option<String>,
}

/// What the proxy does with a browser navigation while the backend starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Hold it like every other request.
    #[default]
    Hold,
    /// Answer at once with a page that refreshes itself until the backend is up.
    Page,
}

/// A wake setting that was refused: the field, as a JSON path from `wake`, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub(crate) struct WakeError {
    /// The field, e.g. `wake.timeout`.
    pub(crate) path: String,
    /// What is wrong with it.
    pub(crate) message: &'static str,
}

impl Wake {
    /// How long requests are held.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
            .as_deref()
            .and_then(parse_duration)
            .unwrap_or(DEFAULT_TIMEOUT)
    }

    /// When the backend is put to sleep (by `sleepWebhook` or by the controller): the
    /// idle time, if something puts it to sleep.
    pub(crate) fn idle_after(&self) -> Option<Duration> {
        if self.sleep_webhook.is_none() && self.scale.is_none() {
            return None;
        }
        self.idle_after.as_deref().and_then(parse_duration)
    }

    /// The webhooks' URLs (wake, then sleep), for the target rules to judge.
    pub(crate) fn urls(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let wake = self.webhook.as_deref().map(|url| ("wake.webhook", url));
        let sleep = self.sleep_webhook.as_deref();
        wake.into_iter()
            .chain(sleep.map(|url| ("wake.sleepWebhook", url)))
    }
}

/// Checks what the types cannot, and normalises the webhook URLs (`http://` when they
/// have no scheme), so the proxy never meets a setting it cannot use.
pub(crate) fn validate(wake: &mut Wake) -> Result<(), WakeError> {
    let at = |path: &str, message| WakeError {
        path: path.to_owned(),
        message,
    };
    const URL: &str =
        "Must be an http:// or https:// URL with a host and, if given, a port from 1 to 65535.";
    match (&mut wake.webhook, &wake.scale) {
        (Some(url), None) => {
            *url = validate_target(url).map_err(|_| at("wake.webhook", URL))?;
        }
        (None, Some(scale)) => {
            if wake.sleep_webhook.is_some() {
                return Err(at(
                    "wake.sleepWebhook",
                    "Not with scale: the controller scales the target to zero.",
                ));
            }
            match scale.split_once('/') {
                Some(("Deployment" | "StatefulSet", name)) if !name.is_empty() => {}
                _ => {
                    return Err(at(
                        "wake.scale",
                        "Must be Deployment/<name> or StatefulSet/<name>.",
                    ));
                }
            }
        }
        _ => return Err(at("wake", "Needs exactly one of webhook or scale.")),
    }
    if let Some(url) = &mut wake.sleep_webhook {
        *url = validate_target(url).map_err(|_| at("wake.sleepWebhook", URL))?;
    }
    if let Some(timeout) = &wake.timeout {
        match parse_duration(timeout) {
            Some(t) if !t.is_zero() && t <= MAX_TIMEOUT => {}
            _ => {
                return Err(at(
                    "wake.timeout",
                    "Must be a duration from 1ms to 1h, like 60s or 1m30s.",
                ));
            }
        }
    }
    match (&wake.sleep_webhook, &wake.idle_after) {
        (None, Some(idle)) if wake.scale.is_some() => match parse_duration(idle) {
            Some(t) if !t.is_zero() => {}
            _ => {
                return Err(at(
                    "wake.idleAfter",
                    "Must be a duration above zero, like 15m or 1h.",
                ));
            }
        },
        (Some(_), Some(idle)) => match parse_duration(idle) {
            Some(t) if !t.is_zero() => {}
            _ => {
                return Err(at(
                    "wake.idleAfter",
                    "Must be a duration above zero, like 15m or 1h.",
                ));
            }
        },
        (Some(_), None) => {
            return Err(at(
                "wake.idleAfter",
                "Required with sleepWebhook: the idle time after which it is called.",
            ));
        }
        (None, Some(_)) => {
            return Err(at(
                "wake.sleepWebhook",
                "Required with idleAfter: the URL called once the route is idle.",
            ));
        }
        (None, None) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wake(json: serde_json::Value) -> Result<Wake, String> {
        let mut wake: Wake = serde_json::from_value(json).map_err(|e| e.to_string())?;
        validate(&mut wake).map_err(|e| e.to_string())?;
        Ok(wake)
    }

    #[test]
    fn defaults_and_normalised_urls() {
        let w = wake(serde_json::json!({"webhook": "waker:8080/up"})).unwrap();
        assert_eq!(w.webhook.as_deref(), Some("http://waker:8080/up"));
        assert_eq!(w.timeout(), DEFAULT_TIMEOUT);
        assert_eq!(w.strategy, Strategy::Hold);
        assert_eq!(w.idle_after(), None);
        // Left out when unset, so what is stored is what was given.
        assert_eq!(
            serde_json::to_value(&w).unwrap(),
            serde_json::json!({"webhook": "http://waker:8080/up", "strategy": "hold"})
        );
        let w = wake(
            serde_json::json!({"webhook": "http://w", "timeout": "5s", "strategy": "page",
            "sleepWebhook": "http://w/down", "idleAfter": "15m"}),
        )
        .unwrap();
        assert_eq!(w.timeout(), Duration::from_secs(5));
        assert_eq!(w.strategy, Strategy::Page);
        assert_eq!(w.idle_after(), Some(Duration::from_secs(900)));
        let w = wake(serde_json::json!({"scale": "Deployment/web", "idleAfter": "3s"})).unwrap();
        assert_eq!(w.scale.as_deref(), Some("Deployment/web"));
        assert_eq!(w.idle_after(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn each_refusal_names_its_field() {
        for (json, field) in [
            (serde_json::json!({"webhook": "ftp://x"}), "wake.webhook"),
            (
                serde_json::json!({"webhook": "x", "timeout": "soon"}),
                "wake.timeout",
            ),
            (
                serde_json::json!({"webhook": "x", "timeout": "0s"}),
                "wake.timeout",
            ),
            (
                serde_json::json!({"webhook": "x", "timeout": "2h"}),
                "wake.timeout",
            ),
            (
                serde_json::json!({"webhook": "x", "sleepWebhook": "y"}),
                "wake.idleAfter",
            ),
            (
                serde_json::json!({"webhook": "x", "idleAfter": "1m"}),
                "wake.sleepWebhook",
            ),
            (
                serde_json::json!({"webhook": "x", "sleepWebhook": "http://a b", "idleAfter": "1m"}),
                "wake.sleepWebhook",
            ),
        ] {
            let error = wake(json.clone()).unwrap_err();
            assert!(error.starts_with(&format!("{field}: ")), "{json}: {error}");
        }
        for (json, field) in [
            (serde_json::json!({}), "wake"),
            (
                serde_json::json!({"webhook": "x", "scale": "Deployment/web"}),
                "wake",
            ),
            (serde_json::json!({"scale": "Pod/web"}), "wake.scale"),
            (
                serde_json::json!({"scale": "Deployment/web", "sleepWebhook": "y", "idleAfter": "1m"}),
                "wake.sleepWebhook",
            ),
        ] {
            let error = wake(json.clone()).unwrap_err();
            assert!(error.starts_with(&format!("{field}: ")), "{json}: {error}");
        }
    }
}
