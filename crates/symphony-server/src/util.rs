//! Small helpers several modules share: clocks, random ids, hex, durations, locks.

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

/// The longest duration Symphony accepts anywhere (keep-alives, timeouts, TTLs): far beyond
/// any real use, and far enough below the clocks' limits that `Instant + d` and
/// `SystemTime + d` cannot overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("'{0}' is not a duration (e.g. 30s, 5m, 1h)")]
    Invalid(String),
    #[error("'{0}' is too long: at most 100 years")]
    TooLong(String),
}

/// A duration as Ollama and Go write them: `30s`, `5m`, `1h30m`, `250ms`, or plain seconds.
/// Negative, infinite and NaN values are not durations; beyond [`MAX_DURATION`] is refused.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let text = s.trim();
    let secs = text
        .parse::<f64>()
        .ok()
        .or_else(|| go_duration_seconds(text))
        .ok_or_else(|| DurationError::Invalid(s.to_string()))?;
    seconds(secs).map_err(|e| match e {
        DurationError::TooLong(_) => DurationError::TooLong(s.to_string()),
        DurationError::Invalid(_) => DurationError::Invalid(s.to_string()),
    })
}

/// The seconds of a Go-style duration (`1h30m`, `250ms`); `None` when it is not one.
fn go_duration_seconds(text: &str) -> Option<f64> {
    let mut total = 0f64;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
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
    (number.is_empty() && !text.is_empty()).then_some(total)
}

/// Seconds as a duration, within [`MAX_DURATION`]: never panics, whatever the number.
pub fn seconds(secs: f64) -> Result<Duration, DurationError> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(DurationError::Invalid(secs.to_string()));
    }
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(DurationError::TooLong(secs.to_string()));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Locks a mutex, recovering it if a thread panicked while holding it: the counters and
/// maps behind the server's mutexes stay consistent between statements, and one panic must
/// not turn every later request into a dropped connection.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `work` on a blocking thread (file, SQLite and CPU work kept off the async runtime).
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, crate::ApiError> + Send + 'static,
) -> Result<T, crate::ApiError> {
    // The work's spans and log lines stay inside the request's.
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work)).await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn a_lock_poisoned_by_a_panic_is_recovered() {
        let m = std::sync::Arc::new(std::sync::Mutex::new(1));
        let holder = m.clone();
        let _ = std::thread::spawn(move || {
            let _guard = holder.lock().unwrap();
            panic!("a panic while holding the lock");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }

    #[test]
    fn hostile_durations_are_refused_not_panics() {
        for s in [
            "1e300",
            "inf",
            "-inf",
            "NaN",
            "1.8e19",
            "18446744073709551616",
            "1e300h",
        ] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
        assert!(matches!(
            parse_duration("1e300"),
            Err(DurationError::TooLong(_))
        ));
        assert!(seconds(f64::INFINITY).is_err());
        assert!(seconds(1.8e19).is_err());
        assert_eq!(seconds(MAX_DURATION.as_secs_f64()), Ok(MAX_DURATION));
    }
}
