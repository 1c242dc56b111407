//! nginx in two roles: the upstream every proxy forwards to (two servers answering "a"
//! and "b"), and the reference proxy Ceryx is measured against (HTTP and HTTPS).

use crate::process::{Processes, wait_listening};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the nginx servers listen.
pub struct Ports {
    pub upstream_a: u16,
    pub upstream_b: u16,
    pub proxy: u16,
    pub proxy_tls: u16,
}

/// Starts both nginx instances, with their files in `dir` (which holds `tls.crt` and
/// `tls.key`), and waits until every port listens.
pub async fn start(dir: &Path, ports: &Ports, procs: &mut Processes) -> Result<(), std::io::Error> {
    let upstream = write_conf(
        dir,
        "upstream",
        "1",
        format!(
            "  server {{ listen 127.0.0.1:{}; location / {{ return 200 \"a\"; }} }}\n  server {{ listen 127.0.0.1:{}; location / {{ return 200 \"b\"; }} }}\n",
            ports.upstream_a, ports.upstream_b
        ),
    )?;
    let proxy = write_conf(
        dir,
        "proxy",
        "auto",
        format!(
            "  upstream backend {{ server 127.0.0.1:{}; keepalive 64; }}\n  server {{ listen 127.0.0.1:{};\n    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host $http_host; }} }}\n  server {{ listen 127.0.0.1:{} ssl; ssl_certificate {dir}/tls.crt; ssl_certificate_key {dir}/tls.key;\n    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host $http_host; }} }}\n",
            ports.upstream_a,
            ports.proxy,
            ports.proxy_tls,
            dir = dir.display()
        ),
    )?;
    for (name, path) in [("nginx-upstream", upstream), ("nginx-proxy", proxy)] {
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        procs.add(name, child);
    }
    for port in [
        ports.upstream_a,
        ports.upstream_b,
        ports.proxy,
        ports.proxy_tls,
    ] {
        wait_listening(port).await;
    }
    Ok(())
}

/// Writes `<dir>/<name>.conf`: a foreground nginx with `workers` and the `servers` block.
fn write_conf(
    dir: &Path,
    name: &str,
    workers: &str,
    servers: String,
) -> Result<PathBuf, std::io::Error> {
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(
        &path,
        format!(
            "worker_processes {workers};\ndaemon off;\npid {dir}/{name}.pid;\nerror_log {dir}/{name}.log;\n\
             events {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n{servers}}}\n",
            dir = dir.display()
        ),
    )?;
    Ok(path)
}
