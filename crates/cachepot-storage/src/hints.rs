//! What a storage backend's error most likely means, in words a user can
//! act on. Used by `--check-storage` and the warning a build gets.

/// Words in a backend's error, and what they most likely mean; the first
/// row that matches wins (Azure's 403 AuthenticationFailed is a credentials
/// problem, not a permissions one).
const HINTS: &[(&[&str], &str)] = &[
    (
        &["signaturedoesnotmatch", "invalidaccesskeyid", "invalidclienttokenid"],
        "the credentials are wrong: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the profile in AWS_PROFILE)",
    ),
    (
        &["authorizationheadermalformed", "permanentredirect", "wrong region", "incorrectendpoint"],
        "the bucket is in another region: set CACHEPOT_REGION to the bucket's region",
    ),
    (
        &["nosuchbucket", "containernotfound", "bucket does not exist", "the specified container does not exist"],
        "the bucket or container does not exist: create it, or fix its name (CACHEPOT_BUCKET, CACHEPOT_GCS_BUCKET, CACHEPOT_AZURE_BLOB_CONTAINER)",
    ),
    (
        &["wrongpass", "noauth", "invalid username-password", "authentication required", "authentication failed"],
        "Redis refused the login: check CACHEPOT_REDIS_USERNAME and CACHEPOT_REDIS_PASSWORD",
    ),
    (
        &["status: 401", "unauthorized", "authenticationfailed", "invalid authentication", "failed to authenticate"],
        "the server refused the credentials: check the user name, password, token or key",
    ),
    (
        &["accessdenied", "permissiondenied", "authorizationfailure", "status: 403", "forbidden"],
        "the credentials lack permission: they need read and write access to the bucket or container",
    ),
    (
        &["connection refused", "timed out", "dns error", "failed to lookup", "no route to host", "operation timeout"],
        "the server cannot be reached: check the endpoint and the network (CACHEPOT_ENDPOINT, CACHEPOT_REDIS_ENDPOINT, …)",
    ),
    (&["region is missing"], "no region: set CACHEPOT_REGION (or AWS_REGION)"),
    (
        &["failed to load signing credential", "no valid credential"],
        "no credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE (or CACHEPOT_S3_NO_CREDENTIALS=true for a public bucket)",
    ),
];

/// What a backend's error message most likely means, and what to fix.
pub fn hint(message: &str) -> Option<&'static str> {
    let m = message.to_ascii_lowercase();
    HINTS
        .iter()
        .find(|(needles, _)| needles.iter().any(|n| m.contains(n)))
        .map(|(_, hint)| *hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_likely_fix() {
        let cases = [
            (
                "S3Error { code: \"SignatureDoesNotMatch\" }",
                "credentials are wrong",
            ),
            ("S3Error { code: \"NoSuchBucket\" }", "does not exist"),
            (
                "S3Error { code: \"AuthorizationHeaderMalformed\" } region",
                "another region",
            ),
            ("S3Error { code: \"AccessDenied\" }", "lack permission"),
            (
                "response: Parts { status: 403 } AuthenticationFailed",
                "refused the credentials",
            ),
            (
                "I/O error, source: Connection refused (os error 111)",
                "cannot be reached",
            ),
            ("WRONGPASS invalid username-password pair", "Redis refused"),
            (
                "signing http request, source: failed to load signing credential",
                "no credentials found",
            ),
        ];
        for (message, expected) in cases {
            let h = hint(message).unwrap_or_default();
            assert!(h.contains(expected), "{message} -> {h}");
        }
        assert_eq!(hint("something else entirely"), None);
    }
}
