//! The Helm chart against a real kube-apiserver (tests/common/cluster.rs): `helm
//! install`, `upgrade` and `uninstall` as the README says to run them, in a namespace
//! that enforces the Pod Security Standard "restricted". This binary has its own control
//! plane, with nothing installed before the chart: the CRD comes from
//! `charts/ceryx/crds/`. No kubelet runs, so pods never start and nothing waits for them
//! (no `--wait`).

mod common;

use common::cluster::{ControlPlane, control_plane};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const CHART: &str = "charts/ceryx";
const PRODUCTION: &str = "charts/ceryx/ci/production-values.yaml";
const CRD: &str = "crd/ceryxroutes.ceryx.dev";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The lines of a helm or kubectl stderr that report a warning: API server warnings
/// (Helm 4 logs them as `I… warnings.go:…] "Warning: …"`, kubectl as `Warning: …`),
/// klog warning or error lines (`W0102 …`, `E0102 …`), Helm's own `WARNING: …`.
fn warnings(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            let klog = l.len() > 5
                && (l.starts_with('W') || l.starts_with('E'))
                && l[1..5].bytes().all(|b| b.is_ascii_digit());
            klog || l.to_ascii_lowercase().contains("warning")
        })
        .collect()
}

/// Runs `scripts/helm` against the control plane; asserts that it succeeds and prints
/// no warning; returns its stdout.
fn helm(plane: &ControlPlane, args: &[&str]) -> String {
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(root().join("scripts/helm"))
        .args(args)
        .arg("--kubeconfig")
        .arg(&plane.kubeconfig)
        .current_dir(root())
        .output()
        .expect("bash scripts/helm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "helm {args:?} failed: {stderr}");
    assert!(
        warnings(&stderr).is_empty(),
        "helm {args:?} warned: {:?}\nits stderr: {stderr}",
        warnings(&stderr)
    );
    eprintln!("helm {} took {:?}", args[0], started.elapsed());
    String::from_utf8(out.stdout).unwrap()
}

/// `Kind/name` of every object `helm template` renders for `release` in `ns`.
fn rendered(release: &str, ns: &str, extra: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["template", release, CHART, "--namespace", ns];
    args.extend_from_slice(extra);
    let text = common::cluster::helm(&args);
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .map(|o| kind_name(&o))
        .collect()
}

fn kind_name(object: &Value) -> String {
    format!(
        "{}/{}",
        object["kind"].as_str().unwrap(),
        object["metadata"]["name"].as_str().unwrap()
    )
}

/// Which of `objects` (`Kind/name`, in `ns` or cluster-scoped) the API server has.
fn existing(plane: &ControlPlane, ns: &str, objects: &BTreeSet<String>) -> BTreeSet<String> {
    let mut args = vec!["get", "-n", ns, "--ignore-not-found", "-o", "json"];
    args.extend(objects.iter().map(String::as_str));
    let out = plane.kubectl_ok(&args);
    if out.trim().is_empty() {
        return BTreeSet::new();
    }
    let got: Value = serde_json::from_str(&out).unwrap();
    match got["kind"].as_str() {
        Some("List") => got["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(kind_name)
            .collect(),
        _ => BTreeSet::from([kind_name(&got)]),
    }
}

/// The objects of `kinds` (comma-separated) with the release's instance label, as
/// `kubectl get -o name` names them.
fn labelled(plane: &ControlPlane, ns: &str, release: &str, kinds: &str) -> Vec<String> {
    let selector = format!("app.kubernetes.io/instance={release}");
    let out = plane.kubectl_ok(&["get", kinds, "-n", ns, "-l", &selector, "-o", "name"]);
    out.lines().map(str::to_owned).collect()
}

/// The value of `name` in the env of the first container of Deployment `deployment`.
fn deployment_env(plane: &ControlPlane, ns: &str, deployment: &str, name: &str) -> Option<String> {
    let out = plane.kubectl_ok(&["get", "deployment", deployment, "-n", ns, "-o", "json"]);
    let d: Value = serde_json::from_str(&out).unwrap();
    d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str().map(str::to_owned))
}

/// `kubectl auth can-i <request>` for the controller ServiceAccount of `release` in `ns`.
fn controller_can(plane: &ControlPlane, ns: &str, release: &str, request: &[&str]) -> bool {
    let sa = format!("system:serviceaccount:{ns}:{release}-ceryx-controller");
    let mut args = vec!["auth", "can-i", "-n", ns, "--as", &sa];
    args.extend_from_slice(request);
    let out = plane.kubectl(&args);
    match String::from_utf8_lossy(&out.stdout).trim() {
        "yes" => true,
        "no" => false,
        other => panic!(
            "kubectl auth can-i {request:?}: {other:?} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn restricted_namespace(plane: &ControlPlane) -> String {
    let ns = plane.namespace("chart");
    let out = plane.kubectl(&[
        "label",
        "namespace",
        &ns,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && warnings(&stderr).is_empty(),
        "{stderr}"
    );
    ns
}

/// The README's "Install on Kubernetes": `helm install` (the CRD from the chart, the
/// NetworkPolicies, the generated Redis password), `helm upgrade` with the same values
/// (the password and API token unchanged), then to the production values, a second release beside the first, `helm
/// uninstall`; each admitted without a warning where Pod Security "restricted" is
/// enforced, and leaving what the README says it leaves.
#[test]
fn helm_installs_upgrades_and_uninstalls_in_a_restricted_namespace() {
    let Some(plane) = control_plane() else { return };
    let ns = restricted_namespace(plane);
    let crd_out = plane.kubectl(&["get", CRD]);
    assert!(
        !crd_out.status.success(),
        "no CRD before the chart's install"
    );

    // The namespace does warn, so a quiet install below means compliant pods: a pod
    // template that escalates privileges draws the warning (server-side dry run).
    let bad = plane.dir.join(format!("{ns}-bad.yaml"));
    std::fs::write(
        &bad,
        common::cluster::helm(&[
            "template",
            "bad",
            CHART,
            "--namespace",
            &ns,
            "--set",
            "securityContext.allowPrivilegeEscalation=true",
        ]),
    )
    .unwrap();
    let out = plane.kubectl(&[
        "apply",
        "--dry-run=server",
        "-n",
        &ns,
        "-f",
        bad.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        warnings(&stderr)
            .iter()
            .any(|w| w.contains("would violate PodSecurity \"restricted")),
        "the namespace warns: {stderr}"
    );

    // Install: the CRD from crds/, every rendered object, RBAC as the controller needs.
    let status = helm(plane, &["install", "edge", CHART, "--namespace", &ns]);
    assert!(status.contains("STATUS: deployed"), "{status}");
    plane.kubectl_ok(&["wait", "--for=condition=Established", CRD, "--timeout=30s"]);
    plane.kubectl_ok(&["get", "cxr", "-n", &ns]);
    let defaults = rendered("edge", &ns, &[]);
    for object in [
        "Deployment/edge-ceryx-redis",
        "Secret/edge-ceryx-redis",
        "NetworkPolicy/edge-ceryx-redis",
        "NetworkPolicy/edge-ceryx-api",
        "NetworkPolicy/edge-ceryx-proxy",
        "NetworkPolicy/edge-ceryx-metrics",
    ] {
        assert!(defaults.contains(object), "{object}: {defaults:?}");
    }
    assert_eq!(existing(plane, &ns, &defaults), defaults);
    let secret = |name: &str, key: &str| {
        let path = format!("jsonpath={{.data.{key}}}");
        let value = plane.kubectl_ok(&["get", "secret", name, "-n", &ns, "-o", &path]);
        assert!(!value.trim().is_empty(), "{name} has {key}");
        value
    };
    let redis_password = secret("edge-ceryx-redis", "password");
    let api_token = secret("edge-ceryx-api-token", "token");
    assert_eq!(
        deployment_env(plane, &ns, "edge-ceryx-controller", "CERYX_LEASE_NAME").as_deref(),
        Some("edge-ceryx-controller")
    );
    assert_eq!(
        deployment_env(plane, &ns, "edge-ceryx-controller", "CERYX_LEADER_ELECTION").as_deref(),
        Some("true")
    );
    // What the controller may call, as the API server decides it for its ServiceAccount
    // (asked at once: one kubectl each).
    let requests = [
        (&["watch", "ceryxroutes.ceryx.dev"][..], true),
        (&["patch", "ceryxroutes.ceryx.dev"], true),
        (
            &["patch", "ceryxroutes.ceryx.dev", "--subresource=status"],
            true,
        ),
        (&["update", "ceryxroutes.ceryx.dev"], false),
        (&["create", "events.events.k8s.io"], true),
        (&["watch", "secrets"], true),
        (&["list", "services"], true),
        (&["get", "services"], false),
        (&["get", "namespaces/kube-system"], true),
        (&["get", "namespaces/default"], false),
        (&["list", "namespaces"], false),
        (&["get", "leases.coordination.k8s.io"], true),
        (&["create", "leases.coordination.k8s.io"], true),
        (&["update", "leases.coordination.k8s.io"], true),
        (&["patch", "leases.coordination.k8s.io"], false),
    ];
    std::thread::scope(|s| {
        let asked: Vec<_> = requests
            .iter()
            .map(|(request, allowed)| {
                let ns = &ns;
                (
                    s.spawn(move || controller_can(plane, ns, "edge", request)),
                    request,
                    allowed,
                )
            })
            .collect();
        for (answer, request, allowed) in asked {
            assert_eq!(answer.join().unwrap(), *allowed, "{request:?}");
        }
    });
    // A route, to see that it outlives the release (the README says so).
    plane.apply_in(
        &ns,
        "apiVersion: ceryx.dev/v1alpha1\nkind: CeryxRoute\nmetadata: {name: docs}\n\
         spec: {source: docs.example.com, target: {url: 'http://docs:8000'}}\n",
    );

    // An upgrade with the same values keeps the generated Redis password and API token
    // (read back by `lookup`), so running pods and Redis keep agreeing.
    let status = helm(
        plane,
        &[
            "upgrade",
            "edge",
            CHART,
            "--namespace",
            &ns,
            "--set",
            "proxy.replicas=3",
        ],
    );
    assert!(status.contains("REVISION: 2"), "{status}");
    assert_eq!(secret("edge-ceryx-redis", "password"), redis_password);
    assert_eq!(secret("edge-ceryx-api-token", "token"), api_token);

    // Upgrade to the production values: what they add exists, what they drop is gone,
    // but the API token Secret (resource policy keep).
    let status = helm(
        plane,
        &[
            "upgrade",
            "edge",
            CHART,
            "--namespace",
            &ns,
            "-f",
            PRODUCTION,
        ],
    );
    assert!(status.contains("REVISION: 3"), "{status}");
    let production = rendered("edge", &ns, &["-f", PRODUCTION]);
    for added in [
        "Deployment/edge-ceryx-api",
        "HorizontalPodAutoscaler/edge-ceryx-proxy",
    ] {
        assert!(production.contains(added), "{production:?}");
    }
    assert_eq!(existing(plane, &ns, &production), production);
    let dropped: BTreeSet<String> = defaults.difference(&production).cloned().collect();
    for object in [
        "Service/edge-ceryx-redis",
        "Secret/edge-ceryx-redis",
        "NetworkPolicy/edge-ceryx-redis",
    ] {
        assert!(dropped.contains(object), "{object}: {dropped:?}");
    }
    assert_eq!(
        existing(plane, &ns, &dropped),
        BTreeSet::from(["Secret/edge-ceryx-api-token".to_owned()])
    );

    // A second release in the same namespace, for its own class: its own names (its
    // IngressClass too) and its own Lease, and the CRD (already there) is left as it is.
    let class = ["--set", "className=second"];
    helm(
        plane,
        &[
            &["install", "second", CHART, "--namespace", &ns][..],
            &class,
        ]
        .concat(),
    );
    let second = rendered("second", &ns, &class);
    assert!(second.is_disjoint(&production), "{second:?}");
    assert_eq!(existing(plane, &ns, &second), second);
    assert_eq!(
        deployment_env(plane, &ns, "second-ceryx-controller", "CERYX_LEASE_NAME").as_deref(),
        Some("second-ceryx-controller")
    );

    // Uninstall: the CRD and its routes remain, and each release's API token Secret;
    // nothing else of either release.
    for release in ["edge", "second"] {
        let out = helm(plane, &["uninstall", release, "--namespace", &ns]);
        assert!(
            out.contains(&format!("release \"{release}\" uninstalled")),
            "{out}"
        );
    }
    let everything: BTreeSet<String> = defaults
        .union(&production)
        .chain(&second)
        .cloned()
        .collect();
    let kept = BTreeSet::from([
        "Secret/edge-ceryx-api-token".to_owned(),
        "Secret/second-ceryx-api-token".to_owned(),
    ]);
    assert_eq!(existing(plane, &ns, &everything), kept);
    let kinds = "deployments,services,serviceaccounts,secrets,configmaps,roles,rolebindings,\
                 poddisruptionbudgets,horizontalpodautoscalers,networkpolicies";
    for release in ["edge", "second"] {
        assert_eq!(
            labelled(plane, &ns, release, kinds),
            [format!("secret/{release}-ceryx-api-token")]
        );
        assert_eq!(
            labelled(plane, &ns, release, "clusterroles,clusterrolebindings"),
            Vec::<String>::new()
        );
    }
    plane.kubectl_ok(&["wait", "--for=condition=Established", CRD, "--timeout=5s"]);
    plane.kubectl_ok(&["get", "cxr", "docs", "-n", &ns]);
    assert_eq!(helm(plane, &["list", "--namespace", &ns, "-q"]).trim(), "");
}
