//! The benchmark's child processes: started by name, killed when dropped, and waited for
//! until they listen.

use std::fs::File;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Child processes by name, killed when dropped.
#[derive(Default)]
pub struct Processes(Vec<(String, Child)>);

impl Processes {
    pub fn add(&mut self, name: &str, child: Child) {
        self.0.push((name.into(), child));
    }

    /// Starts `command` as process `name` with its output in `<dir>/<name>.out`, where a
    /// server that refuses its configuration says why.
    pub fn spawn(
        &mut self,
        name: &str,
        dir: &Path,
        command: &mut Command,
    ) -> Result<(), std::io::Error> {
        let out = File::create(dir.join(format!("{name}.out")))?;
        let child = command
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()?;
        self.add(name, child);
        Ok(())
    }

    pub fn kill(&mut self, name: &str) {
        if let Some(i) = self.0.iter().position(|(n, _)| n == name) {
            let (_, mut child) = self.0.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self, name: &str) -> u32 {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, c)| c.id())
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: an nginx master must take its workers down with it.
        for (_, child) in &mut self.0 {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Returns once something accepts connections on `port`; panics after 20 s.
pub async fn wait_listening(port: u16) {
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nothing listens on {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes `<dir>/<name>` (a server's configuration) and returns its path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> Result<PathBuf, std::io::Error> {
    let path = dir.join(name);
    std::fs::write(&path, contents)?;
    Ok(path)
}

/// Resident memory of process `pid` in KiB (0 if it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A KiB figure of `/proc/<pid>/status` such as `VmHWM:` (0 if it cannot be read).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
