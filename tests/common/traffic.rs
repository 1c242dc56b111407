//! A test's own world for the traffic resources (Ingress, Gateway API, Service
//! endpoints) on the shared control plane: a namespace (also the name of its class),
//! a Redis, `ceryx controller` publishing 127.0.0.1 as its address, and `ceryx proxy`
//! with an HTTPS listener. No endpoint controller runs on the test control plane, so
//! tests write the EndpointSlices a cluster would ([`TrafficWorld::slice`]).

use super::cluster::{ControlPlane, Controller};
use super::poll::eventually;
use super::port::free_port;
use super::process::Process;
use super::redis_server::RedisServer;
use super::upstream::Upstream;
use super::{Reply, TestClient};
use http::{Request, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// See the module documentation.
pub struct TrafficWorld {
    pub plane: &'static ControlPlane,
    pub ns: String,
    pub redis: RedisServer,
    pub controller: Controller,
    pub proxy: Process,
    pub https: SocketAddr,
    pub client: TestClient,
}

impl TrafficWorld {
    /// Starts everything in a fresh namespace named after `prefix`, also the name of the
    /// controller's class and Lease; the controller gets `env` on top.
    pub async fn start(
        plane: &'static ControlPlane,
        prefix: &str,
        env: &[(&str, &str)],
    ) -> TrafficWorld {
        let ns = plane.namespace(prefix);
        let mut all = vec![
            ("CERYX_INGRESS_CLASS", ns.as_str()),
            ("CERYX_LEASE_NAME", ns.as_str()),
        ];
        all.extend_from_slice(env);
        TrafficWorld::start_in(plane, ns.clone(), &all).await
    }

    /// Starts everything in namespace `ns` (made by [`ControlPlane::namespace`]); the
    /// controller gets `env` (its class and Lease among them) and the publish address.
    pub async fn start_in(
        plane: &'static ControlPlane,
        ns: String,
        env: &[(&str, &str)],
    ) -> TrafficWorld {
        let redis = RedisServer::start().await;
        let mut all = vec![("CERYX_PUBLISH_ADDRESS", "127.0.0.1")];
        all.extend_from_slice(env);
        let controller = Controller::start(plane, &redis, &all).await;
        let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let proxy = Process::start(
            "proxy",
            &[
                ("CERYX_REDIS_URL", redis.url()),
                ("CERYX_HTTPS_ADDR", https.to_string()),
            ],
        )
        .await;
        TrafficWorld {
            plane,
            ns,
            redis,
            controller,
            proxy,
            https,
            client: TestClient::default(),
        }
    }

    /// `kubectl apply` of `yaml` in `namespace`, which must not warn.
    pub fn apply_to(&self, namespace: &str, yaml: &str) {
        let (_, stderr) = self.plane.apply_in(namespace, yaml);
        assert!(stderr.is_empty(), "kubectl apply warned: {stderr}");
    }

    /// `kubectl` in this world's namespace.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.ns.as_str()];
        all.extend_from_slice(args);
        self.plane.kubectl_ok(&all)
    }

    /// EndpointSlice `name` in `namespace` of Service `service`, with one endpoint:
    /// `upstream`, as a pod serving the Service port named `port_name` ("" for an
    /// unnamed one). The API server refuses loopback IPs in slices, so the endpoint is
    /// `<namespace>-<name>.localhost`, which the proxy takes for 127.0.0.1 as RFC 6761
    /// says (an `FQDN` slice); each slice has its own port.
    pub fn slice(
        &self,
        namespace: &str,
        name: &str,
        service: &str,
        port_name: &str,
        upstream: &Upstream,
        ready: bool,
    ) {
        // (kubectl warns that FQDN slices are deprecated.)
        self.plane.apply_in(namespace, &format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  labels: {{kubernetes.io/service-name: {service}}}\naddressType: FQDN\nports: [{{name: {port_name:?}, port: {}, protocol: TCP}}]\nendpoints: [{{addresses: [{namespace}-{name}.localhost], conditions: {{ready: {ready}}}}}]\n",
            upstream.addr.port()
        ));
    }

    /// `GET path` on `host` through the proxy, with `headers`.
    pub async fn send(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = Request::get(path).header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.client.send(self.proxy.addr, req, "").await
    }

    /// Polls until `GET path` on `host` (with `headers`) answers `status`.
    pub async fn wait_for(
        &self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        status: StatusCode,
    ) -> Reply {
        let log = || format!("controller log:\n{}", self.controller.log());
        let what = (host, path, headers);
        self.client
            .wait_for(self.proxy.addr, what, status, log)
            .await
    }

    /// The notes of the Events with `reason` on the `kind` object `name`.
    pub fn events(&self, kind: &str, name: &str, reason: &str) -> Vec<String> {
        let out = self.kubectl(&[
            "get",
            "events.events.k8s.io",
            "-o",
            "json",
            "--field-selector",
            &format!("regarding.kind={kind},regarding.name={name},reason={reason}"),
        ]);
        let list: Value = serde_json::from_str(&out).unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["note"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Polls until an Event with `reason` on the `kind` object `name` says `words`.
    pub async fn wait_event(&self, kind: &str, name: &str, reason: &str, words: &str) {
        let what = format!("a {reason} Event on {kind} {name} saying {words:?}");
        eventually(Duration::from_secs(20), &what, || async {
            self.events(kind, name, reason)
                .iter()
                .any(|n| n.contains(words))
        })
        .await;
    }
}
