//! Small helpers several modules share: clocks, random ids, hex, durations.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Current Unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Random bytes from the operating system, never all zero (an all-zero trace or span id is
/// invalid).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if getrandom::fill(&mut b).is_err() || b.iter().all(|&x| x == 0) {
        b[0] = 1;
    }
    b
}

/// A seed for requests that give none, so each differs.
pub fn random_seed() -> u64 {
    u64::from_le_bytes(random_bytes())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A duration as Ollama and Go write them: `30s`, `5m`, `1h30m`, `250ms`, or plain seconds.
/// `None` when it is not one.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return (secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = 0f64;
    let mut number = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                0.001
            }
            ('h', _) => 3600.0,
            ('m', _) => 60.0,
            ('s', _) => 1.0,
            _ => return None,
        };
        total += number.parse::<f64>().ok()? * unit;
        number.clear();
    }
    (number.is_empty() && !s.is_empty()).then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
    }
}

/// Runs `work` on a blocking thread (file, SQLite and CPU work kept off the async runtime).
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, crate::ApiError> + Send + 'static,
) -> Result<T, crate::ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| crate::ApiError::internal(format!("a blocking task stopped: {e}")))?
}
