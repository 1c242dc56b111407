//! The CRD: the committed YAML is what the code generates, the schema in it accepts the
//! examples and rejects what `kubectl apply` must reject, and it is one the apiserver
//! takes without a warning (known formats, bounded strings, readable CEL messages).

use ceryx::controller::{CeryxRoute, crd_yaml};
use kube::CustomResourceExt;
use serde_json::{Value, json};

fn schema() -> Value {
    crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn committed_crd_is_what_the_code_generates() {
    let committed = std::fs::read_to_string("crds/ceryxroute.yaml").unwrap();
    assert!(
        committed == crd_yaml().unwrap(),
        "crds/ceryxroute.yaml is out of date: run `make crd` and commit it"
    );
}

#[test]
fn examples_are_accepted_by_the_schema_and_the_types() {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let mut examples = 0;
    for entry in std::fs::read_dir("examples").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let value: Value = serde_yaml::from_str(&text).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        serde_yaml::from_str::<CeryxRoute>(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        examples += 1;
    }
    assert!(examples >= 3, "examples found: {examples}");
}

#[test]
fn the_schema_rejects_bad_resources() {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let with_spec = |spec: Value| json!({"apiVersion": "ceryx.dev/v1alpha1", "kind": "CeryxRoute", "metadata": {"name": "x"}, "spec": spec});
    let good = with_spec(json!({"source": "a.example.com", "target": {"url": "http://a:80"}}));
    assert!(validator.is_valid(&good));
    // Exactly one target, and redirect needing a URL, are CEL rules that only the
    // apiserver evaluates (`cel_rules_have_readable_messages`).
    let bad = [
        (
            "upper-case source",
            json!({"source": "A.example.com", "target": {"url": "http://a"}}),
        ),
        (
            "source with a port",
            json!({"source": "a.example.com:80", "target": {"url": "http://a"}}),
        ),
        (
            "inner wildcard",
            json!({"source": "a.*.example.com", "target": {"url": "http://a"}}),
        ),
        (
            "source too long",
            json!({"source": format!("{}.com", "a.".repeat(130)), "target": {"url": "http://a"}}),
        ),
        (
            "ftp target",
            json!({"source": "a.example.com", "target": {"url": "ftp://a"}}),
        ),
        (
            "port 0",
            json!({"source": "a.example.com", "target": {"service": {"name": "a", "port": 0}}}),
        ),
        (
            "bad service name",
            json!({"source": "a.example.com", "target": {"service": {"name": "A_b", "port": 80}}}),
        ),
        (
            "unknown mode",
            json!({"source": "a.example.com", "target": {"url": "http://a"}, "settings": {"mode": "tunnel"}}),
        ),
        ("no source", json!({"target": {"url": "http://a"}})),
        (
            "url too long",
            json!({"source": "a.example.com", "target": {"url": format!("http://a/{}", "b".repeat(2048))}}),
        ),
        (
            "port above 65535",
            json!({"source": "a.example.com", "target": {"service": {"name": "a", "port": 65536}}}),
        ),
        (
            "bad secret name",
            json!({"source": "a.example.com", "target": {"url": "http://a"}, "settings": {"tls": {"secretName": "A_b"}}}),
        ),
        (
            "bad ingress class name",
            json!({"source": "a.example.com", "target": {"url": "http://a"}, "ingressClassName": "Ceryx"}),
        ),
    ];
    for (what, spec) in bad {
        assert!(!validator.is_valid(&with_spec(spec)), "accepted: {what}");
    }
}

fn crd() -> Value {
    serde_json::to_value(CeryxRoute::crd()).unwrap()
}

/// Every schema in `schema` with its path (`.spec.target.url`, `[]` for items), the
/// members of `oneOf`/`anyOf`/`allOf` excluded (they are checked apart).
fn schemas<'a>(path: String, schema: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            schemas(format!("{path}.{name}"), property, out);
        }
    }
    if schema["items"].is_object() {
        schemas(format!("{path}[]"), &schema["items"], out);
    }
    if schema["additionalProperties"].is_object() {
        schemas(format!("{path}{{}}"), &schema["additionalProperties"], out);
    }
    out.push((path, schema));
}

fn all_schemas(root: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    schemas(String::new(), root, &mut out);
    out
}

#[test]
fn formats_are_ones_the_apiserver_knows() {
    let schema = schema();
    for (path, s) in all_schemas(&schema) {
        if let Some(format) = s.get("format") {
            assert!(
                ["int32", "int64", "date-time"].contains(&format.as_str().unwrap()),
                "{path}: format {format}"
            );
        }
    }
    let yaml = crd_yaml().unwrap();
    assert!(!yaml.contains("format: uint"), "{yaml}");
    let port = &schema["properties"]["spec"]["properties"]["target"]["properties"]["service"]["properties"]
        ["port"];
    assert_eq!(port["type"], "integer");
    assert_eq!(port["format"], "int32");
    assert_eq!(port["minimum"], 1.0);
    assert_eq!(port["maximum"], 65535.0);
}

/// Unbounded strings make the apiserver assume the largest request for the CEL cost.
#[test]
fn every_string_is_bounded() {
    let schema = schema();
    let mut strings = 0;
    for (path, s) in all_schemas(&schema) {
        if s["type"] != "string" {
            continue;
        }
        strings += 1;
        let bounded_by_shape = s.get("enum").is_some() || s["format"] == "date-time";
        assert!(
            s["maxLength"].is_u64() || bounded_by_shape,
            "{path} has no maxLength"
        );
    }
    assert!(strings >= 12, "strings found: {strings}");
}

#[test]
fn names_follow_kubernetes_rules() {
    let spec = &schema()["properties"]["spec"]["properties"];
    let subdomain = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
    let secret = &spec["settings"]["properties"]["tls"]["properties"]["secretName"];
    assert_eq!(secret["pattern"], subdomain);
    assert_eq!(secret["maxLength"], 253);
    assert_eq!(spec["ingressClassName"]["pattern"], subdomain);
    assert_eq!(spec["ingressClassName"]["maxLength"], 253);
    let service = &spec["target"]["properties"]["service"]["properties"]["name"];
    assert_eq!(service["pattern"], "^[a-z]([-a-z0-9]*[a-z0-9])?$");
    assert_eq!(service["maxLength"], 63);
    assert_eq!(spec["source"]["maxLength"], 253);
    assert_eq!(spec["target"]["properties"]["url"]["maxLength"], 2048);
}

/// What apiextensions.k8s.io/v1 requires of a structural schema, as far as this one
/// uses it: a type everywhere, and junctors that only repeat declared properties.
#[test]
fn the_schema_is_structural() {
    let schema = schema();
    for (path, s) in all_schemas(&schema) {
        assert!(s["type"].is_string(), "{path} has no single type: {s}");
        for junctor in ["oneOf", "anyOf", "allOf"] {
            for member in s[junctor].as_array().into_iter().flatten() {
                let member = member.as_object().unwrap();
                assert!(
                    member.keys().all(|k| k == "required"),
                    "{path}.{junctor}: {member:?}"
                );
                for name in member["required"].as_array().unwrap() {
                    let name = name.as_str().unwrap();
                    assert!(
                        s["properties"].get(name).is_some(),
                        "{path}.{junctor}: {name}"
                    );
                }
            }
        }
    }
}

#[test]
fn cel_rules_have_readable_messages() {
    let schema = schema();
    let spec = &schema["properties"]["spec"];
    assert_eq!(
        spec["x-kubernetes-validations"],
        json!([{
            "rule": "!has(self.settings) || !has(self.settings.mode) || self.settings.mode != 'redirect' || has(self.target.url)",
            "message": "mode: redirect needs target.url",
        }])
    );
    assert_eq!(
        spec["properties"]["target"]["x-kubernetes-validations"],
        json!([{
            "rule": "has(self.url) != has(self.service)",
            "message": "spec.target needs exactly one of url or service",
        }])
    );
    assert_eq!(
        spec["properties"]["wake"]["x-kubernetes-validations"],
        json!([{
            "rule": "has(self.scaleTargetRef) != has(self.webhook)",
            "message": "spec.wake needs exactly one of scaleTargetRef or webhook",
        }, {
            "rule": "!has(self.sleepWebhook) || has(self.webhook)",
            "message": "spec.wake.sleepWebhook goes with webhook",
        }])
    );
    let rules = all_schemas(&schema)
        .iter()
        .filter_map(|(_, s)| s["x-kubernetes-validations"].as_array())
        .flatten()
        .count();
    assert_eq!(rules, 4);
}

#[test]
fn conditions_are_a_map_keyed_by_type() {
    let conditions = &schema()["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    let required = conditions["items"]["required"].as_array().unwrap();
    assert!(required.contains(&json!("type")));
    assert_eq!(
        conditions["items"]["properties"]["status"]["enum"],
        json!(["True", "False", "Unknown"])
    );
}

#[test]
fn the_status_the_controller_writes_fits_the_schema() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    let condition = |type_: &str, reason: &str| Condition {
        type_: type_.into(),
        status: "True".into(),
        reason: reason.into(),
        message: "Owns host a.example.com".into(),
        observed_generation: Some(1),
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
    };
    let status = ceryx::controller::CeryxRouteStatus {
        observed_generation: Some(1),
        source: Some("a.example.com".into()),
        target: Some("http://a:80".into()),
        conditions: vec![
            condition("Accepted", "Accepted"),
            condition("ResolvedRefs", "ResolvedRefs"),
            condition("Programmed", "Programmed"),
        ],
    };
    let object = json!({
        "apiVersion": "ceryx.dev/v1alpha1",
        "kind": "CeryxRoute",
        "metadata": {"name": "x"},
        "spec": {"source": "a.example.com", "target": {"url": "http://a:80"}},
        "status": status,
    });
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&object)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let mut bad = object.clone();
    bad["status"]["conditions"][0]["reason"] = json!("not a reason");
    assert!(!validator.is_valid(&bad));
}

#[test]
fn names_and_printer_columns() {
    let crd = crd();
    assert_eq!(crd["spec"]["names"]["categories"], json!(["ceryx"]));
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["cxr"]));
    let columns: Vec<(&str, &str)> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["jsonPath"].as_str().unwrap()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Host", ".spec.source"),
            ("Target", ".status.target"),
            (
                "Programmed",
                r#".status.conditions[?(@.type=="Programmed")].status"#
            ),
            (
                "Reason",
                r#".status.conditions[?(@.type=="Programmed")].reason"#
            ),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
}
