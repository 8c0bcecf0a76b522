//! Times as Ollama writes them: RFC 3339 in UTC with nanoseconds.

use std::time::Duration;

/// A manifest's import time as Ollama's `modified_at` (checked: a damaged manifest's
/// timestamp must not overflow the clock).
pub(super) fn imported(unix_secs: u64) -> String {
    rfc3339(
        std::time::UNIX_EPOCH
            .checked_add(Duration::from_secs(unix_secs))
            .unwrap_or(std::time::UNIX_EPOCH),
    )
}

/// RFC 3339 UTC time, as Ollama writes `created_at`.
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

pub(super) fn now() -> String {
    rfc3339(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        let t = |s| rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(t(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(t(951_782_400), "2000-02-29T00:00:00.000000000Z");
        assert_eq!(t(1_795_305_600), "2026-11-22T00:00:00.000000000Z");
    }
}
