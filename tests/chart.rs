//! The Helm chart, rendered by a real `helm` (installed by scripts/helm), and the
//! Dockerfile, read: no Kubernetes API server nor Docker engine runs here.

use serde::Deserialize;
use serde_json::{Value, json};
use std::process::Command;

const CHART: &str = "charts/ceryx";
const PRODUCTION: &str = "charts/ceryx/ci/production-values.yaml";

/// Runs `helm` with `args`; stdout on success, stderr on failure.
fn helm(args: &[&str]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg("scripts/helm")
        .args(args)
        .output()
        .expect("bash scripts/helm");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The objects `helm template` renders for release `t` in namespace `ceryx-system`.
fn render(extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", "t", CHART, "--namespace", "ceryx-system"];
    args.extend_from_slice(extra);
    let text = helm(&args).unwrap_or_else(|e| panic!("helm template {extra:?}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn kinds(objects: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    kinds.sort();
    kinds
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

/// Every Ceryx Deployment of release `t` takes `CERYX_REDIS_PASSWORD` from `reference`.
fn assert_ceryx_pods_read_password(objects: &[Value], reference: &Value) {
    for name in ["t-ceryx-proxy", "t-ceryx-api", "t-ceryx-controller"] {
        let deployment = find(objects, "Deployment", name);
        assert_eq!(
            &env(deployment, "CERYX_REDIS_PASSWORD")["valueFrom"]["secretKeyRef"],
            reference,
            "{name}"
        );
    }
}

fn env<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    container(deployment)["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {}", deployment["metadata"]["name"]))
}

fn has_env(deployment: &Value, name: &str) -> bool {
    container(deployment)["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == name)
}

fn image() -> String {
    format!("ghcr.io/ceryx-dev/ceryx:{}", env!("CARGO_PKG_VERSION"))
}

#[test]
fn default_values_install_proxy_with_api_controller_and_a_trial_redis() {
    helm(&["lint", "--strict", CHART]).expect("helm lint");
    let objects = render(&[]);
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole/t-ceryx-controller",
            "ClusterRoleBinding/t-ceryx-controller",
            "Deployment/t-ceryx-controller",
            "Deployment/t-ceryx-proxy",
            "Deployment/t-ceryx-redis",
            "IngressClass/ceryx",
            "NetworkPolicy/t-ceryx-api",
            "NetworkPolicy/t-ceryx-metrics",
            "NetworkPolicy/t-ceryx-proxy",
            "NetworkPolicy/t-ceryx-redis",
            "PodDisruptionBudget/t-ceryx-proxy",
            "Role/t-ceryx-controller-lease",
            "RoleBinding/t-ceryx-controller-lease",
            "Secret/t-ceryx-api-token",
            "Secret/t-ceryx-redis",
            "Service/t-ceryx-api",
            "Service/t-ceryx-proxy",
            "Service/t-ceryx-redis",
            "ServiceAccount/t-ceryx-controller",
            "ServiceAccount/t-ceryx-proxy",
        ]
    );

    let proxy = find(&objects, "Deployment", "t-ceryx-proxy");
    assert_eq!(proxy["spec"]["replicas"], 2);
    assert_eq!(container(proxy)["image"], image());
    assert_eq!(
        container(proxy)["args"],
        json!(["run"]),
        "API in the proxy pods"
    );
    assert_eq!(
        env(proxy, "CERYX_REDIS_URL")["value"],
        "redis://t-ceryx-redis:6379"
    );
    assert_eq!(env(proxy, "CERYX_API_ADDR")["value"], "0.0.0.0:5555");
    assert_eq!(
        env(proxy, "CERYX_API_TOKEN")["valueFrom"]["secretKeyRef"],
        json!({"name": "t-ceryx-api-token", "key": "token"})
    );
    assert_eq!(env(proxy, "CERYX_METRICS_ADDR")["value"], "0.0.0.0:9090");
    let ports = &container(proxy)["ports"];
    assert_eq!(
        ports,
        &json!([
            {"name": "http", "containerPort": 8080},
            {"name": "https", "containerPort": 8443},
            {"name": "api", "containerPort": 5555},
            {"name": "ops", "containerPort": 9090},
        ])
    );
    assert_eq!(env(proxy, "CERYX_ACCESS_LOG")["value"], "true");
    let annotations = &proxy["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        annotations,
        &json!({"prometheus.io/scrape": "true", "prometheus.io/port": "9090", "prometheus.io/path": "/metrics"})
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            container(proxy)[probe]["httpGet"]["path"],
            "/healthz",
            "{probe}"
        );
        assert_eq!(container(proxy)[probe]["httpGet"]["port"], "ops", "{probe}");
    }
    let token = find(&objects, "Secret", "t-ceryx-api-token");
    assert_eq!(
        token["data"]["token"].as_str().unwrap().len(),
        56,
        "40 random characters, base64"
    );

    let service = find(&objects, "Service", "t-ceryx-proxy");
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    assert_eq!(
        service["spec"]["ports"],
        json!([
            {"name": "http", "port": 80, "targetPort": "http"},
            {"name": "https", "port": 443, "targetPort": "https"},
        ])
    );
    assert_eq!(env(proxy, "CERYX_HTTPS_ADDR")["value"], "0.0.0.0:8443");
    let api = find(&objects, "Service", "t-ceryx-api");
    assert_eq!(api["spec"]["type"], "ClusterIP");
    assert_eq!(
        api["spec"]["selector"]["app.kubernetes.io/component"],
        "proxy"
    );
    let redis = find(&objects, "Service", "t-ceryx-redis");
    assert_eq!(redis["spec"]["ports"][0]["port"], 6379);

    let controller = find(&objects, "Deployment", "t-ceryx-controller");
    assert_eq!(controller["spec"]["replicas"], 2);
    assert_eq!(container(controller)["image"], image());
    assert_eq!(container(controller)["args"], json!(["controller"]));
    assert_eq!(env(controller, "CERYX_LEADER_ELECTION")["value"], "true");
    assert_eq!(
        env(controller, "CERYX_LEASE_NAME")["value"],
        "t-ceryx-controller",
        "one Lease per release"
    );
    assert!(
        !has_env(controller, "CERYX_INSTALL_ID"),
        "the binary's default: the cluster's identity"
    );
    assert_eq!(env(controller, "CERYX_INGRESS_CLASS")["value"], "ceryx");
    assert_eq!(
        env(controller, "CERYX_LEASE_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(
        env(controller, "CERYX_LEASE_IDENTITY")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        container(controller)["readinessProbe"]["httpGet"]["path"],
        "/readyz"
    );
}

#[test]
fn controller_elects_a_leader_per_release_even_with_one_replica() {
    let objects = render(&["--set", "controller.replicas=1"]);
    let controller = find(&objects, "Deployment", "t-ceryx-controller");
    assert_eq!(controller["spec"]["replicas"], 1);
    assert_eq!(
        env(controller, "CERYX_LEADER_ELECTION")["value"],
        "true",
        "a rolling update runs two pods at once"
    );

    // Two releases in one namespace: two Leases.
    let text = helm(&["template", "other", CHART, "--namespace", "ceryx-system"]).unwrap();
    let other: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    let controller = find(&other, "Deployment", "other-ceryx-controller");
    assert_eq!(
        env(controller, "CERYX_LEASE_NAME")["value"],
        "other-ceryx-controller"
    );

    let objects = render(&["--set", "controller.installId=eu-1/edge"]);
    let controller = find(&objects, "Deployment", "t-ceryx-controller");
    assert_eq!(env(controller, "CERYX_INSTALL_ID")["value"], "eu-1/edge");
}

#[test]
fn production_values_use_external_redis_a_separate_api_and_autoscaled_proxies() {
    helm(&["lint", "--strict", CHART, "-f", PRODUCTION]).expect("helm lint");
    let objects = render(&["-f", PRODUCTION]);
    let names = kinds(&objects);
    assert!(
        !names.iter().any(|k| k.contains("redis")),
        "no in-chart Redis: {names:?}"
    );
    assert!(
        !names.iter().any(|k| k.starts_with("Secret/")),
        "API token from the existing Secret: {names:?}"
    );

    let proxy = find(&objects, "Deployment", "t-ceryx-proxy");
    assert_eq!(container(proxy)["args"], json!(["proxy"]));
    assert!(
        proxy["spec"].get("replicas").is_none(),
        "the HPA owns the replica count"
    );
    assert_eq!(
        env(proxy, "CERYX_REDIS_URL")["value"],
        "redis://redis.data.svc:6379/0"
    );
    assert_eq!(
        env(proxy, "CERYX_REDIS_PASSWORD")["valueFrom"]["secretKeyRef"],
        json!({"name": "ceryx-redis", "key": "password"})
    );
    assert_eq!(env(proxy, "CERYX_TRUSTED_PROXIES")["value"], "10.0.0.0/8");
    for deployment in ["t-ceryx-proxy", "t-ceryx-api", "t-ceryx-controller"] {
        let deployment = find(&objects, "Deployment", deployment);
        assert_eq!(
            env(deployment, "CERYX_STATSD_ADDR")["value"],
            "statsd.monitoring:8125"
        );
    }
    let hpa = find(&objects, "HorizontalPodAutoscaler", "t-ceryx-proxy");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "t-ceryx-proxy");
    assert_eq!(
        (
            hpa["spec"]["minReplicas"].clone(),
            hpa["spec"]["maxReplicas"].clone()
        ),
        (json!(3), json!(12))
    );

    let service = find(&objects, "Service", "t-ceryx-proxy");
    assert_eq!(service["spec"]["type"], "NodePort");
    assert_eq!(service["spec"]["externalTrafficPolicy"], "Local");
    assert_eq!(service["spec"]["ports"][0]["nodePort"], 30080);
    assert_eq!(service["spec"]["ports"][1]["nodePort"], 30443);
    // The default certificate from a Secret, mounted read-only where the env points.
    assert_eq!(
        env(proxy, "CERYX_SSL_DEFAULT_CERTIFICATE")["value"],
        "/etc/ceryx/default-tls/tls.crt"
    );
    let pod = &proxy["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"][0]["secret"]["secretName"],
        "wildcard-example-com"
    );
    assert_eq!(
        container(proxy)["volumeMounts"][0],
        json!({"name": "default-tls", "mountPath": "/etc/ceryx/default-tls", "readOnly": true})
    );

    let api = find(&objects, "Deployment", "t-ceryx-api");
    assert_eq!(api["spec"]["replicas"], 2);
    assert_eq!(container(api)["args"], json!(["api"]));
    assert_eq!(
        env(api, "CERYX_API_TOKEN")["valueFrom"]["secretKeyRef"],
        json!({"name": "ceryx-api-token", "key": "token"})
    );
    assert_eq!(
        env(api, "CERYX_REDIS_PASSWORD")["valueFrom"]["secretKeyRef"]["name"],
        "ceryx-redis"
    );
    let api_service = find(&objects, "Service", "t-ceryx-api");
    assert_eq!(
        api_service["spec"]["selector"]["app.kubernetes.io/component"],
        "api"
    );
}

#[test]
fn every_pod_runs_non_root_read_only_without_privileges() {
    for extra in [&[][..], &["-f", PRODUCTION][..]] {
        let objects = render(extra);
        let deployments: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "Deployment")
            .collect();
        assert!(deployments.len() >= 3);
        for deployment in deployments {
            let name = &deployment["metadata"]["name"];
            let pod = &deployment["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
            assert_ne!(pod["securityContext"]["runAsUser"], 0, "{name}");
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                "{name}"
            );
            if name != "t-ceryx-controller" {
                assert_eq!(
                    pod["automountServiceAccountToken"], false,
                    "{name} needs no API token"
                );
            }
            if name == "t-ceryx-redis" {
                assert_eq!(
                    (
                        pod["securityContext"]["runAsUser"].clone(),
                        pod["securityContext"]["runAsGroup"].clone()
                    ),
                    (json!(999), json!(1000)),
                    "the official image's redis user"
                );
            }
            // Pod Security "restricted" for each container on its own
            // (tests/kube_chart.rs has the API server admit them without a warning).
            for c in pod["containers"].as_array().unwrap() {
                let sc = &c["securityContext"];
                assert_eq!(sc["runAsNonRoot"], true, "{name}");
                assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
                assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{name}");
                assert!(
                    c["resources"]["requests"].is_object(),
                    "{name} has requests"
                );
            }
        }
    }
}

/// What the controller calls (tests/controller.rs asserts each call): watch and patch
/// CeryxRoutes (finalizer), apply their status, publish Events, read and watch TLS
/// Secrets, watch Services, EndpointSlices, Ingresses and IngressClasses, patch Ingress
/// status, read the kube-system namespace (the cluster's
/// identity) and nothing else of namespaces, read and patch the scale of Deployments and
/// StatefulSets (a CeryxRoute's `spec.wake.scaleTargetRef`), hold a Lease (read it and
/// replace it).
#[test]
fn rbac_grants_exactly_what_the_controller_calls() {
    let objects = render(&[]);
    let cluster_rules = json!([
        {"apiGroups": ["ceryx.dev"], "resources": ["ceryxroutes"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": ["ceryx.dev"], "resources": ["ceryxroutes/status"], "verbs": ["patch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "ingressclasses"], "verbs": ["list", "watch"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses/status"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["kube-system"], "verbs": ["get"]},
        {"apiGroups": ["apps"], "resources": ["deployments/scale", "statefulsets/scale"], "verbs": ["get", "patch"]},
    ]);
    let lease_rules = json!([
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
    ]);
    assert_eq!(
        find(&objects, "ClusterRole", "t-ceryx-controller")["rules"],
        cluster_rules
    );
    let role = find(&objects, "Role", "t-ceryx-controller-lease");
    assert_eq!(role["rules"], lease_rules);
    assert!(
        role["metadata"].get("namespace").is_none(),
        "the release namespace"
    );
    for binding in [
        find(&objects, "ClusterRoleBinding", "t-ceryx-controller"),
        find(&objects, "RoleBinding", "t-ceryx-controller-lease"),
    ] {
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "t-ceryx-controller", "namespace": "ceryx-system"}])
        );
    }
    let controller = find(&objects, "Deployment", "t-ceryx-controller");
    assert_eq!(
        controller["spec"]["template"]["spec"]["serviceAccountName"],
        "t-ceryx-controller"
    );

    // The manifests for installs without Helm grant the same.
    let plain = std::fs::read_to_string("deploy/controller-rbac.yaml").unwrap();
    let plain: Vec<Value> = serde_yaml::Deserializer::from_str(&plain)
        .map(|doc| Value::deserialize(doc).unwrap())
        .collect();
    let rules_of = |kind: &str| {
        plain
            .iter()
            .find(|o| o["kind"] == kind)
            .map(|o| o["rules"].clone())
            .unwrap()
    };
    assert_eq!(rules_of("ClusterRole"), cluster_rules);
    assert_eq!(rules_of("Role"), lease_rules);
}

/// Gateway API support is asked for: the controller may read the Gateway API objects
/// and namespaces, patch their status and read the version of the four CRDs it uses;
/// the GatewayClass is created only on request, and only with that access.
#[test]
fn gateway_api_access_and_the_gateway_class_come_when_asked() {
    let rules = |objects: &[Value]| {
        find(objects, "ClusterRole", "t-ceryx-controller")["rules"]
            .as_array()
            .unwrap()
            .clone()
    };
    let plain = rules(&render(&[]));
    assert!(
        !plain
            .iter()
            .any(|r| r["apiGroups"][0] == "gateway.networking.k8s.io"),
        "{plain:?}"
    );
    let objects = render(&["--set", "gatewayAPI.enabled=true"]);
    assert!(
        !kinds(&objects)
            .iter()
            .any(|k| k.starts_with("GatewayClass/"))
    );
    let granted = rules(&objects);
    assert_eq!(granted[..plain.len()], plain[..]);
    assert_eq!(
        json!(granted[plain.len()..]),
        json!([
            {"apiGroups": ["gateway.networking.k8s.io"],
             "resources": ["gatewayclasses", "gateways", "httproutes", "referencegrants"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["gateway.networking.k8s.io"],
             "resources": ["gatewayclasses/status", "gateways/status", "httproutes/status"],
             "verbs": ["patch"]},
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
            {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
             "resourceNames": ["gatewayclasses.gateway.networking.k8s.io",
                               "gateways.gateway.networking.k8s.io",
                               "httproutes.gateway.networking.k8s.io",
                               "referencegrants.gateway.networking.k8s.io"],
             "verbs": ["get"]},
        ])
    );

    // The manifests for installs without Helm grant the same.
    let plain_gateway = std::fs::read_to_string("deploy/controller-rbac-gateway-api.yaml").unwrap();
    let plain_gateway: Vec<Value> = serde_yaml::Deserializer::from_str(&plain_gateway)
        .map(|doc| Value::deserialize(doc).unwrap())
        .collect();
    assert_eq!(
        json!(granted[plain.len()..]),
        plain_gateway
            .iter()
            .find(|o| o["kind"] == "ClusterRole")
            .unwrap()["rules"]
    );

    let objects = render(&[
        "--set",
        "gatewayAPI.enabled=true",
        "--set",
        "gatewayClass.create=true",
        "--set",
        "gatewayClass.name=edge",
    ]);
    let class = find(&objects, "GatewayClass", "edge");
    assert_eq!(class["apiVersion"], "gateway.networking.k8s.io/v1");
    assert_eq!(
        class["spec"]["controllerName"],
        "ceryx.dev/gateway-controller"
    );
    let refused = helm(&["template", "t", CHART, "--set", "gatewayClass.create=true"]).unwrap_err();
    assert!(refused.contains("gatewayAPI.enabled"), "{refused}");
}

#[test]
fn bad_values_fail_at_install_time_with_the_reason() {
    let fails = |set: &str, says: &str| {
        let err = helm(&["template", "t", CHART, "--set", set]).expect_err(set);
        assert!(err.contains(says), "{set}: {err}");
    };
    fails("proxy.replicas=two", "/proxy/replicas");
    fails("proxy.replcas=3", "replcas");
    fails("api.mode=sidecar", "/api/mode");
    fails("proxy.service.type=External", "/proxy/service/type");
    fails("redis.url=http://redis:6379", "/redis/url");
    fails("metrics.statsdAddr=statsd", "/metrics/statsdAddr");
    fails("controller.installId=a@b", "/controller/installId");
    fails("redis.embedded.runAsUser=0", "/redis/embedded/runAsUser");
    fails("serviceMonitor.interval=soon", "/serviceMonitor/interval");
    fails(
        "networkPolicy.api.from[0].pods=all",
        "/networkPolicy/api/from/0",
    );
    fails(
        "redis.embedded.enabled=false",
        "redis.url is required when redis.embedded.enabled is false",
    );
}

/// Whether a label selector (`matchLabels`, `matchExpressions` with In, NotIn, Exists,
/// DoesNotExist) selects an object with `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let equal = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| &labels[k] == v);
    let expressions = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let value = &labels[e["key"].as_str().unwrap()];
            let listed = e["values"].as_array().is_some_and(|vs| vs.contains(value));
            match e["operator"].as_str().unwrap() {
                "In" => listed,
                "NotIn" => !listed,
                "Exists" => !value.is_null(),
                "DoesNotExist" => value.is_null(),
                other => panic!("operator {other}"),
            }
        });
    equal && expressions
}

fn pod_labels(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["metadata"]["labels"]
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The in-chart Redis requires a password: generated into `<fullname>-redis` (the
/// `lookup` that keeps it across upgrades is exercised by tests/kube_chart.rs), given to
/// redis-server and to redis-cli in its probes, and read as CERYX_REDIS_PASSWORD by every
/// Ceryx container; or all of that from redis.existingSecret, with no Secret generated.
#[test]
fn embedded_redis_requires_a_generated_password_that_every_ceryx_pod_reads() {
    let objects = render(&["--set", "api.mode=separate"]);
    let secret = find(&objects, "Secret", "t-ceryx-redis");
    let password = secret["data"]["password"].as_str().unwrap();
    assert_eq!(password.len(), 56, "40 random characters, base64");
    assert!(
        secret["metadata"]["annotations"]["helm.sh/resource-policy"].is_null(),
        "goes with the release, like the Redis it guards"
    );
    let again = render(&[]);
    assert_ne!(
        find(&again, "Secret", "t-ceryx-redis")["data"]["password"],
        password,
        "random per install (kept by lookup on upgrades)"
    );
    let template = std::fs::read_to_string("charts/ceryx/templates/redis.yaml").unwrap();
    assert!(
        template.contains(r#"lookup "v1" "Secret" .Release.Namespace $name"#),
        "read back on upgrade, as the API token is"
    );

    let reference = json!({"name": "t-ceryx-redis", "key": "password"});
    let redis = find(&objects, "Deployment", "t-ceryx-redis");
    let server = container(redis);
    assert_eq!(
        env(redis, "REDISCLI_AUTH")["valueFrom"]["secretKeyRef"],
        reference
    );
    assert_eq!(
        server["args"],
        json!([
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            "$(REDISCLI_AUTH)"
        ]),
        "Kubernetes expands $(REDISCLI_AUTH) from the env"
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            server[probe]["exec"]["command"],
            json!(["sh", "-c", "redis-cli -p 6379 ping | grep -qx PONG"]),
            "{probe}: a PING that needs the password (redis-cli exits 0 on NOAUTH, grep does not)"
        );
        assert!(server[probe]["tcpSocket"].is_null(), "{probe}");
    }
    assert_ceryx_pods_read_password(&objects, &reference);

    // A password of one's own (e.g. for GitOps tools that render without lookup).
    let objects = render(&[
        "--set",
        "redis.existingSecret=my-redis",
        "--set",
        "redis.passwordKey=pw",
    ]);
    assert!(
        of_kind(&objects, "Secret")
            .iter()
            .all(|s| s["metadata"]["name"] != "t-ceryx-redis"),
        "none generated"
    );
    let reference = json!({"name": "my-redis", "key": "pw"});
    let redis = find(&objects, "Deployment", "t-ceryx-redis");
    assert_eq!(
        env(redis, "REDISCLI_AUTH")["valueFrom"]["secretKeyRef"],
        reference
    );
    for name in ["t-ceryx-proxy", "t-ceryx-controller"] {
        let deployment = find(&objects, "Deployment", name);
        assert_eq!(
            env(deployment, "CERYX_REDIS_PASSWORD")["valueFrom"]["secretKeyRef"],
            reference,
            "{name}"
        );
    }
}

/// An external Redis: every Ceryx container reads its password from the Secret and key
/// the values name; the chart generates no password and no Redis policy, but keeps the
/// policies of its own pods.
#[test]
fn external_redis_password_comes_from_the_named_secret_and_ceryx_pods_keep_their_policies() {
    let objects = render(&[
        "-f",
        PRODUCTION,
        "--set",
        "redis.passwordKey=redis-password",
    ]);
    let reference = json!({"name": "ceryx-redis", "key": "redis-password"});
    assert_ceryx_pods_read_password(&objects, &reference);
    assert!(of_kind(&objects, "Secret").is_empty());
    let policies: Vec<&str> = of_kind(&objects, "NetworkPolicy")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        policies,
        ["t-ceryx-proxy", "t-ceryx-api", "t-ceryx-metrics"]
    );
    let api = find(&objects, "NetworkPolicy", "t-ceryx-api");
    assert!(selects(
        &api["spec"]["podSelector"],
        pod_labels(find(&objects, "Deployment", "t-ceryx-api"))
    ));
    assert!(!selects(
        &api["spec"]["podSelector"],
        pod_labels(find(&objects, "Deployment", "t-ceryx-proxy"))
    ));
}

/// An external Sentinel-managed Redis: every Ceryx pod finds the primary through the
/// sentinels the values list, under the master name they give, with the sentinels' own
/// password from its Secret and the primary's from redis.existingSecret; no URL is
/// needed, writes wait for a replica unless told otherwise, and the in-chart Redis stays
/// apart (it cannot be combined with sentinels).
#[test]
fn sentinel_values_point_every_ceryx_pod_at_the_sentinels() {
    const SENTINELS: &str = "s1.data:26379,s2.data:26379,s3.data:26379";
    let sentinels = format!("redis.sentinel.addresses={{{SENTINELS}}}");
    let objects = render(&[
        "-f",
        PRODUCTION,
        "--set",
        "redis.url=",
        "--set",
        &sentinels,
        "--set",
        "redis.sentinel.masterName=routes",
        "--set",
        "redis.sentinel.existingSecret=sentinel-auth",
        "--set",
        "redis.sentinel.passwordKey=pw",
    ]);
    assert!(!kinds(&objects).iter().any(|k| k.contains("redis")));
    for name in ["t-ceryx-proxy", "t-ceryx-api", "t-ceryx-controller"] {
        let deployment = find(&objects, "Deployment", name);
        assert_eq!(
            env(deployment, "CERYX_REDIS_SENTINELS")["value"],
            SENTINELS,
            "{name}"
        );
        assert_eq!(
            env(deployment, "CERYX_REDIS_SENTINEL_MASTER")["value"],
            "routes"
        );
        assert_eq!(
            env(deployment, "CERYX_REDIS_SENTINEL_PASSWORD")["valueFrom"]["secretKeyRef"],
            json!({"name": "sentinel-auth", "key": "pw"}),
            "{name}"
        );
        assert!(!has_env(deployment, "CERYX_REDIS_URL"), "{name}");
        // The binary's default with sentinels: one replica confirms each write.
        assert!(!has_env(deployment, "CERYX_REDIS_WAIT_REPLICAS"), "{name}");
    }
    assert_ceryx_pods_read_password(&objects, &json!({"name": "ceryx-redis", "key": "password"}));

    // Sentinels without a password of their own, and a second replica to wait for.
    let objects = render(&[
        "-f",
        PRODUCTION,
        "--set",
        &sentinels,
        "--set",
        "redis.waitReplicas=2",
    ]);
    for name in ["t-ceryx-proxy", "t-ceryx-api", "t-ceryx-controller"] {
        let deployment = find(&objects, "Deployment", name);
        assert_eq!(
            env(deployment, "CERYX_REDIS_SENTINEL_MASTER")["value"],
            "mymaster"
        );
        assert!(
            !has_env(deployment, "CERYX_REDIS_SENTINEL_PASSWORD"),
            "{name}"
        );
        assert_eq!(env(deployment, "CERYX_REDIS_WAIT_REPLICAS")["value"], "2");
    }
    // The trial Redis is untouched by the new values.
    let trial = render(&[]);
    let proxy = find(&trial, "Deployment", "t-ceryx-proxy");
    assert!(!has_env(proxy, "CERYX_REDIS_SENTINELS"));
    assert!(!has_env(proxy, "CERYX_REDIS_WAIT_REPLICAS"));

    let fails = |set: &[&str], says: &str| {
        let mut args = vec!["template", "t", CHART];
        for s in set {
            args.extend(["--set", s]);
        }
        let err = helm(&args).expect_err(says);
        assert!(err.contains(says), "{set:?}: {err}");
    };
    fails(&[&sentinels], "set redis.embedded.enabled=false too");
    fails(
        &[
            "redis.embedded.enabled=false",
            "redis.sentinel.addresses={a b:1}",
        ],
        "/redis/sentinel/addresses/0",
    );
    fails(&["redis.waitReplicas=-1"], "/redis/waitReplicas");
}

/// NetworkPolicies, on by default: Redis's port from this release's Ceryx pods only (and
/// no egress), the API's port from the release namespace (or what values list), the
/// proxies' HTTP and HTTPS from anywhere, the ops port from anywhere (or what values
/// list); every port of every Ceryx container admitted by one of them, nothing else.
#[test]
fn network_policies_admit_redis_from_the_release_only_and_each_port_from_its_peers() {
    let objects = render(&[]);
    let redis_policy = find(&objects, "NetworkPolicy", "t-ceryx-redis");
    assert_eq!(
        redis_policy["spec"],
        json!({
            "podSelector": {"matchLabels": {
                "app.kubernetes.io/name": "ceryx",
                "app.kubernetes.io/instance": "t",
                "app.kubernetes.io/component": "redis",
            }},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{
                "ports": [{"protocol": "TCP", "port": "redis"}],
                "from": [{"podSelector": {
                    "matchLabels": {"app.kubernetes.io/name": "ceryx", "app.kubernetes.io/instance": "t"},
                    "matchExpressions": [{
                        "key": "app.kubernetes.io/component",
                        "operator": "In",
                        "values": ["proxy", "api", "controller"],
                    }],
                }}],
            }],
            "egress": [],
        })
    );
    let redis = find(&objects, "Deployment", "t-ceryx-redis");
    assert!(selects(
        &redis_policy["spec"]["podSelector"],
        pod_labels(redis)
    ));
    let peer = &redis_policy["spec"]["ingress"][0]["from"][0]["podSelector"];
    assert!(!selects(peer, pod_labels(redis)));
    let separate = render(&["--set", "api.mode=separate"]);
    for name in ["t-ceryx-proxy", "t-ceryx-api", "t-ceryx-controller"] {
        let deployment = find(&separate, "Deployment", name);
        assert!(
            selects(peer, pod_labels(deployment)),
            "{name} reaches Redis"
        );
    }
    let other = serde_yaml::Deserializer::from_str(
        &helm(&["template", "other", CHART, "--namespace", "ceryx-system"]).unwrap(),
    )
    .map(|doc| Value::deserialize(doc).unwrap())
    .filter(|v| !v.is_null())
    .collect::<Vec<_>>();
    assert!(
        !selects(
            peer,
            pod_labels(find(&other, "Deployment", "other-ceryx-proxy"))
        ),
        "another release's proxies do not reach this Redis"
    );

    assert_eq!(
        find(&objects, "NetworkPolicy", "t-ceryx-api")["spec"]["ingress"],
        json!([{"ports": [{"protocol": "TCP", "port": "api"}], "from": [{"podSelector": {}}]}]),
        "the release namespace"
    );
    assert_eq!(
        find(&objects, "NetworkPolicy", "t-ceryx-proxy")["spec"]["ingress"],
        json!([{"ports": [{"protocol": "TCP", "port": "http"}, {"protocol": "TCP", "port": "https"}]}]),
        "from anywhere"
    );
    assert_eq!(
        find(&objects, "NetworkPolicy", "t-ceryx-metrics")["spec"]["ingress"],
        json!([{"ports": [{"protocol": "TCP", "port": "ops"}]}]),
        "from anywhere"
    );

    // Each container port is admitted by exactly the policy meant for it, in both modes.
    for objects in [&objects, &separate] {
        let policies = of_kind(objects, "NetworkPolicy");
        for deployment in of_kind(objects, "Deployment") {
            let name = deployment["metadata"]["name"].as_str().unwrap();
            for port in container(deployment)["ports"].as_array().unwrap() {
                let port = port["name"].as_str().unwrap();
                let admitting: Vec<&str> = policies
                    .iter()
                    .filter(|p| selects(&p["spec"]["podSelector"], pod_labels(deployment)))
                    .filter(|p| {
                        p["spec"]["ingress"].as_array().unwrap().iter().any(|rule| {
                            rule["ports"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .any(|p| p["port"] == port)
                        })
                    })
                    .map(|p| p["metadata"]["name"].as_str().unwrap())
                    .collect();
                let expected = match port {
                    "http" | "https" => "t-ceryx-proxy",
                    "api" => "t-ceryx-api",
                    "ops" => "t-ceryx-metrics",
                    "redis" => "t-ceryx-redis",
                    other => panic!("{name}: port {other}"),
                };
                assert_eq!(admitting, [expected], "{name} port {port}");
            }
        }
    }

    // Peers from values; and off.
    let objects = render(&[
        "--set-json",
        r#"networkPolicy.api.from=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"ci"}}}]"#,
        "--set-json",
        r#"networkPolicy.metrics.from=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]"#,
        "--set-json",
        r#"networkPolicy.redis.extraFrom=[{"podSelector":{"matchLabels":{"app":"backup"}}}]"#,
    ]);
    assert_eq!(
        find(&objects, "NetworkPolicy", "t-ceryx-api")["spec"]["ingress"][0]["from"],
        json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ci"}}}])
    );
    assert_eq!(
        find(&objects, "NetworkPolicy", "t-ceryx-metrics")["spec"]["ingress"][0]["from"],
        json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}])
    );
    let from = &find(&objects, "NetworkPolicy", "t-ceryx-redis")["spec"]["ingress"][0]["from"];
    assert_eq!(from.as_array().unwrap().len(), 2);
    assert_eq!(
        from[1],
        json!({"podSelector": {"matchLabels": {"app": "backup"}}})
    );
    let objects = render(&["--set", "networkPolicy.enabled=false"]);
    assert!(of_kind(&objects, "NetworkPolicy").is_empty());
}

/// A ServiceMonitor only when asked: through a headless Service on the ops port of the
/// proxy, api and controller pods (not Redis), with the interval and labels of values.
#[test]
fn service_monitor_is_off_by_default_and_scrapes_every_ceryx_ops_port_when_on() {
    let objects = render(&[]);
    assert!(of_kind(&objects, "ServiceMonitor").is_empty());
    assert!(
        !kinds(&objects).contains(&"Service/t-ceryx-metrics".to_owned()),
        "no Service for it either"
    );

    let objects = render(&[
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "serviceMonitor.interval=15s",
        "--set",
        "serviceMonitor.scrapeTimeout=5s",
        "--set",
        "serviceMonitor.labels.release=kube-prometheus-stack",
        "--set",
        "api.mode=separate",
    ]);
    let monitor = find(&objects, "ServiceMonitor", "t-ceryx");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(
        monitor["spec"]["endpoints"],
        json!([{"port": "ops", "path": "/metrics", "interval": "15s", "scrapeTimeout": "5s"}])
    );
    assert_eq!(
        monitor["spec"]["namespaceSelector"],
        json!({"matchNames": ["ceryx-system"]})
    );
    assert_eq!(
        monitor["spec"]["podTargetLabels"],
        json!(["app.kubernetes.io/component"])
    );
    let service = find(&objects, "Service", "t-ceryx-metrics");
    assert_eq!(service["spec"]["clusterIP"], "None", "each pod a target");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "ops", "port": 9090, "targetPort": "ops"}])
    );
    let services: Vec<&str> = of_kind(&objects, "Service")
        .iter()
        .filter(|s| selects(&monitor["spec"]["selector"], &s["metadata"]["labels"]))
        .map(|s| s["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        services,
        ["t-ceryx-metrics"],
        "the monitor selects it alone"
    );
    let selector = json!({"matchLabels": service["spec"]["selector"]});
    for deployment in of_kind(&objects, "Deployment") {
        let name = deployment["metadata"]["name"].as_str().unwrap();
        let has_ops = container(deployment)["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "ops" && p["containerPort"] == 9090);
        assert_eq!(
            selects(&selector, pod_labels(deployment)),
            name != "t-ceryx-redis",
            "{name}"
        );
        assert_eq!(has_ops, name != "t-ceryx-redis", "{name}");
    }
}

#[test]
fn chart_ships_the_committed_crd() {
    let chart = std::fs::read_to_string("charts/ceryx/crds/ceryxroute.yaml").unwrap();
    let top = std::fs::read_to_string("crds/ceryxroute.yaml").unwrap();
    assert!(
        chart == top,
        "charts/ceryx/crds/ is out of date: run `make crd`"
    );
}

#[test]
fn dockerfile_builds_like_make_build_and_runs_non_root() {
    let docker = std::fs::read_to_string("Dockerfile").unwrap();
    let stages: Vec<&str> = docker.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(stages.len(), 2, "build stage and runtime stage: {stages:?}");
    assert!(stages[0].ends_with(" AS build"));
    let make = std::fs::read_to_string("Makefile").unwrap();
    let build = make
        .lines()
        .skip_while(|l| !l.starts_with("build:"))
        .nth(1)
        .unwrap()
        .trim();
    assert!(
        docker.contains(&format!("RUN {build}\n")),
        "Dockerfile builds with `{build}`"
    );
    let runtime = &docker[docker.find(stages[1]).unwrap()..];
    assert!(runtime.contains("COPY --from=build /src/target/release/ceryx "));
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the runtime stage");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric uid");
    assert_ne!(uid, 0, "non-root");
    assert!(
        !runtime.contains("RUN "),
        "nothing but the binary in the runtime image"
    );
}
