//! A private `redis-server` for tests, benches and the demo: started on a unix socket in its own
//! temporary directory (no port to collide with), persistence off, stopped on drop.
//!
//! ```no_run
//! let mut redis = ccr::demo::redis::RedisServer::start().expect("redis-server on PATH");
//! let url = redis.url(); // redis+unix:///tmp/…/redis.sock
//! redis.stop();          // Redis gone: instances fall back to local state
//! redis.restart().unwrap(); // same socket, empty data
//! ```

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a start may take before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// One `redis-server` child process.
pub struct RedisServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl RedisServer {
    /// Whether a `redis-server` binary can be run.
    pub fn available() -> bool {
        Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts one and waits until it answers `PING`.
    pub fn start() -> std::io::Result<RedisServer> {
        let dir = tempfile::Builder::new().prefix("ccr-redis").tempdir()?;
        let socket = dir.path().join("redis.sock");
        let mut server = RedisServer { child: None, dir, socket };
        server.spawn()?;
        Ok(server)
    }

    /// The URL of this server (`redis+unix://…`).
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether the server is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (as a crash would) and waits for it to exit. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Starts it again on the same socket, with no data (persistence is off).
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Sends one inline command and returns the raw reply (for tests peeking at keys).
    pub fn command(&self, line: &str) -> std::io::Result<String> {
        let mut stream = UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(format!("{line}\r\n").as_bytes())?;
        let mut buf = vec![0u8; 64 * 1024];
        let n = stream.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let _ = std::fs::remove_file(&self.socket);
        let child = Command::new("redis-server")
            .arg("--port")
            .arg("0")
            .arg("--unixsocket")
            .arg(&self.socket)
            .arg("--unixsocketperm")
            .arg("700")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.command("PING").is_ok_and(|r| r.starts_with("+PONG")) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(std::io::Error::other(format!("redis-server exited at start: {status}")));
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(std::io::Error::other("redis-server did not answer PING within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::RedisLink;

    #[tokio::test]
    #[ignore = "needs redis-server"]
    async fn a_link_follows_redis_down_and_up() {
        let mut redis = RedisServer::start().expect("redis-server");
        let link = RedisLink::new(&redis.url(), "t:", Duration::from_millis(500)).expect("url");
        assert!(link.ping().await, "connects");
        assert!(link.health().connected);
        let key = link.key("k");
        let set = link
            .run(|mut c| {
                let key = key.clone();
                async move { redis::cmd("SET").arg(&key).arg("v").query_async::<()>(&mut c).await }
            })
            .await;
        assert_eq!(set, Some(()));
        assert!(redis.command("GET t:k").unwrap().contains('v'));

        redis.stop();
        let got =
            link.run(|mut c| async move {
                redis::cmd("GET").arg("t:k").query_async::<Option<String>>(&mut c).await
            })
            .await;
        assert_eq!(got, None, "Redis down: the caller uses local state");
        assert!(!link.health().connected);
        let since = link.health().since;

        redis.restart().expect("restart");
        let mut up = false;
        for _ in 0..50 {
            if link.ping().await {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "reconnects by itself");
        assert!(link.health().since >= since);
    }
}
