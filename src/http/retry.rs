//! When the next request of a client may leave: the rate limit (one slot per
//! interval, no bursts), the pause a 429 asks of every worker of the client,
//! the waits servers name (`Retry-After`, the rate-limit reset headers), the
//! backoff when they name none — and every wait cut short by SIGINT/SIGTERM.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A wait ended by a signal before the request (or its next try) was sent.
#[derive(Debug)]
pub(crate) struct Interrupted {
    /// An earlier try of this request may have reached the server and been
    /// applied (its answer was lost, or a gateway answered for it).
    pub may_have_landed: bool,
    pub message: String,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Interrupted {}

/// How often a wait looks for a signal.
const TICK: Duration = Duration::from_millis(50);

/// Sleep for `d`, or until a signal came; `Err(signal)` then.
pub(super) fn sleep(d: Duration) -> Result<(), i32> {
    let start = Instant::now();
    let end = start.checked_add(d).unwrap_or(start);
    loop {
        if let Some(signal) = crate::signals::interrupted() {
            return Err(signal);
        }
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(TICK));
    }
}

/// The turns of one client: the rate limit's next free slot and the pause a
/// 429 asked for, shared by every thread that sends through it.
#[derive(Debug)]
pub(super) struct Pacing {
    /// Requests per second; 0 means unlimited.
    rate: f64,
    /// The earliest instant the next request may start (rate limit, no burst).
    next_slot: Mutex<Instant>,
    /// No request starts before this instant: a server said to slow down.
    paused_until: Mutex<Option<Instant>>,
}

impl Pacing {
    pub(super) fn new(rate: f64) -> Self {
        Pacing {
            rate,
            next_slot: Mutex::new(Instant::now()),
            paused_until: Mutex::new(None),
        }
    }

    /// Hold every request of this client until `wait` from now (or later, if
    /// an earlier pause ends later).
    pub(super) fn pause_for(&self, wait: Duration) {
        let now = Instant::now();
        let until = now.checked_add(wait).unwrap_or(now);
        let mut paused = self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *paused = Some(paused.map_or(until, |p| p.max(until)));
    }

    /// Wait for this request's turn: after any pause, then in its rate-limit
    /// slot. `Err(signal)` when a signal ended the wait.
    pub(super) fn wait_turn(&self) -> Result<(), i32> {
        loop {
            let paused = *self
                .paused_until
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match paused {
                Some(until) if until > Instant::now() => sleep(until - Instant::now())?,
                _ => break,
            }
        }
        if self.rate <= 0.0 {
            return crate::signals::interrupted().map_or(Ok(()), Err);
        }
        // The config bounds the rate, so the interval is a finite duration.
        let interval = Duration::try_from_secs_f64(1.0 / self.rate).unwrap_or(Duration::MAX);
        let start = {
            let mut next = self
                .next_slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start.checked_add(interval).unwrap_or(start);
            start
        };
        sleep(start.saturating_duration_since(Instant::now()))
    }
}

/// Exponential backoff with full jitter: a random wait in [0, base·2^n],
/// never above `cap`.
pub(super) fn backoff(base: Duration, attempt: u32, cap: Duration) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    ceiling.mul_f64(fastrand::f64().max(0.05))
}

/// The wait a response names: `Retry-After` (seconds or an HTTP date), else
/// the reset headers rate-limited APIs send instead.
pub(super) fn wait_hint(
    header: impl Fn(&str) -> Option<String>,
    now: SystemTime,
) -> Option<Duration> {
    if let Some(wait) = header("retry-after").and_then(|v| parse_retry_after(&v, now)) {
        return Some(wait);
    }
    for name in ["x-rate-limit-reset", "x-ratelimit-reset"] {
        if let Some(wait) = header(name).and_then(|v| parse_reset(&v, now)) {
            return Some(wait);
        }
    }
    // The IETF draft's RateLimit-Reset: seconds from now.
    header("ratelimit-reset").and_then(|v| v.trim().parse::<u64>().ok().map(Duration::from_secs))
}

/// `Retry-After` as delta-seconds or an HTTP date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Epoch seconds above this are an instant, below it a number of seconds
/// from now (some APIs send `X-RateLimit-Reset: 30`): 2001-09-09.
const EPOCH_THRESHOLD: u64 = 1_000_000_000;

/// `X-Rate-Limit-Reset` (Okta) / `X-RateLimit-Reset` (GitHub): when the
/// window resets, in epoch seconds; a small number is seconds from now.
/// The instant is a whole second: the wait runs to its start, a little past.
fn parse_reset(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    // A fraction (`1700000002.5`) is rounded up to the next whole second.
    let secs: u64 = match value.split_once('.') {
        Some((whole, frac)) if frac.bytes().all(|b| b.is_ascii_digit()) => {
            whole.parse::<u64>().ok()?.checked_add(1)?
        }
        _ => value.parse().ok()?,
    };
    if secs < EPOCH_THRESHOLD {
        return Some(Duration::from_secs(secs));
    }
    let at = UNIX_EPOCH.checked_add(Duration::from_secs(secs))?;
    Some(
        at.duration_since(now)
            .map_or(Duration::ZERO, |d| d + Duration::from_millis(50)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(12));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(12))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(12));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn reset_headers_give_the_wait_when_retry_after_is_absent() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        // Okta: epoch seconds, 2 s ahead (from a quarter second past).
        assert_eq!(
            wait_hint(headers(&[("X-Rate-Limit-Reset", "1700000002")]), now),
            Some(Duration::from_millis(1800))
        );
        assert_eq!(
            wait_hint(headers(&[("X-RateLimit-Reset", "1700000010")]), now),
            Some(Duration::from_millis(9800))
        );
        // A small number is seconds from now; a past instant is no wait.
        assert_eq!(
            wait_hint(headers(&[("X-RateLimit-Reset", "30")]), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            wait_hint(headers(&[("X-Rate-Limit-Reset", "1600000000")]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            wait_hint(headers(&[("RateLimit-Reset", "4")]), now),
            Some(Duration::from_secs(4))
        );
        // Retry-After wins; nonsense is no hint.
        assert_eq!(
            wait_hint(
                headers(&[("Retry-After", "1"), ("X-Rate-Limit-Reset", "1700000100")]),
                now
            ),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            wait_hint(headers(&[("X-Rate-Limit-Reset", "tomorrow")]), now),
            None
        );
        assert_eq!(
            wait_hint(
                headers(&[("X-Rate-Limit-Reset", "99999999999999999999999")]),
                now
            ),
            None
        );
    }

    #[test]
    fn backoff_stays_under_the_cap() {
        for n in 0..40 {
            assert!(
                backoff(Duration::from_millis(500), n, Duration::from_secs(2))
                    <= Duration::from_secs(2)
            );
        }
    }

    #[test]
    fn the_slowest_rate_and_a_pause_never_overflow() {
        let pacing = Pacing::new(0.001);
        pacing.pause_for(Duration::ZERO);
        pacing.wait_turn().unwrap();
        // The next slot is 1000 s away: computed without overflow.
        let next = *pacing.next_slot.lock().unwrap();
        assert!(next > Instant::now() + Duration::from_secs(900));
    }
}
