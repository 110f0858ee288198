//! Real servers for tests, started on free ports with temporary state and stopped on Drop
//! (the pattern of nats.rs's `nats-server` helper crate).

use std::path::{Path, PathBuf};

use observatory_bus::LocalNatsServer;

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
        let port = self.port();
        drop(self.server.take());
        self.server = Some(LocalNatsServer::start(self.store.path(), port).unwrap_or_else(|e| panic!("{e}")));
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
