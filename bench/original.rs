//! The original Ceryx (OpenResty + Lua + Redis), modelled: Debian's nginx with its Lua
//! module running `original/router.lua`, our model of the original's router written from
//! its documented behaviour (not its code). It reads the routes Ceryx reads, from the same
//! Redis keys, and pays what the original pays per request: two new Redis connections.

use crate::process::{Processes, wait_listening, write_file};
use std::path::Path;
use std::process::Command;

/// The process name of the model's nginx master.
pub const PROCESS: &str = "original-ceryx";

/// The router, per request (see its header).
const ROUTER: &str = include_str!("original/router.lua");

/// Starts the model as process `original-ceryx` on `port`, reading Redis on `redis`, with
/// its files in `dir`, and returns once it listens. Its nginx checks the configuration
/// first, so that a missing Lua module fails here, saying why.
pub async fn start(
    dir: &Path,
    port: u16,
    redis: u16,
    procs: &mut Processes,
) -> Result<(), Box<dyn std::error::Error>> {
    let router = write_file(dir, "original-router.lua", ROUTER)?;
    let config = write_file(dir, "original.conf", &conf(dir, port, &router))?;
    let mut command = Command::new("nginx");
    command.arg("-p").arg(dir).arg("-c").arg(&config);
    let check = Command::new("nginx")
        .arg("-t")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&config)
        .output()?;
    if !check.status.success() {
        return Err(format!(
            "the original Ceryx's model: nginx refuses {} (needs Debian's libnginx-mod-http-lua, \
             lua-resty-core and lua-nginx-redis): {}",
            config.display(),
            String::from_utf8_lossy(&check.stderr).trim()
        )
        .into());
    }
    command
        .env("CERYX_REDIS_HOST", "127.0.0.1")
        .env("CERYX_REDIS_PORT", redis.to_string());
    procs.spawn(PROCESS, dir, &mut command)?;
    wait_listening(port).await;
    Ok(())
}

/// The original's nginx as it ships: one worker, 1,024 connections, the Lua router in
/// `location /`, HTTP/1.1 and `Connection: close` (or `upgrade`) upstream, request and
/// response buffering on (nginx's defaults), the headers it sets, and its `Location`
/// rewrite. Only `access_log off` and `keepalive_requests` are the bench's, as for nginx.
fn conf(dir: &Path, port: u16, router: &Path) -> String {
    format!(
        "load_module /usr/lib/nginx/modules/ndk_http_module.so;\n\
         load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;\n\
         env CERYX_REDIS_HOST;\nenv CERYX_REDIS_PORT;\n\
         worker_processes 1;\ndaemon off;\npid {dir}/original.pid;\nerror_log {dir}/original.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 1000000;\n  keepalive_timeout 30s;\n  \
         lua_shared_dict ceryx 1m;\n  \
         map $http_upgrade $ceryx_connection {{ default upgrade; \"\" close; }}\n  \
         map $http_x_forwarded_proto $ceryx_forwarded_proto {{ default $scheme; http http; https https; }}\n  \
         server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      set $target \"\";\n      \
         access_by_lua_file {router};\n      proxy_http_version 1.1;\n      \
         proxy_set_header Host $http_host;\n      \
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      \
         proxy_set_header X-Real-IP $remote_addr;\n      \
         proxy_set_header X-Forwarded-Proto $ceryx_forwarded_proto;\n      \
         proxy_set_header Upgrade $http_upgrade;\n      \
         proxy_set_header Connection $ceryx_connection;\n      \
         proxy_redirect ~^(https?://[^/]+:[0-9]+)(/.+)$ $2;\n      \
         proxy_pass $target;\n    }}\n  }}\n}}\n",
        dir = dir.display(),
        router = router.display(),
    )
}
