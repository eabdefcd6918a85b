//! Answering the platform with a command (feature `exec`): each request runs `sh -c CMD` with
//! the request on stdin and its ids in the environment, and the command's stdout becomes the
//! answer. `aliot device run --exec CMD` is built on it.
//!
//! | request | stdin | environment | answer |
//! |---|---|---|---|
//! | property set | the Alink request (JSON) | `ALIOT_TOPIC`, `ALIOT_METHOD`, `ALIOT_MESSAGE_ID` (the Alink id) | [`ExecOutcome::alink_reply`] |
//! | service call | the Alink request (JSON) | the same, and `ALIOT_RRPC_ID` when it came over RRPC | [`ExecOutcome::alink_reply`] |
//! | raw RRPC | the payload | `ALIOT_TOPIC`, `ALIOT_MESSAGE_ID` and `ALIOT_RRPC_ID` (both the RRPC message id) | [`ExecOutcome::rrpc_reply`] |
//! | message | the payload | `ALIOT_TOPIC` | none |
//!
//! The command never sees `ALIOT_DEVICE_SECRET` (where the aliot tools read the secret from),
//! and it is killed after its timeout (30 s unless told otherwise). It runs off the network
//! loop: give it to [`Handlers`](crate::Handlers), which bounds how many run at once.
//!
//! ```no_run
//! use aliot_device::{Events, Handlers};
//! use aliot_device::exec::Exec;
//! # async fn run(events: Events) {
//! let exec = Exec::shell("./on-command.sh");
//! let (for_sets, for_calls) = (exec.clone(), exec.clone());
//! Handlers::new()
//!     .on_property_set_request(move |set| {
//!         let outcome = for_sets.property_set(set);
//!         async move { outcome.await.alink_reply() }
//!     })
//!     .on_any_service_request(move |call| {
//!         let outcome = for_calls.service_call(call);
//!         async move { outcome.await.alink_reply() }
//!     })
//!     .run(events)
//!     .await;
//! # }
//! ```

use std::future::Future;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use aliot_protocol::codes::alink as code;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use crate::event::{Message, PropertySet, ReplyError, RrpcRequest, ServiceCall};

/// The environment variable the aliot tools read the device secret from: removed from the
/// command's environment.
const SECRET_VAR: &str = "ALIOT_DEVICE_SECRET";
/// How much of the command's stderr an error answer carries, in characters (the end of it).
const STDERR_TAIL: usize = 400;

/// A command run for each request (cheap to clone).
#[derive(Debug, Clone)]
pub struct Exec {
    command: Arc<str>,
    timeout: Duration,
}

impl Exec {
    /// `sh -c command` (`cmd /C command` on Windows), killed after 30 s.
    pub fn shell(command: impl Into<String>) -> Self {
        Self {
            command: Arc::from(command.into()),
            timeout: Duration::from_secs(30),
        }
    }

    /// Kills the command after `timeout` and answers with an error.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs the command for a property set (see the [module docs](self)). The future borrows
    /// nothing: a handler returns it as it is, or awaits it in a task.
    pub fn property_set(&self, set: &PropertySet) -> impl Future<Output = ExecOutcome> + Send + use<> {
        let env = vec![
            ("ALIOT_TOPIC", set.topic().to_owned()),
            ("ALIOT_METHOD", "thing.service.property.set".to_owned()),
            ("ALIOT_MESSAGE_ID", set.id()),
        ];
        self.owned(set.request().to_vec(), env)
    }

    /// Runs the command for a service call, asynchronous or over RRPC (see the
    /// [module docs](self)).
    pub fn service_call(&self, call: &ServiceCall) -> impl Future<Output = ExecOutcome> + Send + use<> {
        let mut env = vec![
            ("ALIOT_TOPIC", call.topic().to_owned()),
            ("ALIOT_METHOD", call.method()),
            ("ALIOT_MESSAGE_ID", call.id()),
        ];
        if let Some(rrpc) = call.via().message_id() {
            env.push(("ALIOT_RRPC_ID", rrpc.to_owned()));
        }
        self.owned(call.request().to_vec(), env)
    }

    /// Runs the command for a raw or custom-topic RRPC request (see the [module docs](self)).
    pub fn rrpc(&self, request: &RrpcRequest) -> impl Future<Output = ExecOutcome> + Send + use<> {
        let id = request.message_id().to_owned();
        let env = vec![
            ("ALIOT_TOPIC", request.topic().to_owned()),
            ("ALIOT_MESSAGE_ID", id.clone()),
            ("ALIOT_RRPC_ID", id),
        ];
        self.owned(request.payload().to_vec(), env)
    }

    /// Runs the command for a plain message (see the [module docs](self)).
    pub fn message(&self, message: &Message) -> impl Future<Output = ExecOutcome> + Send + use<> {
        let env = vec![("ALIOT_TOPIC", message.topic.clone())];
        self.owned(message.payload.to_vec(), env)
    }

    /// Runs the command once with `input` on stdin and `env` added to its environment, and
    /// collects what it did. Never fails: a command that cannot start, fails or times out is an
    /// unsuccessful [`ExecOutcome`] saying so.
    pub async fn run(&self, input: &[u8], env: &[(&str, String)]) -> ExecOutcome {
        let (command, timeout) = (&*self.command, self.timeout);
        let mut child = match self.process(env).spawn() {
            Ok(c) => c,
            Err(e) => return ExecOutcome::failed(format!("cannot run {command:?}: {e}")),
        };
        if let Some(mut stdin) = child.stdin.take() {
            let input = input.to_vec();
            // Written from its own task: a command that does not read stdin must not block us.
            tokio::spawn(async move {
                let _ = stdin.write_all(&input).await;
            });
        }
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => ExecOutcome {
                success: out.status.success(),
                status: out.status.to_string(),
                stdout: out.stdout,
                stderr_tail: tail(&String::from_utf8_lossy(&out.stderr), STDERR_TAIL),
            },
            Ok(Err(e)) => ExecOutcome::failed(format!("{command:?} failed: {e}")),
            // Dropping the child kills it (`kill_on_drop`).
            Err(_) => ExecOutcome::failed(format!("{command:?} did not finish within {timeout:?}")),
        }
    }

    /// [`Exec::run`] on owned data, as a `'static` future for a handler to return.
    fn owned(
        &self,
        input: Vec<u8>,
        env: Vec<(&'static str, String)>,
    ) -> impl Future<Output = ExecOutcome> + Send + use<> {
        let this = self.clone();
        async move { this.run(&input, &env).await }
    }

    /// The child process, not started yet: piped, its environment set, killed when dropped.
    fn process(&self, env: &[(&str, String)]) -> tokio::process::Command {
        #[cfg(unix)]
        let mut cmd = {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c").arg(&*self.command);
            c
        };
        #[cfg(not(unix))]
        let mut cmd = {
            let mut c = tokio::process::Command::new("cmd");
            c.arg("/C").arg(&*self.command);
            c
        };
        cmd.env_remove(SECRET_VAR)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }
}

/// What a command run for a request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    success: bool,
    status: String,
    stdout: Vec<u8>,
    stderr_tail: String,
}

impl ExecOutcome {
    /// A command that could not run, or did not finish: `why` is its status and its stderr.
    fn failed(why: String) -> Self {
        Self {
            success: false,
            stderr_tail: why.clone(),
            status: why,
            stdout: Vec::new(),
        }
    }

    /// Whether the command ran and exited with status 0.
    pub fn success(&self) -> bool {
        self.success
    }

    /// Its exit status (`exit status: 3`), or why it did not run or finish.
    pub fn status(&self) -> &str {
        &self.status
    }

    /// What it wrote on stdout.
    pub fn stdout(&self) -> &[u8] {
        &self.stdout
    }

    /// The end of what it wrote on stderr (400 characters at most), trimmed; for a command that
    /// did not run or finish, why.
    pub fn stderr_tail(&self) -> &str {
        &self.stderr_tail
    }

    /// The answer to a property set or service call: on success, stdout as the reply data
    /// (JSON as it is, other text as a JSON string, nothing as `{}`); otherwise code 500 with
    /// the stderr tail (or the exit status) as the message.
    ///
    /// # Errors
    /// The error answer ([`ReplyError`], code 500) of a command that failed.
    pub fn alink_reply(&self) -> Result<Value, ReplyError> {
        if self.success {
            let text = String::from_utf8_lossy(&self.stdout);
            let text = text.trim();
            Ok(if text.is_empty() {
                json!({})
            } else {
                serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
            })
        } else {
            let why = if self.stderr_tail.is_empty() {
                &self.status
            } else {
                &self.stderr_tail
            };
            Err(ReplyError::new(code::SYSTEM_ERROR, why.clone()))
        }
    }

    /// The answer to a raw RRPC request: stdout as it is on success, else the stderr tail.
    pub fn rrpc_reply(&self) -> Vec<u8> {
        if self.success {
            self.stdout.clone()
        } else {
            self.stderr_tail.clone().into_bytes()
        }
    }
}

/// The last `n` characters of `text`, trimmed.
fn tail(text: &str, n: usize) -> String {
    let text = text.trim();
    let skip = text.chars().count().saturating_sub(n);
    text.chars().skip(skip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(stdout: &str) -> ExecOutcome {
        ExecOutcome {
            success: true,
            status: "exit status: 0".into(),
            stdout: stdout.into(),
            stderr_tail: String::new(),
        }
    }

    #[test]
    fn the_command_output_becomes_the_answer() {
        assert_eq!(ok("").alink_reply(), Ok(json!({})));
        assert_eq!(ok("{\"a\":1}\n").alink_reply(), Ok(json!({"a": 1})));
        assert_eq!(ok("done\n").alink_reply(), Ok(json!("done")));
        assert_eq!(ok("raw\n").rrpc_reply(), b"raw\n");
        let failed = ExecOutcome {
            success: false,
            status: "exit status: 3".into(),
            stdout: b"ignored".to_vec(),
            stderr_tail: "boom".into(),
        };
        assert_eq!(failed.alink_reply(), Err(ReplyError::new(500, "boom")));
        assert_eq!(failed.rrpc_reply(), b"boom");
        let silent = ExecOutcome {
            stderr_tail: String::new(),
            ..failed
        };
        assert_eq!(silent.alink_reply(), Err(ReplyError::new(500, "exit status: 3")));
        assert_eq!(tail("  abcdef \n", 3), "def");
        assert_eq!(tail("é€x", 5), "é€x");
    }

    #[test]
    fn the_command_never_sees_the_device_secret() {
        let cmd = Exec::shell("true").process(&[("ALIOT_TOPIC", "/t".into())]);
        let envs: Vec<_> = cmd.as_std().get_envs().collect();
        assert!(envs.contains(&(SECRET_VAR.as_ref(), None)), "{envs:?}");
        assert!(
            envs.contains(&("ALIOT_TOPIC".as_ref(), Some("/t".as_ref()))),
            "{envs:?}"
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_command_reads_the_input_on_stdin_and_the_ids_in_its_environment() {
        let exec = Exec::shell(r#"printf '%s %s' "$ALIOT_TOPIC" "$(cat)""#);
        let outcome = exec.run(b"hello", &[("ALIOT_TOPIC", "/t".into())]).await;
        assert!(outcome.success(), "{outcome:?}");
        assert_eq!(outcome.stdout(), b"/t hello");
        assert_eq!(outcome.alink_reply(), Ok(json!("/t hello")));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_failing_command_answers_with_the_end_of_its_stderr() {
        let exec = Exec::shell("echo first >&2; echo boom >&2; exit 3");
        let outcome = exec.run(b"", &[]).await;
        assert!(!outcome.success());
        assert_eq!(outcome.status(), "exit status: 3");
        let e = outcome.alink_reply().expect_err("failed");
        assert_eq!(e.code, 500);
        assert!(e.message.ends_with("boom"), "{e}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_command_that_does_not_finish_in_time_is_killed() {
        let exec = Exec::shell("sleep 10").timeout(Duration::from_millis(100));
        let started = std::time::Instant::now();
        let outcome = exec.run(b"", &[]).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!outcome.success());
        assert!(outcome.status().contains("did not finish within"), "{outcome:?}");
    }
}
