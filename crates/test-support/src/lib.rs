//! Real servers for tests, started on free ports with temporary state and stopped on Drop
//! (the pattern of nats.rs's `nats-server` helper crate).

mod cluster;

use std::path::{Path, PathBuf};

use observatory_bus::LocalNatsServer;

pub use cluster::TestCluster;

/// A nats-server with JetStream and its own temporary store directory.
pub struct TestNats {
    server: Option<LocalNatsServer>,
    store: tempfile::TempDir,
}

impl TestNats {
    /// Panics with install instructions when nats-server is missing: an integration test
    /// without its server must fail, never pass vacuously.
    pub fn start() -> TestNats {
        let store = tempfile::tempdir().expect("temp dir");
        let server = LocalNatsServer::start(store.path(), 0).unwrap_or_else(|e| panic!("{e}"));
        TestNats { server: Some(server), store }
    }

    pub fn url(&self) -> String {
        self.server.as_ref().expect("running").url()
    }

    pub fn port(&self) -> u16 {
        self.server.as_ref().expect("running").port()
    }

    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// Stops the server and starts it again on the same port with the same store: the
    /// stream survives, as after a server restart in production.
    pub fn restart(&mut self) {
        let port = self.stop();
        self.start_on(port);
    }

    /// Stops the server, keeping its store (an outage); returns its port for
    /// [`start_on`](Self::start_on).
    pub fn stop(&mut self) -> u16 {
        let port = self.port();
        drop(self.server.take());
        port
    }

    /// Starts the stopped server again on `port` with the same store.
    pub fn start_on(&mut self, port: u16) {
        self.server =
            Some(LocalNatsServer::start(self.store.path(), port).unwrap_or_else(|e| panic!("{e}")));
    }
}

/// A temporary directory used as the object store root.
pub struct TestStore {
    dir: tempfile::TempDir,
}

impl TestStore {
    pub fn new() -> TestStore {
        TestStore { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Default for TestStore {
    fn default() -> Self {
        Self::new()
    }
}

/// An S3-protocol server (moto_server from PyPI `moto[server]`) on a free loopback port,
/// with one bucket created. moto honours conditional create (`If-None-Match: *`) atomically,
/// which the create-only manifests rely on.
pub struct TestS3 {
    child: std::process::Child,
    port: u16,
    pub bucket: String,
}

impl TestS3 {
    pub fn start(bucket: &str) -> TestS3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto_server ({e}); install it with `pip install \"moto[server]\"` (scripts/setup.sh does)"));
        let server = TestS3 { child, port, bucket: bucket.to_owned() };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        // Creating the bucket is also the readiness probe.
        loop {
            if server.http("PUT", &format!("/{bucket}")).is_ok_and(|status| status == 200) {
                return server;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "moto_server did not answer on port {port} within 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// A minimal HTTP/1.1 request; moto accepts unsigned bucket creation.
    fn http(&self, method: &str, path: &str) -> std::io::Result<u16> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        response
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("unexpected answer: {response:.80}")))
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Environment for object_store's `AmazonS3Builder::from_env`.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false".into()),
        ]
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
