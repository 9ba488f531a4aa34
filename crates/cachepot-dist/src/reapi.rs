//! A cache backend on a REAPI engine's Action Cache and CAS.
//!
//! | cachepot | REAPI |
//! |---|---|
//! | a storage key (`e2-…`, `m2-…`) | an action digest: SHA-256 of `cachepot-store/1 <key prefix><key>` (no such action is ever run) |
//! | the value stored under it | one CAS blob, named in the action's `ActionResult` as the output file `value` |
//! | a removed value | an `ActionResult` without outputs (REAPI cannot delete) |
//!
//! Blobs up to the server's `max_batch_total_size_bytes` (less a margin
//! for the message) go in one `BatchUpdateBlobs`/`BatchReadBlobs` call,
//! larger ones through ByteStream in 1 MiB pieces. The blob is uploaded
//! before the `ActionResult` that names it, as engines check. Every call
//! has the configured timeout; the [`Storage`] trait is blocking, so the
//! backend owns a small tokio runtime and waits on it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream as bs;
use cachepot_storage::{Storage, StorageError, StorageInfo, StorageKey};
use sha2::{Digest as _, Sha256};
use tonic::metadata::{Ascii, MetadataKey, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::compress::Compression;

/// The backend's name in statistics and errors.
pub(crate) const KIND: &str = "reapi";

/// The output file that holds a stored value.
const VALUE_FILE: &str = "value";

/// What an action digest is made from, before the key.
const ACTION_PREFIX: &str = "cachepot-store/1 ";

/// ByteStream pieces.
pub(crate) const CHUNK: usize = 1024 * 1024;

/// Room for a batch message's framing, under the server's batch limit.
const BATCH_MARGIN: u64 = 64 * 1024;

/// The batch limit assumed when the server does not say (REAPI's own
/// advice: gRPC's default message size).
const DEFAULT_BATCH_LIMIT: u64 = 4 * 1024 * 1024;

/// Largest message accepted from the server.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Where and how to reach the engine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReapiSettings {
    /// `grpc://host:port` (plain) as given by the user.
    pub endpoint: String,
    /// The instance name (often empty).
    pub instance: String,
    /// Goes into every action digest: caches of several setups on one
    /// engine stay apart.
    pub key_prefix: String,
    /// `name=value` pairs sent with every call (an API key, a token).
    pub headers: Vec<(String, String)>,
    /// Platform properties of executed actions (a container image, a
    /// worker pool).
    pub platform: Vec<(String, String)>,
    /// A CA certificate (PEM) trusted for `grpcs://`, besides the
    /// system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// Read but never write (the daemon wraps the backend in
    /// `ReadOnly`).
    pub read_only: bool,
}

/// Why the backend could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ReapiError {
    /// The endpoint is not one this client can reach.
    #[error("REAPI endpoint {0}")]
    Endpoint(String),
    /// A header is not valid gRPC metadata.
    #[error("REAPI header {0}")]
    Header(String),
    /// TLS could not be set up.
    #[error("REAPI TLS: {0}")]
    Tls(String),
    /// The runtime could not start.
    #[error("starting the REAPI client's runtime: {0}")]
    Runtime(std::io::Error),
}

/// What the server's capabilities tell the client.
#[derive(Clone, Copy, Debug)]
struct Caps {
    batch_limit: u64,
    compression: Compression,
}

/// The headers sent with every call.
#[derive(Clone)]
pub(crate) struct Headers(Arc<Vec<(MetadataKey<Ascii>, MetadataValue<Ascii>)>>);

impl Interceptor for Headers {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        for (k, v) in self.0.iter() {
            req.metadata_mut().insert(k.clone(), v.clone());
        }
        Ok(req)
    }
}

/// The channel every client calls through, with the headers added.
pub(crate) type Service = tonic::service::interceptor::InterceptedService<Channel, Headers>;

/// A REAPI engine as a [`Storage`] backend.
pub struct Reapi {
    pub(crate) settings: ReapiSettings,
    channel: Channel,
    headers: Headers,
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) timeout: Duration,
    /// The largest blob sent or read in one batch call, asked once.
    /// What the server's capabilities say, asked once.
    caps: OnceLock<Caps>,
}

/// A digest in REAPI's form.
pub(crate) fn digest_of(bytes: &[u8]) -> re::Digest {
    re::Digest {
        hash: format!("{:x}", Sha256::digest(bytes)),
        size_bytes: bytes.len() as i64,
    }
}

impl Reapi {
    /// Connects lazily: no call is made until the first use.
    pub fn new(settings: ReapiSettings, timeout: Duration) -> Result<Reapi, ReapiError> {
        Reapi::connect(settings, timeout, true)
    }

    /// Like [`Reapi::new`]; `call_limit`: whether the channel itself cuts
    /// every call at `timeout` (not for executing actions, whose calls
    /// last as long as a compile: those are timed one by one).
    pub(crate) fn connect(
        settings: ReapiSettings,
        timeout: Duration,
        call_limit: bool,
    ) -> Result<Reapi, ReapiError> {
        let (uri, tls) = match settings.endpoint.split_once("://") {
            Some(("grpc" | "http", rest)) => (format!("http://{rest}"), None),
            Some(("grpcs" | "https", rest)) => {
                let mut tls = ClientTlsConfig::new().with_native_roots();
                if let Some(ca) = &settings.ca_file {
                    let pem = std::fs::read(ca).map_err(|e| {
                        ReapiError::Tls(format!("reading the CA file {}: {e}", ca.display()))
                    })?;
                    tls = tls.ca_certificate(Certificate::from_pem(pem));
                }
                (format!("https://{rest}"), Some(tls))
            }
            _ => {
                return Err(ReapiError::Endpoint(format!(
                    "{}: expected grpc://HOST:PORT or grpcs://HOST:PORT",
                    settings.endpoint
                )))
            }
        };
        let headers = settings
            .headers
            .iter()
            .map(|(k, v)| {
                let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                    .map_err(|_| ReapiError::Header(format!("{k:?} is not a header name")))?;
                let value = MetadataValue::try_from(v.as_str())
                    .map_err(|_| ReapiError::Header(format!("the value of {k} is not valid")))?;
                Ok((key, value))
            })
            .collect::<Result<Vec<_>, ReapiError>>()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("reapi")
            .enable_all()
            .build()
            .map_err(ReapiError::Runtime)?;
        let mut endpoint = Endpoint::from_shared(uri)
            .map_err(|e| ReapiError::Endpoint(format!("{}: {e}", settings.endpoint)))?
            .connect_timeout(timeout);
        if call_limit {
            endpoint = endpoint.timeout(timeout);
        }
        if let Some(tls) = tls {
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| ReapiError::Tls(e.to_string()))?;
        }
        let channel = {
            let _guard = rt.enter();
            endpoint.connect_lazy()
        };
        Ok(Reapi {
            settings,
            channel,
            headers: Headers(Arc::new(headers)),
            rt,
            timeout,
            caps: OnceLock::new(),
        })
    }

    pub(crate) fn failed(op: &'static str, status: &tonic::Status) -> StorageError {
        StorageError::Remote {
            backend: KIND,
            op,
            message: format!("{:?}: {}", status.code(), status.message()),
        }
    }

    fn timed_out(&self, op: &'static str) -> StorageError {
        StorageError::Remote {
            backend: KIND,
            op,
            message: format!("no answer within {} s", self.timeout.as_secs()),
        }
    }

    /// Runs a call under the timeout.
    fn block<T>(
        &self,
        op: &'static str,
        call: impl std::future::Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        self.rt.block_on(async {
            match tokio::time::timeout(self.timeout, call).await {
                Ok(r) => r,
                Err(_) => Err(self.timed_out(op)),
            }
        })
    }

    /// Runs a call of `--check-remote` under the timeout.
    pub(crate) fn block_call<T>(
        &self,
        call: &'static str,
        fut: impl std::future::Future<Output = Result<T, crate::CallError>>,
    ) -> Result<T, crate::CallError> {
        self.rt.block_on(async {
            match tokio::time::timeout(self.timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(crate::CallError {
                    call,
                    code: "DeadlineExceeded".into(),
                    message: format!("no answer within {} s", self.timeout.as_secs()),
                    hint: Some("the engine did not answer in time: is it up, and does it have a worker for this action's platform?"),
                }),
            }
        })
    }

    pub(crate) fn capabilities_client(
        &self,
    ) -> re::capabilities_client::CapabilitiesClient<Service> {
        re::capabilities_client::CapabilitiesClient::with_interceptor(
            self.channel.clone(),
            self.headers.clone(),
        )
    }

    pub(crate) fn execution_client(&self) -> re::execution_client::ExecutionClient<Service> {
        re::execution_client::ExecutionClient::with_interceptor(
            self.channel.clone(),
            self.headers.clone(),
        )
        .max_decoding_message_size(MAX_MESSAGE)
    }

    fn action_cache(&self) -> re::action_cache_client::ActionCacheClient<Service> {
        re::action_cache_client::ActionCacheClient::with_interceptor(
            self.channel.clone(),
            self.headers.clone(),
        )
        .max_decoding_message_size(MAX_MESSAGE)
    }

    pub(crate) fn cas(
        &self,
    ) -> re::content_addressable_storage_client::ContentAddressableStorageClient<Service> {
        re::content_addressable_storage_client::ContentAddressableStorageClient::with_interceptor(
            self.channel.clone(),
            self.headers.clone(),
        )
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
    }

    pub(crate) fn byte_stream(&self) -> bs::byte_stream_client::ByteStreamClient<Service> {
        bs::byte_stream_client::ByteStreamClient::with_interceptor(
            self.channel.clone(),
            self.headers.clone(),
        )
        .max_decoding_message_size(MAX_MESSAGE)
    }

    /// The action digest that stands for a storage key.
    fn action_digest(&self, key: &StorageKey) -> re::Digest {
        let text = format!(
            "{ACTION_PREFIX}{}{}",
            self.settings.key_prefix,
            key.as_str()
        );
        digest_of(text.as_bytes())
    }

    /// The largest blob moved in one batch call: the server's limit (asked
    /// once) less a margin for the message.
    pub(crate) async fn batch_limit(&self) -> u64 {
        self.caps().await.batch_limit
    }

    /// What the server compresses (asked once).
    pub(crate) async fn compression(&self) -> Compression {
        self.caps().await.compression
    }

    async fn caps(&self) -> Caps {
        if let Some(c) = self.caps.get() {
            return *c;
        }
        let asked = self
            .capabilities_client()
            .get_capabilities(re::GetCapabilitiesRequest {
                instance_name: self.settings.instance.clone(),
            })
            .await;
        let cache = match asked {
            Ok(caps) => caps.into_inner().cache_capabilities.unwrap_or_default(),
            // Not remembered: the next call asks again.
            Err(_) => {
                return Caps {
                    batch_limit: DEFAULT_BATCH_LIMIT.saturating_sub(BATCH_MARGIN),
                    compression: Compression::default(),
                }
            }
        };
        let limit = Some(cache.max_batch_total_size_bytes)
            .filter(|l| *l > 0)
            .map_or(DEFAULT_BATCH_LIMIT, |l| l as u64);
        let caps = Caps {
            batch_limit: limit.min(DEFAULT_BATCH_LIMIT).saturating_sub(BATCH_MARGIN),
            compression: Compression::of(&cache),
        };
        *self.caps.get_or_init(|| caps)
    }

    /// The ActionResult stored for an action, if any.
    async fn action_result(
        &self,
        key: &StorageKey,
    ) -> Result<Option<re::ActionResult>, StorageError> {
        let req = re::GetActionResultRequest {
            instance_name: self.settings.instance.clone(),
            action_digest: Some(self.action_digest(key)),
            ..Default::default()
        };
        match self.action_cache().get_action_result(req).await {
            Ok(r) => Ok(Some(r.into_inner())),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(Self::failed("get", &s)),
        }
    }

    async fn update(&self, key: &StorageKey, result: re::ActionResult) -> Result<(), StorageError> {
        self.action_cache()
            .update_action_result(re::UpdateActionResultRequest {
                instance_name: self.settings.instance.clone(),
                action_digest: Some(self.action_digest(key)),
                action_result: Some(result),
                ..Default::default()
            })
            .await
            .map_err(|s| Self::failed("put", &s))?;
        Ok(())
    }
}

impl Storage for Reapi {
    fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, StorageError> {
        self.block("get", async {
            let Some(result) = self.action_result(key).await? else {
                return Ok(None);
            };
            let Some(digest) = result
                .output_files
                .iter()
                .find(|f| f.path == VALUE_FILE)
                .and_then(|f| f.digest.clone())
            else {
                return Ok(None);
            };
            self.read_blob(&digest).await
        })
    }

    fn put(&self, key: &StorageKey, value: &[u8]) -> Result<(), StorageError> {
        let digest = digest_of(value);
        self.block("put", async {
            self.write_blob(&digest, value).await?;
            self.update(
                key,
                re::ActionResult {
                    output_files: vec![re::OutputFile {
                        path: VALUE_FILE.into(),
                        digest: Some(digest.clone()),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )
            .await
        })
    }

    fn remove(&self, key: &StorageKey) -> Result<(), StorageError> {
        // No delete in REAPI: a result without the value reads as none.
        self.block("remove", self.update(key, re::ActionResult::default()))
    }

    fn describe(&self) -> StorageInfo {
        let instance = if self.settings.instance.is_empty() {
            String::new()
        } else {
            format!(" instance {}", self.settings.instance)
        };
        StorageInfo {
            kind: KIND.into(),
            location: format!("{}{instance}", self.settings.endpoint),
            size_bytes: 0,
            max_size_bytes: 0,
            entries: 0,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_distinct_actions_and_bad_headers_are_refused() {
        let settings = |prefix: &str| ReapiSettings {
            endpoint: "grpc://127.0.0.1:1".into(),
            instance: String::new(),
            key_prefix: prefix.into(),
            headers: vec![("Bad Header".into(), "x".into())],
            platform: Vec::new(),
            ca_file: None,
            read_only: false,
        };
        assert!(matches!(
            Reapi::new(settings(""), Duration::from_secs(1)),
            Err(ReapiError::Header(_))
        ));
        let mut ok = settings("");
        ok.headers.clear();
        let a = Reapi::new(ok.clone(), Duration::from_secs(1)).unwrap();
        ok.key_prefix = "p-".into();
        let b = Reapi::new(ok, Duration::from_secs(1)).unwrap();
        let key = StorageKey::new("e2-abc").unwrap();
        assert_ne!(a.action_digest(&key), b.action_digest(&key));
        assert_eq!(a.action_digest(&key).hash.len(), 64);
    }
}
