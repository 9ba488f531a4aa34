//! Memcached's item size limit, asked of the server.
//!
//! Memcached refuses an item larger than its `-I` setting (1 MiB by
//! default; a build cache usually runs with `-I 64m`). The limit is read
//! from `stats settings` (`item_size_max`), once, at the first write.
//!
//! Larger entries are not split into several items: memcached's LRU evicts
//! items one by one, so a chunked entry could lose some chunks and keep
//! others, and a reader would need several round trips for every large
//! entry. A team that stores binaries raises `-I` instead.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Memcached's default item size limit (`-I`), assumed when the server
/// cannot be asked.
pub const DEFAULT_ITEM_SIZE_MAX: u64 = 1024 * 1024;

/// What an item holds besides its value, left free below `item_size_max`.
/// Measured with memcached 1.6.18 (default `-I` and `-I 64m`, text and
/// binary protocol): the largest value `set` accepts is `item_size_max`
/// minus 59 bytes minus the key's length, so 309 bytes with the longest
/// key (250 bytes). The rest is headroom for other versions' headers.
pub const ITEM_OVERHEAD: u64 = 1024;

/// The largest answer to `stats settings` read (a real one is ~2 KiB).
const MAX_ANSWER: usize = 64 * 1024;

/// Asks the server at `endpoint` (`tcp://host:port`, `host:port` or
/// `unix:///path`, as OpenDAL takes it) for its `item_size_max`.
pub(super) async fn item_size_max(endpoint: &str) -> Result<u64, String> {
    let answer = match endpoint.strip_prefix("unix://") {
        #[cfg(unix)]
        Some(path) => {
            let socket = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| format!("connecting to {path}: {e}"))?;
            ask(socket).await?
        }
        #[cfg(not(unix))]
        Some(_) => return Err("Unix sockets are not supported here".into()),
        None => {
            let addr = endpoint.strip_prefix("tcp://").unwrap_or(endpoint);
            let addr = addr.trim_end_matches('/');
            let addr = addr.rsplit_once('@').map_or(addr, |(_, host)| host);
            let socket = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connecting to {addr}: {e}"))?;
            ask(socket).await?
        }
    };
    parse_item_size_max(&answer)
}

/// Sends `stats settings` and reads the answer up to its `END` line.
async fn ask<S: AsyncRead + AsyncWrite + Unpin>(mut socket: S) -> Result<String, String> {
    socket
        .write_all(b"stats settings\r\n")
        .await
        .map_err(|e| format!("sending stats settings: {e}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = socket
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading the answer to stats settings: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection before answering stats settings".into());
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.ends_with(b"\r\n") {
            let last = answer[..answer.len() - 2]
                .rsplit(|&b| b == b'\n')
                .next()
                .unwrap_or_default();
            if last == b"END" || last.ends_with(b"ERROR") || last.starts_with(b"SERVER_ERROR") {
                break;
            }
        }
        if answer.len() > MAX_ANSWER {
            return Err("the answer to stats settings has no end".into());
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// `item_size_max` from an answer to `stats settings`.
fn parse_item_size_max(answer: &str) -> Result<u64, String> {
    let value = answer
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("STAT item_size_max "))
        .ok_or_else(|| {
            let first = answer.lines().next().unwrap_or_default();
            format!("stats settings gave no item_size_max (the answer began {first:?})")
        })?;
    match value.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("stats settings gave item_size_max {value:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_size_max_is_read_from_the_stats() {
        let answer = "STAT maxbytes 268435456\r\nSTAT maxconns 1024\r\nSTAT item_size_max 67108864\r\nSTAT slab_chunk_max 524288\r\nEND\r\n";
        assert_eq!(parse_item_size_max(answer), Ok(64 << 20));
    }

    #[test]
    fn answers_without_item_size_max_are_errors() {
        for answer in [
            "ERROR\r\n",
            "STAT maxbytes 1\r\nEND\r\n",
            "STAT item_size_max big\r\nEND\r\n",
            "STAT item_size_max 0\r\nEND\r\n",
        ] {
            assert!(parse_item_size_max(answer).is_err(), "{answer}");
        }
    }
}
