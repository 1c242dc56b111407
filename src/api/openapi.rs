//! The API's OpenAPI 3 document, served at `/api/openapi.json`. A test calls every
//! path and method it lists and checks the answer is one it documents.

use super::reply::json;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

/// `GET /api/openapi.json`.
pub async fn document() -> Response {
    json(StatusCode::OK, &spec())
}

/// A write's 503: `detail` says whether the route may have changed.
const WRITE_UNAVAILABLE: &str = "Route store unavailable (nothing was changed), or the write was not confirmed in time, e.g. by a replica (it may or may not have been kept); `detail` says which";

fn error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn route(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Route"}}}})
}

/// The schemas of the rules' types (`Rule` and what it holds) and of `Wake`, generated
/// from the Rust types as OpenAPI 3.0 `components.schemas`, so the document cannot drift
/// from them.
fn rule_schemas() -> serde_json::Map<String, Value> {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    generator.subschema_for::<crate::route::Rule>();
    generator.subschema_for::<crate::route::Wake>();
    generator.take_definitions(true)
}

fn spec() -> Value {
    let source = json!({
        "name": "source", "in": "path", "required": true,
        "description": "The route's source host name (`$wildcard` as `%24wildcard`).",
        "schema": {"type": "string"}
    });
    let body = |schema: &str| json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    let mut document = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Ceryx API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Routes from public host names to targets, compatible with every Ceryx API generation. \
                Every path also answers with a trailing slash; `/route` and `/route/` are aliases of `/api/routes`. \
                With CERYX_API_TOKEN set, every call but /healthz and /readyz needs `Authorization: Bearer <token>`."
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/routes": {
                "get": {
                    "summary": "List every route",
                    "responses": {
                        "200": {"description": "All routes", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Route"}}}}},
                        "401": error("Missing or invalid token"),
                        "503": error("Route store unavailable")
                    }
                },
                "post": {
                    "summary": "Create (or overwrite) a route",
                    "requestBody": body("RouteInput"),
                    "responses": {
                        "201": route("The route as stored"),
                        "400": error("Invalid JSON or fields; `errors` names each field"),
                        "409": error("The route is managed by a CeryxRoute resource"),
                        "401": error("Missing or invalid token"),
                        "413": error("Body too large"),
                        "503": error(WRITE_UNAVAILABLE)
                    }
                }
            },
            "/api/routes/{source}": {
                "parameters": [source],
                "get": {
                    "summary": "Read one route",
                    "responses": {
                        "200": route("The route"),
                        "401": error("Missing or invalid token"),
                        "404": error("No route found for <source>."),
                        "503": error("Route store unavailable")
                    }
                },
                "put": {
                    "summary": "Create or replace a route (settings are replaced, not merged)",
                    "requestBody": body("RouteInput"),
                    "responses": {
                        "200": route("The route as stored"),
                        "400": error("Invalid JSON or fields; `errors` names each field"),
                        "409": error("The route is managed by a CeryxRoute resource"),
                        "401": error("Missing or invalid token"),
                        "413": error("Body too large"),
                        "503": error(WRITE_UNAVAILABLE)
                    }
                },
                "delete": {
                    "summary": "Delete a route (idempotent)",
                    "responses": {
                        "204": {"description": "Deleted, or did not exist"},
                        "409": error("The route is managed by a CeryxRoute resource"),
                        "401": error("Missing or invalid token"),
                        "503": error(WRITE_UNAVAILABLE)
                    }
                }
            },
            "/api/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3 document"}, "401": error("Missing or invalid token")}}
            },
            "/healthz": {
                "get": {"summary": "The process is up", "security": [], "responses": {"200": {"description": "Up"}}}
            },
            "/readyz": {
                "get": {"summary": "The route store answers", "security": [], "responses": {"200": {"description": "Ready"}, "503": error("Route store unavailable")}}
            }
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Settings": {
                    "type": "object",
                    "required": ["enforce_https", "mode", "certificate_path", "key_path"],
                    "properties": {
                        "enforce_https": {"type": "boolean", "description": "Redirect plain HTTP to HTTPS"},
                        "mode": {"type": "string", "enum": ["proxy", "redirect"]},
                        "certificate_path": {"type": "string", "nullable": true, "description": "PEM certificate on the proxy's filesystem"},
                        "key_path": {"type": "string", "nullable": true, "description": "PEM key on the proxy's filesystem"}
                    }
                },
                "Route": {
                    "type": "object",
                    "required": ["source", "target", "settings"],
                    "properties": {
                        "source": {"type": "string", "example": "app.example.com"},
                        "target": {"type": "string", "example": "http://app.internal:8000"},
                        "settings": {"$ref": "#/components/schemas/Settings"},
                        "rules": {"type": "array", "items": {"$ref": "#/components/schemas/Rule"},
                                  "description": "Routing rules (left out when there are none)"},
                        "wake": {"$ref": "#/components/schemas/Wake"}
                    }
                },
                "RouteInput": {
                    "type": "object",
                    "required": ["target"],
                    "description": "`source` is required for POST and ignored for PUT (the path names it). A target without scheme gets http://. \
                        Booleans may also be \"true\"/\"false\"/\"on\"/\"off\"/\"1\"/\"0\"/1/0; nulls and a missing `settings` mean defaults; unknown fields are ignored.",
                    "properties": {
                        "source": {"type": "string", "maxLength": 253, "description": "Host name, *.suffix pattern or $wildcard"},
                        "target": {"type": "string", "description": "http:// or https:// URL with a host name or IP address and an optional port (1-65535). Refused: addresses in CERYX_UPSTREAM_DENY and, in `ceryx run`, the proxy's own listener."},
                        "settings": {
                            "type": "object", "nullable": true,
                            "properties": {
                                "enforce_https": {"nullable": true, "oneOf": [{"type": "boolean"}, {"type": "string"}, {"type": "integer"}]},
                                "mode": {"type": "string", "nullable": true, "enum": ["proxy", "redirect"]},
                                "certificate_path": {"type": "string", "nullable": true},
                                "key_path": {"type": "string", "nullable": true}
                            }
                        },
                        "rules": {
                            "type": "array", "nullable": true, "maxItems": 64,
                            "items": {"$ref": "#/components/schemas/Rule"},
                            "description": "HTTPRoute-shaped routing rules: `matches` (path Exact/PathPrefix/RegularExpression, headers, queryParams, method) \
                                in Gateway API precedence, `filters` (RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite, RequestMirror), \
                                weighted `backendRefs` (`url` or `endpoints`, optional `healthCheck`), `timeouts` (`request`, `backendRequest`) and `retry` \
                                (`attempts`, `codes`, `backoff`). Requests no rule matches go to `target`. A mistake is reported under `errors.rules` with its path."
                        },
                        "wake": {
                            "nullable": true,
                            "allOf": [{"$ref": "#/components/schemas/Wake"}],
                            "description": "How to wake the backend when it refuses connections: `webhook` is called (POST `{\"host\", \"route\"}`) by one replica, \
                                and requests are held up to `timeout` (default 60s) until the backend accepts. `strategy: page` answers browser navigations at once \
                                with a self-refreshing page. `sleepWebhook` with `idleAfter` is called once the route has been idle that long. \
                                Webhook URLs are checked like targets. A mistake is reported under `errors.wake` with its path."
                        }
                    }
                },
                "Error": {
                    "type": "object",
                    "required": ["detail"],
                    "properties": {
                        "detail": {"type": "string"},
                        "errors": {"type": "object", "description": "Field → message; `settings` nests its own fields"}
                    }
                }
            }
        }
    });
    if let Some(schemas) = document["components"]["schemas"].as_object_mut() {
        schemas.extend(rule_schemas());
    }
    document
}
