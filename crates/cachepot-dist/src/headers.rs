//! `CACHEPOT_REAPI_HEADERS`: the metadata sent with every call.

/// Splits `CACHEPOT_REAPI_HEADERS`: `name=value` pairs separated by
/// commas or newlines.
pub fn parse_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("{p:?} is not name=value"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_name_value_pairs() {
        assert_eq!(
            parse_headers("x-buildbuddy-api-key=abc, authorization=Bearer t=1\n").unwrap(),
            [
                ("x-buildbuddy-api-key".to_string(), "abc".to_string()),
                ("authorization".to_string(), "Bearer t=1".to_string())
            ]
        );
        assert!(parse_headers("novalue").is_err());
        assert!(parse_headers(" , ").unwrap().is_empty());
    }
}
