//! HAProxy, the second reference proxy: one process with a thread per core, upstream
//! keep-alive reused across clients, no logging, as its users run it.

use crate::front::{Front, Routing};
use crate::process::{Processes, write_file};
use std::path::Path;
use std::process::Command;

/// Starts HAProxy in the foreground as process `haproxy`, with its files in `dir` (which
/// holds `tls.crt` and `tls.key`), and waits until every port of `front` listens.
pub async fn start(
    dir: &Path,
    front: &Front,
    routing: &Routing,
    procs: &mut Processes,
) -> Result<(), std::io::Error> {
    // HAProxy reads the certificate and its key from one file.
    let pem = write_file(
        dir,
        "tls.pem",
        &(std::fs::read_to_string(dir.join("tls.crt"))?
            + &std::fs::read_to_string(dir.join("tls.key"))?),
    )?;
    let hosts: String = routing.hosts.iter().map(|h| format!("{h} a\n")).collect();
    let map = write_file(dir, "hosts.map", &hosts)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let config = write_file(
        dir,
        "haproxy.cfg",
        &format!(
            "global\n  nbthread {threads}\n  maxconn 4096\n\
             defaults\n  mode http\n  option http-keep-alive\n  http-reuse always\n  \
             timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n  timeout http-keep-alive 30s\n\
             frontend one\n  bind 127.0.0.1:{http}\n  bind 127.0.0.1:{h2c} proto h2\n  \
             bind 127.0.0.1:{tls} ssl crt {pem} alpn h2,http/1.1\n  \
             use_backend sink if {{ path_beg /upload }}\n  default_backend a\n\
             frontend spread\n  bind 127.0.0.1:{spread}\n  \
             use_backend %[req.hdr(host),lower,map({map})]\n\
             backend a\n  server a 127.0.0.1:{a}\n\
             backend sink\n  server sink 127.0.0.1:{sink}\n",
            http = front.http,
            h2c = front.h2c,
            tls = front.tls,
            spread = front.spread,
            pem = pem.display(),
            map = map.display(),
            a = routing.upstream,
            sink = routing.sink,
        ),
    )?;
    let mut command = Command::new("haproxy");
    command.arg("-db").arg("-f").arg(&config);
    procs.spawn("haproxy", dir, &mut command)?;
    front.wait().await;
    Ok(())
}
