use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use observatory_test_support::{TestNats, TestS3};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_observatory");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Polls `condition` until it holds; panics with `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A data directory shared by the processes of one test.
pub struct Env {
    pub nats: TestNats,
    pub dir: tempfile::TempDir,
    /// When set, the object store is this S3-protocol server instead of a directory.
    pub s3: Option<TestS3>,
}

impl Env {
    pub fn new() -> Env {
        Env { nats: TestNats::start(), dir: tempfile::tempdir().expect("temp dir"), s3: None }
    }

    /// Projections in S3 (moto_server on loopback) through the same code as the local store.
    pub fn with_s3() -> Env {
        Env { s3: Some(TestS3::start("observatory")), ..Env::new() }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command.args(args).arg("--data-dir").arg(self.data_dir()).arg("--store");
        match &self.s3 {
            Some(s3) => {
                command.arg(format!("s3://{}/projections-root", s3.bucket)).envs(s3.env());
            }
            None => {
                command.arg(self.store());
            }
        }
        command
            .arg("--nats-url")
            .arg(self.nats.url())
            .env("OBSERVATORY_LOG", "warn")
            .stdin(Stdio::null());
        command
    }

    pub fn add_agency(&self, id: &str) -> String {
        self.add_agency_with(id, &[])
    }

    /// `agency add ID EXTRA…` (e.g. `--crosswalk natinf`); returns the token.
    pub fn add_agency_with(&self, id: &str, extra: &[&str]) -> String {
        let mut args = vec!["agency", "add", id];
        args.extend_from_slice(extra);
        let output = self.command(&args).output().expect("run agency add");
        assert!(
            output.status.success(),
            "agency add failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout).expect("utf-8");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "the token must be the only line on stdout: {stdout:?}");
        lines[0].to_owned()
    }

    /// Starts `observatory <command>` serving HTTP on a free port, waiting for /health.
    pub async fn serve(&self, command: &str, extra: &[&str]) -> Service {
        let port = free_port();
        let http = format!("127.0.0.1:{port}");
        let mut args = vec![command, "--http", &http, "--flush-interval-ms", "50"];
        if !extra.contains(&"--query-wait-ms") {
            args.extend_from_slice(&["--query-wait-ms", "20000"]);
        }
        args.extend_from_slice(extra);
        let child = self
            .command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn observatory");
        let service =
            Service { child, base: format!("http://{http}"), client: reqwest::Client::new() };
        let client = service.client.clone();
        let url = format!("{}/health", service.base);
        wait_until("the service to answer /health with 200", Duration::from_secs(60), || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                client.get(&url).send().await.map(|r| r.status().is_success()).unwrap_or(false)
            }
        })
        .await;
        service
    }

    /// Starts `observatory project` without HTTP.
    pub fn spawn_projector(&self) -> Child {
        self.command(&["project", "--flush-interval-ms", "20"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn projector")
    }

    pub fn rebuild(&self) -> String {
        self.rebuild_with(&[])
    }

    pub fn rebuild_with(&self, extra: &[&str]) -> String {
        let mut args = vec!["rebuild"];
        args.extend_from_slice(extra);
        let output = self.command(&args).output().expect("run rebuild");
        assert!(
            output.status.success(),
            "rebuild failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8")
    }
}

pub struct Service {
    child: Child,
    pub base: String,
    pub client: reqwest::Client,
}

pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Service {
    pub async fn post(
        &self,
        token: Option<&str>,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Answer {
        let mut request = self
            .client
            .post(format!("{}/v1/incidents", self.base))
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("POST /v1/incidents");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("answer is not JSON ({status}): {text}"));
        Answer { status, body }
    }

    pub async fn post_ndjson(&self, token: &str, records: &[Value]) -> Answer {
        let body: String = records.iter().map(|r| format!("{r}\n")).collect();
        self.post(Some(token), "application/x-ndjson", body).await
    }

    /// `POST /v1/periods/close` with a JSON body.
    pub async fn close_period(&self, token: &str, body: &Value) -> Answer {
        let response = self
            .client
            .post(format!("{}/v1/periods/close", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("POST /v1/periods/close");
        let status = response.status().as_u16();
        Answer { status, body: response.json().await.expect("a JSON answer") }
    }

    pub async fn get(&self, path_and_query: &str) -> Answer {
        let response =
            self.client.get(format!("{}{path_and_query}", self.base)).send().await.expect("GET");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, body }
    }

    pub async fn get_text(&self, path_and_query: &str) -> (u16, String, Option<String>) {
        let response =
            self.client.get(format!("{}{path_and_query}", self.base)).send().await.expect("GET");
        let as_of = response
            .headers()
            .get("observatory-as-of-sequence")
            .map(|v| v.to_str().unwrap().to_owned());
        (response.status().as_u16(), response.text().await.expect("body"), as_of)
    }

    /// Rows of a counts query, after waiting for `min_sequence`.
    pub async fn counts(&self, query: &str, min_sequence: u64) -> Vec<Value> {
        let answer =
            self.get(&format!("/v1/incidents/counts?{query}&min_sequence={min_sequence}")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(answer.body["as_of"]["sequence"].as_u64().unwrap() >= min_sequence);
        answer.body["rows"].as_array().unwrap().clone()
    }

    pub fn stop(mut self) {
        terminate(&mut self.child);
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGTERM, then wait: a graceful stop.
pub fn terminate(child: &mut Child) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let _ = child.wait();
}

pub fn record(id: &str, revision: u32, occurred_on: &str, departement: &str, iccs: &str) -> Value {
    serde_json::json!({
        "agency_incident_id": id, "revision": revision, "occurred_on": occurred_on,
        "reported_on": occurred_on, "iccs": iccs, "cyber": true, "departement": departement,
        "victim_type": "individual", "channel": "email", "loss_eur": 10.25
    })
}
