//! A private `redis-server` for a test: on a free loopback port, with its
//! own directory and the append-only file on (`appendfsync always`), killed
//! and removed when dropped. `make test` installs redis-server.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

/// The redis-server program (`SHMDS_REDIS_SERVER` overrides).
fn program() -> String {
    std::env::var("SHMDS_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let dir = std::env::temp_dir().join(format!(
            "shmds-redis-{}-{}",
            std::process::id(),
            crate::common::COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut server = RedisServer {
                child: None,
                port,
                dir: dir.clone(),
            };
            if server.launch() {
                return server;
            }
            std::mem::forget(server); // keep the directory for the next try
        }
        panic!("could not start redis-server on a free port");
    }

    /// Start the server process (again) on `self.port`; whether it answers.
    fn launch(&mut self) -> bool {
        let child = Command::new(program())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e} (`make test` installs it: apt-get install redis-server)",
                    program()
                )
            });
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                // Answering PING, not just listening (it may still load the AOF).
                if let Ok(client) = redis::Client::open(self.url()) {
                    if let Ok(mut con) = client.get_connection() {
                        if redis::cmd("PING").query::<String>(&mut con).is_ok() {
                            return true;
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// SIGKILL the server (what an acknowledged write must survive).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.launch(),
            "redis-server did not come back on port {}",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private 3-node Redis Cluster (no replicas) on free loopback ports,
/// made with `redis-cli --cluster create`; stopped when dropped.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let dir = std::env::temp_dir().join(format!(
                "shmds-redis-cluster-{}-{}",
                std::process::id(),
                crate::common::COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new(program())
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(dir.join("nodes.conf"))
                .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run redis-server");
            let node = RedisServer {
                child: Some(child),
                port,
                dir,
            };
            let start = Instant::now();
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "cluster node did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            nodes.push(node);
        }
        let cli = std::env::var("SHMDS_REDIS_CLI").unwrap_or_else(|_| "redis-cli".into());
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cli}: {e} (it comes with redis-server)"));
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        // Until every node agrees the cluster is up.
        let start = Instant::now();
        'wait: loop {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "cluster did not come up"
            );
            for n in &nodes {
                let client = redis::Client::open(n.url()).unwrap();
                let ok = client
                    .get_connection()
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
                    .map(|info| info.contains("cluster_state:ok"))
                    .unwrap_or(false);
                if !ok {
                    std::thread::sleep(Duration::from_millis(50));
                    continue 'wait;
                }
            }
            break;
        }
        RedisCluster { nodes }
    }

    /// `redis+cluster://` with every node.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }
}
