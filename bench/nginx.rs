//! nginx in two roles: the upstream every proxy forwards to (two servers answering "a"
//! and "b", the first also serving a 1 MiB file), and a reference proxy Ceryx is measured
//! against, tuned as its users tune it.

use crate::front::{Front, Routing};
use crate::process::{Processes, wait_listening, write_file};
use std::fmt::Write;
use std::path::Path;
use std::process::Command;

/// The large response: `GET /big` on upstream "a" answers this many bytes.
pub const BIG_BYTES: usize = 1 << 20;

/// Where the nginx servers listen.
pub struct Ports {
    pub upstream_a: u16,
    pub upstream_b: u16,
    pub proxy: Front,
}

/// Starts both nginx instances, with their files in `dir` (which holds `tls.crt` and
/// `tls.key`), and waits until every port listens.
pub async fn start(
    dir: &Path,
    ports: &Ports,
    routing: &Routing,
    procs: &mut Processes,
) -> Result<(), std::io::Error> {
    let big = write_file(dir, "big.bin", &"x".repeat(BIG_BYTES))?;
    let upstream = conf(
        dir,
        "upstream",
        "1",
        &format!(
            "  server {{ listen 127.0.0.1:{};\n    location / {{ return 200 \"a\"; }}\n    location = /big {{ alias {}; }} }}\n\
             server {{ listen 127.0.0.1:{}; location / {{ return 200 \"b\"; }} }}\n",
            ports.upstream_a,
            big.display(),
            ports.upstream_b
        ),
    )?;
    let proxy = conf(
        dir,
        "proxy",
        "auto",
        &proxy_servers(dir, &ports.proxy, routing),
    )?;
    for (name, path) in [("nginx-upstream", upstream), ("nginx-proxy", proxy)] {
        let mut command = Command::new("nginx");
        command.arg("-p").arg(dir).arg("-c").arg(&path);
        procs.spawn(name, dir, &mut command)?;
    }
    for port in [ports.upstream_a, ports.upstream_b] {
        wait_listening(port).await;
    }
    ports.proxy.wait().await;
    Ok(())
}

/// The proxy's `http` block: keep-alive upstreams, buffers that hold a 1 MiB response,
/// uploads streamed to the sink, and real routing by `Host` on the spread port.
fn proxy_servers(dir: &Path, front: &Front, routing: &Routing) -> String {
    // Every host maps to upstream "a"; an unknown host gets no backend (a 500).
    let mut map = String::new();
    for host in &routing.hosts {
        let _ = writeln!(map, "    {host} a;");
    }
    let locations = "    location / { proxy_pass http://a; }\n    \
         location /upload {\n      client_max_body_size 0; client_body_buffer_size 128k; proxy_request_buffering off; proxy_pass http://sink; }\n";
    format!(
        "  proxy_http_version 1.1;\n  proxy_set_header Connection \"\";\n  proxy_set_header Host $http_host;\n  \
         proxy_buffers 16 64k;\n  proxy_buffer_size 64k;\n  \
         upstream a {{ server 127.0.0.1:{a}; keepalive 1024; keepalive_requests 1000000; }}\n  \
         upstream sink {{ server 127.0.0.1:{sink}; keepalive 1024; keepalive_requests 1000000; }}\n  \
         map $host $backend_for_host {{\n{map}  }}\n  \
         server {{ listen 127.0.0.1:{http}; listen 127.0.0.1:{tls} ssl http2;\n    \
         ssl_certificate {dir}/tls.crt; ssl_certificate_key {dir}/tls.key; ssl_protocols TLSv1.2 TLSv1.3;\n{locations}  }}\n  \
         server {{ listen 127.0.0.1:{h2c} http2;\n{locations}  }}\n  \
         server {{ listen 127.0.0.1:{spread}; location / {{ proxy_pass http://$backend_for_host; }} }}\n",
        a = routing.upstream,
        sink = routing.sink,
        http = front.http,
        tls = front.tls,
        h2c = front.h2c,
        spread = front.spread,
        dir = dir.display()
    )
}

/// Writes `<dir>/<name>.conf`: a foreground nginx with `workers` and the `servers` block.
/// Connections stay open for as many requests as a run sends (the default, 1,000, also
/// ends HTTP/2 connections, which h2load does not reopen).
fn conf(
    dir: &Path,
    name: &str,
    workers: &str,
    servers: &str,
) -> Result<std::path::PathBuf, std::io::Error> {
    write_file(
        dir,
        &format!("{name}.conf"),
        &format!(
            "worker_processes {workers};\ndaemon off;\npid {dir}/{name}.pid;\nerror_log {dir}/{name}.log;\n\
             events {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  keepalive_requests 1000000;\n{servers}}}\n",
            dir = dir.display()
        ),
    )
}
