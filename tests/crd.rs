//! The CRD: the committed YAML is what the code generates, and the schema in it accepts
//! the examples and rejects what `kubectl apply` must reject.

use ceryx::controller::{CeryxRoute, crd_yaml};
use kube::CustomResourceExt;
use serde_json::{Value, json};

fn schema() -> Value {
    let crd = serde_json::to_value(CeryxRoute::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
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
    let bad = [
        (
            "both targets",
            json!({"source": "a.example.com", "target": {"url": "http://a", "service": {"name": "a", "port": 80}}}),
        ),
        (
            "no target",
            json!({"source": "a.example.com", "target": {}}),
        ),
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
    ];
    for (what, spec) in bad {
        assert!(!validator.is_valid(&with_spec(spec)), "accepted: {what}");
    }
}
