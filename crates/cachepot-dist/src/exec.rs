//! Asking a REAPI engine what it offers, and executing one action on it
//! end to end (`cachepot --check-remote`). Remote execution of missed
//! compiles builds on this.

use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use prost::Message;

use crate::reapi::{digest_of, Reapi};
use crate::ExecError;

/// A failed call: gRPC's status code (as its name) and message, with the
/// likely fix when one is known.
#[derive(Debug, thiserror::Error)]
#[error("{call}: {code}: {message}")]
pub struct CallError {
    /// The call.
    pub call: &'static str,
    /// The gRPC status code, such as `Unavailable`.
    pub code: String,
    /// The engine's message.
    pub message: String,
    /// What usually fixes it.
    pub hint: Option<&'static str>,
}

impl CallError {
    fn new(call: &'static str, status: &tonic::Status) -> CallError {
        let message = status.message().to_ascii_lowercase();
        let hint = match status.code() {
            tonic::Code::Unavailable if message.contains("certificate") => Some(
                "the engine's certificate is not trusted: set CACHEPOT_REAPI_CA_FILE to its CA certificate (PEM)",
            ),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                Some("the engine cannot be reached: check CACHEPOT_REAPI_ENDPOINT (grpc://HOST:PORT) and that it listens there")
            }
            tonic::Code::InvalidArgument | tonic::Code::NotFound if message.contains("instance") =>
            {
                Some("the engine does not know this instance: check CACHEPOT_REAPI_INSTANCE")
            }
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => Some(
                "the engine refused the call: set the header it expects in CACHEPOT_REAPI_HEADERS (BuildBuddy: x-buildbuddy-api-key=KEY; others: authorization=Bearer TOKEN)",
            ),
            // A TLS port spoken to in plain text drops the connection; the
            // client sees a transport error or, as often, a cancelled call.
            tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::Cancelled
                if message.contains("transport error")
                    || message.contains("tls")
                    || message.contains("canceled")
                    || message.contains("cancelled") =>
            {
                Some("the connection broke at once: does the engine expect TLS? Use grpcs://HOST:PORT")
            }
            _ => None,
        };
        CallError {
            call,
            code: format!("{:?}", status.code()),
            message: status.message().to_string(),
            hint,
        }
    }

    fn other(call: &'static str, message: impl Into<String>) -> CallError {
        CallError {
            call,
            code: "Failed".into(),
            message: message.into(),
            hint: None,
        }
    }
}

/// What an engine says it offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// The digest functions of its CAS (`SHA256`, …).
    pub digest_functions: Vec<String>,
    /// The largest batch call it takes, in bytes (0: unsaid).
    pub max_batch_total_size_bytes: i64,
    /// Compressors of its CAS (`ZSTD`, …), for ByteStream.
    pub compressors: Vec<String>,
    /// Whether it executes actions.
    pub execution: bool,
    /// The API versions it speaks, `low..high`.
    pub api: String,
}

/// The outcome of the check's action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRun {
    /// Its exit code.
    pub exit_code: i32,
    /// What it printed.
    pub stdout: String,
    /// The worker that ran it, as the engine reports it.
    pub worker: String,
    /// Time in the queue and executing, from the execution metadata.
    pub queued: Option<Duration>,
    pub executing: Option<Duration>,
}

/// Platform properties as an action carries them: sorted, none at all
/// when there are none.
pub(crate) fn platform_of(props: &[(String, String)]) -> Option<re::Platform> {
    let mut properties: Vec<re::platform::Property> = props
        .iter()
        .map(|(name, value)| re::platform::Property {
            name: name.clone(),
            value: value.clone(),
        })
        .collect();
    properties.sort_by(|a, b| (&a.name, &a.value).cmp(&(&b.name, &b.value)));
    (!properties.is_empty()).then_some(re::Platform { properties })
}

/// The `ExecuteResponse` of an operation that is done, when the engine
/// ran the action (its status OK).
pub(crate) fn finished(
    op: bazel_remote_apis::google::longrunning::Operation,
) -> Result<re::ExecuteResponse, ExecError> {
    use bazel_remote_apis::google::longrunning::operation::Result as Outcome;
    let response = match op.result {
        Some(Outcome::Response(any)) => re::ExecuteResponse::decode(any.value.as_slice())
            .map_err(|e| ExecError::Result(format!("undecodable ExecuteResponse: {e}")))?,
        Some(Outcome::Error(st)) => {
            return Err(ExecError::Call {
                call: "Execute",
                code: tonic::Code::from_i32(st.code),
                message: st.message,
            })
        }
        None => {
            return Err(ExecError::Result(
                "the operation ended without a result".into(),
            ))
        }
    };
    match response.status.as_ref().filter(|s| s.code != 0) {
        Some(st) => Err(ExecError::Call {
            call: "Execute",
            code: tonic::Code::from_i32(st.code),
            message: st.message.clone(),
        }),
        None => Ok(response),
    }
}

/// What the check's action prints.
pub const CHECK_OUTPUT: &str = "cachepot remote check";

pub(crate) fn between(
    a: &Option<prost_types_ts::Timestamp>,
    b: &Option<prost_types_ts::Timestamp>,
) -> Option<Duration> {
    let (a, b) = (a.as_ref()?, b.as_ref()?);
    let nanos =
        |t: &prost_types_ts::Timestamp| i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    u64::try_from(nanos(b) - nanos(a))
        .ok()
        .map(Duration::from_nanos)
}

/// The protobuf timestamp type the generated code uses.
mod prost_types_ts {
    pub use bazel_remote_apis::google::protobuf::Timestamp;
}

impl Reapi {
    /// Asks the engine what it offers.
    pub fn capabilities(&self) -> Result<Capabilities, CallError> {
        self.block_call("GetCapabilities", async {
            let caps = self
                .capabilities_client()
                .get_capabilities(re::GetCapabilitiesRequest {
                    instance_name: self.settings.instance.clone(),
                })
                .await
                .map_err(|s| CallError::new("GetCapabilities", &s))?
                .into_inner();
            let cache = caps.cache_capabilities.unwrap_or_default();
            let name = |f: i32| {
                re::digest_function::Value::try_from(f)
                    .map(|v| v.as_str_name().to_string())
                    .unwrap_or_else(|_| f.to_string())
            };
            let compressor = |c: i32| {
                re::compressor::Value::try_from(c)
                    .map(|v| v.as_str_name().to_string())
                    .unwrap_or_else(|_| c.to_string())
            };
            let version = |v: Option<bazel_remote_apis::build::bazel::semver::SemVer>| {
                v.map(|v| format!("{}.{}", v.major, v.minor))
                    .unwrap_or_default()
            };
            Ok(Capabilities {
                digest_functions: cache.digest_functions.iter().map(|f| name(*f)).collect(),
                max_batch_total_size_bytes: cache.max_batch_total_size_bytes,
                compressors: cache
                    .supported_compressors
                    .iter()
                    .map(|c| compressor(*c))
                    .collect(),
                execution: caps.execution_capabilities.is_some_and(|e| e.exec_enabled),
                api: format!(
                    "{}..{}",
                    version(caps.low_api_version),
                    version(caps.high_api_version)
                ),
            })
        })
    }

    /// Executes `/bin/sh -c 'echo cachepot remote check'` on the engine,
    /// not cached, with `platform` as its platform properties.
    pub fn execute_check(&self, platform: &[(String, String)]) -> Result<CheckRun, CallError> {
        let command = re::Command {
            arguments: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("echo {CHECK_OUTPUT}"),
            ],
            ..Default::default()
        };
        let input_root = re::Directory::default();
        let (command_bytes, root_bytes) = (command.encode_to_vec(), input_root.encode_to_vec());
        let action = re::Action {
            command_digest: Some(digest_of(&command_bytes)),
            input_root_digest: Some(digest_of(&root_bytes)),
            do_not_cache: true,
            platform: platform_of(platform),
            ..Default::default()
        };
        let action_bytes = action.encode_to_vec();
        let action_digest = digest_of(&action_bytes);
        self.block_call("Execute", async {
            for (what, bytes) in [
                ("command", &command_bytes),
                ("input root", &root_bytes),
                ("action", &action_bytes),
            ] {
                self.write_blob(&digest_of(bytes), bytes)
                    .await
                    .map_err(|e| {
                        CallError::other("BatchUpdateBlobs", format!("uploading the {what}: {e}"))
                    })?;
            }
            let mut stream = self
                .execution_client()
                .execute(re::ExecuteRequest {
                    instance_name: self.settings.instance.clone(),
                    action_digest: Some(action_digest.clone()),
                    skip_cache_lookup: true,
                    ..Default::default()
                })
                .await
                .map_err(|s| CallError::new("Execute", &s))?
                .into_inner();
            let mut last = None;
            while let Some(op) = stream
                .message()
                .await
                .map_err(|s| CallError::new("Execute", &s))?
            {
                let done = op.done;
                last = Some(op);
                if done {
                    break;
                }
            }
            let op =
                last.ok_or_else(|| CallError::other("Execute", "the engine sent no operation"))?;
            let response = finished(op).map_err(|e| match e {
                ExecError::Call { message, .. } | ExecError::Result(message) => {
                    CallError::other("Execute", message)
                }
                other => CallError::other("Execute", other.to_string()),
            })?;
            let result = response
                .result
                .ok_or_else(|| CallError::other("Execute", "no ActionResult"))?;
            let stdout = if !result.stdout_raw.is_empty() {
                result.stdout_raw.clone()
            } else if let Some(d) = &result.stdout_digest {
                self.read_blob(d)
                    .await
                    .map_err(|e| CallError::other("BatchReadBlobs", e.to_string()))?
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            let meta = result.execution_metadata.clone().unwrap_or_default();
            Ok(CheckRun {
                exit_code: result.exit_code,
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                worker: meta.worker.clone(),
                queued: between(&meta.queued_timestamp, &meta.worker_start_timestamp),
                executing: between(
                    &meta.execution_start_timestamp,
                    &meta.execution_completed_timestamp,
                ),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_to_a_tls_port_is_named_however_it_ends() {
        for status in [
            tonic::Status::unknown("transport error"),
            tonic::Status::cancelled("operation was canceled"),
        ] {
            let e = CallError::new("GetCapabilities", &status);
            assert!(e.hint.is_some_and(|h| h.contains("grpcs://")), "{e:?}");
        }
        let other = CallError::new("Execute", &tonic::Status::cancelled("by the client"));
        assert!(other.hint.is_none(), "{other:?}");
    }
}
