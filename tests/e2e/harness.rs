//! The e2e harness: a data directory and nats-server per test, the real binary started with the
//! flags each command takes, and a client that can call any endpoint with any body and token.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use observatory_test_support::{TestCluster, TestNats, TestS3};
use reqwest::Method;
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
    /// When set, commands use this 3-node cluster (R3 stream) instead of `nats`.
    pub cluster: Option<TestCluster>,
    /// When set, commands connect to this server (with these extra flags) instead of `nats`.
    pub external_nats: Option<(String, Vec<String>)>,
    /// A researcher's reader token, made on first use: what [`Service::get`] reads with, so
    /// tests compare exact numbers unless they ask for the public ones.
    researcher: std::sync::OnceLock<String>,
}

/// Which of the test's resources a command takes flags for (each command lists its own).
struct Takes {
    data_dir: bool,
    store: bool,
    nats: bool,
    /// Takes `--flush-interval-ms`: the test default is 50 ms instead of a second.
    projector: bool,
    /// Takes `--query-wait-ms`: the test default is 20 s, for slow CI machines.
    query: bool,
}

impl Takes {
    fn of(command: &str) -> Takes {
        let (store, nats, projector, query) = match command {
            "up" => (true, true, true, true),
            "ingest" => (false, true, false, false),
            "project" | "rebuild" => (true, true, true, false),
            "query" => (true, false, false, true),
            "release" | "report" | "scheduler" => (true, false, false, false),
            _ => (false, false, false, false),
        };
        let data_dir = !matches!(command, "estimate" | "bench");
        Takes { data_dir, store, nats, projector, query }
    }
}

impl Env {
    pub fn new() -> Env {
        Env {
            nats: TestNats::start(),
            dir: tempfile::tempdir().expect("temp dir"),
            s3: None,
            cluster: None,
            external_nats: None,
            researcher: std::sync::OnceLock::new(),
        }
    }

    /// Commands connect to a 3-node JetStream cluster, with the stream replicated on all three.
    pub fn with_cluster() -> Env {
        Env { cluster: Some(TestCluster::start()), ..Env::new() }
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

    /// `observatory <command> <args…>` with this environment's data dir, store and NATS, each
    /// passed only to the commands that take it; add flags with [`Invocation::flag`].
    pub fn observatory(&self, command: &str) -> Invocation<'_> {
        let takes = Takes::of(command);
        let mut flags = Vec::new();
        if takes.projector {
            flags.push(("--flush-interval-ms".to_owned(), "50".to_owned()));
        }
        if takes.query {
            flags.push(("--query-wait-ms".to_owned(), "20000".to_owned()));
        }
        Invocation { env: self, command: command.to_owned(), takes, args: Vec::new(), flags }
    }

    /// `observatory up` serving HTTP on a free port, once /health answers 200.
    pub async fn up(&self) -> Service {
        self.observatory("up").start().await
    }

    pub fn add_agency(&self, id: &str) -> String {
        self.add_agency_with(id, &[])
    }

    /// `agency add ID EXTRA…` (e.g. `--crosswalk natinf`); returns the token.
    pub fn add_agency_with(&self, id: &str, extra: &[&str]) -> String {
        let stdout = self.observatory("agency").args(&["add", id]).args(extra).run();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "the token must be the only line on stdout: {stdout:?}");
        lines[0].to_owned()
    }

    /// `reader add NAME --role ROLE`; returns the token.
    pub fn add_reader(&self, name: &str, role: &str) -> String {
        let stdout = self.observatory("reader").args(&["add", name]).flag("--role", role).run();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "the token must be the only line on stdout: {stdout:?}");
        lines[0].to_owned()
    }

    /// The harness's researcher token (exact numbers).
    pub fn researcher(&self) -> &str {
        self.researcher.get_or_init(|| self.add_reader("harness-researcher", "researcher"))
    }

    /// Starts `observatory project` without HTTP.
    pub fn spawn_projector(&self) -> Child {
        self.observatory("project").flag("--flush-interval-ms", "20").spawn()
    }

    pub fn rebuild(&self) -> String {
        self.observatory("rebuild").run()
    }
}

/// One `observatory` command line being put together: arguments, then flags (a flag given
/// twice keeps its last value, so a test overrides the harness's defaults).
pub struct Invocation<'a> {
    env: &'a Env,
    command: String,
    takes: Takes,
    args: Vec<String>,
    flags: Vec<(String, String)>,
}

impl Invocation<'_> {
    /// Positional arguments and subcommands, in order (`agency add pn`).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    pub fn flag(mut self, name: &str, value: &str) -> Self {
        self.flags.retain(|(n, _)| n != name);
        self.flags.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn command(&self) -> Command {
        let env = self.env;
        let mut command = Command::new(BIN);
        command.arg(&self.command).args(&self.args);
        if self.takes.data_dir {
            command.arg("--data-dir").arg(env.data_dir());
        }
        if self.takes.store {
            command.arg("--store");
            match &env.s3 {
                Some(s3) => {
                    command.arg(format!("s3://{}/projections-root", s3.bucket)).envs(s3.env());
                }
                None => {
                    command.arg(env.store());
                }
            }
        }
        if self.takes.nats {
            match (&env.cluster, &env.external_nats) {
                (Some(cluster), _) => {
                    command.arg("--nats-url").arg(cluster.urls()).args(["--replicas", "3"])
                }
                (None, Some((url, flags))) => command.arg("--nats-url").arg(url).args(flags),
                (None, None) => command.arg("--nats-url").arg(env.nats.url()),
            };
        }
        for (name, value) in &self.flags {
            command.arg(name).arg(value);
        }
        command
            .env("OBSERVATORY_LOG", std::env::var("E2E_LOG").unwrap_or("warn".into()))
            .stdin(Stdio::null());
        command
    }

    /// Runs to completion, asserting success; returns stdout.
    pub fn run(self) -> String {
        let output = self.command().output().expect("run observatory");
        assert!(
            output.status.success(),
            "observatory {} failed: {}",
            self.command,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8")
    }

    /// Starts in the background, without HTTP (the projector).
    pub fn spawn(self) -> Child {
        self.command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn observatory")
    }

    /// Starts serving HTTP on a free port; returns once /health answers 200.
    pub async fn start(self) -> Service {
        self.start_with(Stdio::inherit(), &[]).await
    }

    /// As [`start`](Self::start), with stderr (the log) sent to `stderr` and extra
    /// environment variables (e.g. `OBSERVATORY_LOG`).
    pub async fn start_with(self, stderr: Stdio, vars: &[(&str, &str)]) -> Service {
        let researcher = self.env.researcher().to_owned();
        let http = format!("127.0.0.1:{}", free_port());
        let child = self
            .flag("--http", &http)
            .command()
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn observatory");
        let service = Service {
            child,
            base: format!("http://{http}"),
            client: reqwest::Client::new(),
            researcher,
        };
        let health = service.call(Method::GET, "/health");
        wait_until("the service to answer /health with 200", Duration::from_secs(60), || {
            let request = health.request();
            async move { request.send().await.map(|r| r.status().is_success()).unwrap_or(false) }
        })
        .await;
        service
    }
}

pub struct Service {
    child: Child,
    pub base: String,
    pub client: reqwest::Client,
    /// The token [`Service::get`] reads exact numbers with.
    pub researcher: String,
}

pub struct Answer {
    pub status: u16,
    /// The JSON answer; a body that is not JSON is kept as a JSON string.
    pub body: Value,
    /// The body as sent.
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    /// The `last_sequence` of an ingest answer (what to pass as `min_sequence`).
    pub fn sequence(&self) -> u64 {
        self.body["last_sequence"]
            .as_u64()
            .unwrap_or_else(|| panic!("no last_sequence in {}", self.body))
    }
}

/// One HTTP request to the service: any method, path, body, content type and token.
pub struct Call<'a> {
    service: &'a Service,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Call<'_> {
    /// `Authorization: Bearer <token>`.
    pub fn token(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn content_type(self, content_type: &str) -> Self {
        self.header("content-type", content_type)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// A JSON body with its content type.
    pub fn json(self, body: &Value) -> Self {
        self.content_type("application/json").body(body.to_string())
    }

    fn request(&self) -> reqwest::RequestBuilder {
        let url = format!("{}{}", self.service.base, self.path);
        let mut request = self.service.client.request(self.method.clone(), url);
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &self.body {
            request = request.body(body.clone());
        }
        request
    }

    /// Sends; the body is JSON when it parses, else a JSON string of the text.
    pub async fn send(self) -> Answer {
        let what = format!("{} {}", self.method, self.path);
        let response = self.request().send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
        Answer { status, body, text, headers }
    }

    /// Sends, asserting that the answer is JSON.
    pub async fn send_json(self) -> Answer {
        let answer = self.send().await;
        assert!(
            serde_json::from_str::<Value>(&answer.text).is_ok(),
            "answer is not JSON ({}): {}",
            answer.status,
            answer.text
        );
        answer
    }
}

impl Service {
    /// Any request: `service.call(Method::POST, "/v1/periods/close").token(t).json(&body)`.
    pub fn call(&self, method: Method, path: &str) -> Call<'_> {
        Call { service: self, method, path: path.to_owned(), headers: Vec::new(), body: None }
    }

    /// `POST path` with a body of `content_type` and, when given, a bearer token; the answer
    /// must be JSON.
    pub async fn post_to(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> Answer {
        let mut call = self.call(Method::POST, path).content_type(content_type).body(body);
        if let Some(token) = token {
            call = call.token(token);
        }
        call.send_json().await
    }

    /// `POST /v1/incidents`.
    pub async fn post(
        &self,
        token: Option<&str>,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> Answer {
        self.post_to("/v1/incidents", token, content_type, body).await
    }

    pub async fn post_ndjson(&self, token: &str, records: &[Value]) -> Answer {
        let body: String = records.iter().map(|r| format!("{r}\n")).collect();
        self.post(Some(token), "application/x-ndjson", body).await
    }

    /// `POST /v1/periods/close` with a JSON body.
    pub async fn close_period(&self, token: &str, body: &Value) -> Answer {
        self.call(Method::POST, "/v1/periods/close").token(token).json(body).send_json().await
    }

    /// `GET` as the harness's researcher: exact numbers.
    pub async fn get(&self, path_and_query: &str) -> Answer {
        self.call(Method::GET, path_and_query).token(&self.researcher).send().await
    }

    /// `GET` until the answer comes from projection `version` (a rebuild's switch is served
    /// once the new version's counts are netted, in the background): every answer meanwhile
    /// is a whole answer of the version before.
    pub async fn get_on_version(&self, path_and_query: &str, version: u64) -> Answer {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = self.get(path_and_query).await;
            assert_eq!(answer.status, 200, "{}", answer.body);
            let served = answer.body["as_of"]["version"].as_u64().unwrap();
            if served == version {
                return answer;
            }
            assert_eq!(served, version - 1, "{}", answer.body["as_of"]);
            assert!(Instant::now() < deadline, "version {version} not served within 60 s");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `GET` without a token: the public (perturbed) numbers.
    pub async fn get_public(&self, path_and_query: &str) -> Answer {
        self.call(Method::GET, path_and_query).send().await
    }

    pub async fn get_text(&self, path_and_query: &str) -> (u16, String, Option<String>) {
        let answer = self.get(path_and_query).await;
        let as_of = answer
            .headers
            .get("observatory-as-of-sequence")
            .map(|v| v.to_str().unwrap().to_owned());
        (answer.status, answer.text, as_of)
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
