//! A real Kubernetes control plane for the tests: kube-apiserver and etcd started by
//! `scripts/kube-testenv` once per test binary (stopped when the binary exits), the
//! chart's RBAC installed, and `ceryx controller` processes running under the chart's
//! ServiceAccount identity, so that a call the chart does not allow fails the test.

use super::poll::eventually;
use super::port::free_port;
use super::redis_server::RedisServer;
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Namespace and release name of the chart whose RBAC the controllers run under.
pub const RELEASE_NAMESPACE: &str = "ceryx-system";
pub const RELEASE: &str = "ceryx";
/// The controller's ServiceAccount in the chart (`<release>-controller`).
pub const CONTROLLER_SA: &str = "ceryx-controller";

/// A running control plane.
pub struct ControlPlane {
    pub dir: PathBuf,
    /// An admin's kubeconfig (group `system:masters`).
    pub kubeconfig: PathBuf,
    /// The controller ServiceAccount's kubeconfig.
    pub controller_kubeconfig: PathBuf,
}

/// The control plane, `None` where it is skipped, or why it failed to start: every
/// test of the binary then fails at once with that reason instead of starting it again.
static PLANE: OnceLock<Option<Result<ControlPlane, String>>> = OnceLock::new();
static CERYX: OnceLock<String> = OnceLock::new();

/// The CRD names in `crds/gateway-api/`: its files are named `<group>_<plural>.yaml`, and
/// the one that is not a CRD (`_vap_…`, an admission policy) is left out.
fn gateway_api_crds(dir: &Path) -> impl Iterator<Item = String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("crds/gateway-api/ exists (scripts/gateway-api-crds)")
        .filter_map(|entry| {
            let file = entry.ok()?.file_name().into_string().ok()?;
            let (group, plural) = file.strip_suffix(".yaml")?.split_once('_')?;
            (!plural.starts_with("vap_")).then(|| format!("{plural}.{group}"))
        })
        .collect();
    names.sort();
    names.into_iter()
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The control plane of this test binary, started on first use; `None` (with the reason
/// printed) where it cannot be built, unless `CERYX_REQUIRE_KUBE` is set (CI), which
/// turns that into a failure.
pub fn control_plane() -> Option<&'static ControlPlane> {
    PLANE
        .get_or_init(|| {
            let required = std::env::var_os("CERYX_REQUIRE_KUBE").is_some_and(|v| v != "0");
            let no_go = Command::new("go").arg("version").output().is_err();
            let cached = Command::new("bash")
                .arg(root().join("scripts/kube-testenv"))
                .arg("cached")
                .status()
                .is_ok_and(|s| s.success());
            if no_go && !cached {
                assert!(!required, "CERYX_REQUIRE_KUBE is set but Go is missing: the Kubernetes tests cannot build kube-apiserver");
                eprintln!("SKIPPED: the Kubernetes tests need Go to build kube-apiserver (see README)");
                return None;
            }
            Some(ControlPlane::start())
        })
        .as_ref()
        .map(|plane| plane.as_ref().unwrap_or_else(|why| panic!("{why}")))
}

/// The control plane with Ceryx's CRD and the chart's RBAC installed, or returns from
/// the test (skipped, with the reason printed).
#[macro_export]
macro_rules! ceryx_plane_or_skip {
    () => {
        match common::cluster::control_plane() {
            Some(plane) => {
                plane.install_ceryx();
                plane
            }
            None => return,
        }
    };
}

impl ControlPlane {
    fn start() -> Result<ControlPlane, String> {
        let dir = std::env::temp_dir().join(format!("ceryx-kube-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new("bash")
            .arg(root().join("scripts/kube-testenv"))
            .arg("start")
            .arg(&dir)
            .env("CERYX_TESTENV_WATCH_PID", std::process::id().to_string())
            .env(
                "CERYX_TESTENV_IDENTITIES",
                format!("{RELEASE_NAMESPACE}/{CONTROLLER_SA}"),
            )
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/kube-testenv runs");
        if !out.status.success() {
            return Err(
                "the test control plane did not start (scripts/kube-testenv's log above)".into(),
            );
        }
        Ok(ControlPlane {
            kubeconfig: dir.join("kubeconfig"),
            controller_kubeconfig: dir.join(format!("kubeconfig-{CONTROLLER_SA}")),
            dir,
        })
    }

    /// Once per control plane: `crds/` applied server-side, as the README says, the
    /// Gateway API's standard channel from `crds/gateway-api/` as a cluster admin would
    /// install it, and the chart's ServiceAccounts and RBAC as `helm template` renders
    /// them, so that what the controller may call is exactly what the chart grants.
    /// Returns what `kubectl apply` wrote to stderr for `crds/` (warnings).
    pub fn install_ceryx(&self) -> &'static str {
        CERYX.get_or_init(|| {
            let crds = root().join("crds");
            let out = self.kubectl(&["apply", "--server-side", "-f", crds.to_str().unwrap()]);
            let warnings = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "applying crds/ failed: {warnings}");
            let gateway_api = crds.join("gateway-api");
            self.kubectl_ok(&[
                "apply",
                "--server-side",
                "-f",
                gateway_api.to_str().unwrap(),
            ]);
            self.kubectl_ok(&["create", "namespace", RELEASE_NAMESPACE]);
            self.install_chart_rbac();
            let mut established = vec![
                "wait".to_owned(),
                "--for=condition=Established".to_owned(),
                "crd/ceryxroutes.ceryx.dev".to_owned(),
            ];
            established.extend(gateway_api_crds(&gateway_api).map(|name| format!("crd/{name}")));
            established.push("--timeout=30s".to_owned());
            let args: Vec<&str> = established.iter().map(String::as_str).collect();
            self.kubectl_ok(&args);
            // kubectl cached discovery while the CRDs were still being set up; reading
            // it afresh lets `kubectl get <category>` find them.
            self.kubectl_ok(&["api-resources", "--cached=false", "-o", "name"]);
            warnings
        })
    }

    fn install_chart_rbac(&self) {
        let rendered = helm(&[
            "template",
            RELEASE,
            root().join("charts/ceryx").to_str().unwrap(),
            "--namespace",
            RELEASE_NAMESPACE,
            // The Gateway API CRDs are installed here, so the controller may serve them.
            "--set",
            "gatewayAPI.enabled=true",
        ]);
        let wanted = [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
        ];
        let docs: Vec<&str> = rendered
            .split("\n---")
            .filter(|doc| {
                doc.lines()
                    .any(|l| wanted.iter().any(|k| l.trim() == format!("kind: {k}")))
            })
            .collect();
        self.apply_in(RELEASE_NAMESPACE, &docs.join("\n---\n"));
    }

    /// A `kubernetes.io/tls` Secret holding `pem`, created or replaced.
    pub fn tls_secret(&self, ns: &str, name: &str, pem: &ceryx::store::CertificatePem) {
        let bytes = |text: &str| k8s_openapi::ByteString(text.as_bytes().to_vec());
        let secret = k8s_openapi::api::core::v1::Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(
                [
                    ("tls.crt".to_owned(), bytes(&pem.certificate)),
                    ("tls.key".to_owned(), bytes(&pem.key)),
                ]
                .into(),
            ),
            ..Default::default()
        };
        let mut json = serde_json::to_value(&secret).unwrap();
        json["apiVersion"] = "v1".into();
        json["kind"] = "Secret".into();
        self.apply_in(ns, &json.to_string());
    }

    /// Runs kubectl as the admin.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        kubectl_as(&self.kubeconfig, args, None)
    }

    /// Runs kubectl as the admin and returns its stdout; panics with its stderr if it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs kubectl as the admin with `stdin` as its input, whatever the outcome.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> std::process::Output {
        kubectl_as(&self.kubeconfig, args, Some(stdin))
    }

    /// `kubectl apply -f -` of `yaml` in `namespace`; returns stdout and stderr.
    pub fn apply_in(&self, namespace: &str, yaml: &str) -> (String, String) {
        let out = kubectl_as(
            &self.kubeconfig,
            &["apply", "-n", namespace, "-f", "-"],
            Some(yaml),
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "kubectl apply failed: {stderr}\n{yaml}"
        );
        (String::from_utf8(out.stdout).unwrap(), stderr)
    }

    /// A fresh namespace for one test.
    pub fn namespace(&self, prefix: &str) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.kubectl_ok(&["create", "namespace", &name]);
        name
    }

    /// An admin client.
    pub async fn client(&self) -> kube::Client {
        client_from(&self.kubeconfig).await
    }

    /// A counter of the API server's `/metrics`: the sum of every series of `name` whose
    /// labels contain all of `labels` (`key="value"` strings).
    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        self.kubectl_ok(&["get", "--raw", "/metrics"])
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter(|l| labels.iter().all(|label| l.contains(label)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// A kube client from a kubeconfig file.
pub async fn client_from(path: &Path) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn kubectl_as(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut command = Command::new(root().join(".tools/kubectl"));
    command
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("kubectl (scripts/helm unpacks it)");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs `scripts/helm` and returns its stdout; panics with its stderr if it fails.
pub fn helm(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(root().join("scripts/helm"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A `ceryx controller` process under the chart's controller identity, killed when dropped.
pub struct Controller {
    pub child: Child,
    /// Its probes and metrics listener.
    pub metrics: SocketAddr,
    /// Its log (stderr).
    pub log: PathBuf,
}

impl Controller {
    /// Starts a controller writing to `redis`, with `env` on top of the defaults, and waits
    /// until its probes listen.
    pub async fn start(
        plane: &ControlPlane,
        redis: &RedisServer,
        env: &[(&str, &str)],
    ) -> Controller {
        Controller::start_on(plane, &[("CERYX_REDIS_URL", &redis.url())], env).await
    }

    /// Starts a controller whose store is `store` (the `CERYX_REDIS_*` settings, e.g. a
    /// Sentinel set's), with `env` on top of the defaults.
    pub async fn start_on(
        plane: &ControlPlane,
        store: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> Controller {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = plane.dir.join(format!("controller-{n}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_ceryx"));
        command
            .arg("controller")
            .env("KUBECONFIG", &plane.controller_kubeconfig)
            .env("CERYX_METRICS_ADDR", metrics.to_string())
            .env("CERYX_LEASE_NAMESPACE", RELEASE_NAMESPACE)
            .env("CERYX_LEASE_IDENTITY", format!("controller-{n}"))
            .env("RUST_LOG", "info,ceryx=debug")
            .env_remove("CERYX_REDIS_HOST")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in store.iter().chain(env) {
            command.env(k, v);
        }
        let child = command.spawn().unwrap();
        eventually(
            Duration::from_secs(20),
            "the controller's probes",
            || async { tokio::net::TcpStream::connect(metrics).await.is_ok() },
        )
        .await;
        Controller {
            child,
            metrics,
            log,
        }
    }

    /// What the controller logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test if the API server refused the controller anything: what the
    /// chart's RBAC grants must be enough.
    pub fn assert_nothing_forbidden(&self) {
        let log = self.log();
        assert!(
            !log.to_lowercase().contains("forbidden"),
            "the chart's RBAC refused a call:\n{log}"
        );
    }

    /// Whether the process still runs (it has not exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`, `TERM`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
