//! Retry timing shared by every sink: exponential backoff with full jitter.

use std::time::Duration;

/// First retry waits up to this long.
pub const BASE: Duration = Duration::from_millis(100);
/// No wait is longer than this.
pub const CAP: Duration = Duration::from_secs(30);

/// Full jitter (AWS architecture blog, "Exponential Backoff and Jitter"): a uniform draw in
/// [0, min(CAP, BASE · 2^(attempt−1))]. `unit` is a uniform random number in [0, 1).
pub fn backoff(attempt: u32, unit: f64) -> Duration {
    backoff_capped(attempt, unit, CAP)
}

/// As [`backoff`], with the ceiling capped at `cap` instead of [`CAP`].
pub fn backoff_capped(attempt: u32, unit: f64, cap: Duration) -> Duration {
    let ceiling = BASE
        .saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1).min(20))
                .unwrap_or(u32::MAX),
        )
        .min(cap);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// The wait before retry `attempt`: the server's `Retry-After` when it asked for one, but never
/// less than the jittered [`backoff`] (so that many clients told the same date do not return
/// in step).
pub fn wait(attempt: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
    backoff(attempt, unit).max(retry_after.unwrap_or(Duration::ZERO))
}

/// The wait a 429 or 503 answer asks for in its `Retry-After` header (seconds or an HTTP-date),
/// capped at [`super::influx::MAX_RETRY_AFTER`]; None for other answers or without one.
pub fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    match response.status().as_u16() {
        429 | 503 => response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| super::influx::parse_retry_after(v, std::time::SystemTime::now())),
        _ => None,
    }
}

/// Reads at most about `max` bytes of an answer's body (its message, and the connection back
/// to the pool); the rest is dropped with the connection.
pub async fn read_body(response: &mut reqwest::Response, max: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < max {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_then_caps() {
        assert_eq!(backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(2, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(4, 1.0), Duration::from_millis(800));
        assert_eq!(backoff(9, 1.0), Duration::from_millis(25_600));
        assert_eq!(backoff(10, 1.0), CAP);
        assert_eq!(backoff(u32::MAX, 1.0), CAP);
        let five_min = Duration::from_secs(300);
        assert_eq!(
            backoff_capped(13, 1.0, five_min),
            Duration::from_millis(409_600).min(five_min)
        );
        assert_eq!(
            backoff_capped(12, 1.0, five_min),
            Duration::from_millis(204_800)
        );
    }

    #[test]
    fn the_servers_retry_after_is_a_floor_under_the_backoff() {
        assert_eq!(wait(1, 1.0, None), Duration::from_millis(100));
        assert_eq!(
            wait(1, 0.5, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            wait(10, 1.0, Some(Duration::from_secs(2))),
            CAP,
            "a longer backoff wins"
        );
        assert_eq!(wait(3, 0.0, Some(Duration::ZERO)), Duration::ZERO);
    }

    #[test]
    fn jitter_spans_zero_to_ceiling() {
        assert_eq!(backoff(3, 0.0), Duration::ZERO);
        assert_eq!(backoff(3, 0.5), Duration::from_millis(200));
    }
}
