//! Receipt handles: what a consumer of the invisible-time mechanism gets with each delivery
//! and gives back to ack it or change its invisible time. Pure: no actor, no storage.
//!
//! A handle names one delivery — queue, queue offset, delivery attempt and deadline — and
//! carries a check value, the first 8 bytes of HMAC-SHA1 under the broker's handle key over
//! those fields plus group and topic. A forged or altered handle, or one of another group or
//! topic, fails the check without a lookup; a stale or used one (its delivery was acked,
//! redelivered or moved) fails against the `pop` state.
//!
//! Text form: `{queue}_{offset}_{attempt}_{deadline ms}_{check, 16 hex}`. A transactional
//! half message's handle (HTTP publish, `trans=pop`) is `T{sequence}_{check}`.

use hmac::{KeyInit, Mac};

type HmacSha1 = hmac::Hmac<sha1::Sha1>;

/// One delivery, as its receipt handle names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptHandle {
    pub queue_id: u32,
    pub offset: u64,
    pub attempt: u32,
    pub deadline_ms: i64,
}

/// Why a handle was refused (per handle, the request goes on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// Not a handle of ours, or of another group or topic, or altered.
    #[error("The receipt handle you provide is not valid.")]
    Invalid,
    /// A handle of ours whose delivery is over: acked, redelivered with a new handle, or
    /// moved to the dead-letter queue.
    #[error("The receipt handle you provided has expired.")]
    Expired,
}

/// The broker's secret for handle check values (random, kept in `meta` so handles outlive a
/// restart).
#[derive(Clone)]
pub struct HandleKey([u8; 32]);

impl std::fmt::Debug for HandleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandleKey(..)")
    }
}

impl HandleKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        HandleKey(bytes)
    }

    fn check(&self, parts: &[&[u8]]) -> u64 {
        let Ok(mut mac) = HmacSha1::new_from_slice(&self.0) else {
            return 0; // HMAC takes keys of any length; unreachable.
        };
        for p in parts {
            mac.update(p);
            mac.update(&[0]);
        }
        let out = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&out[..8]);
        u64::from_be_bytes(first)
    }

    fn delivery_check(&self, group: &str, topic: &str, h: &ReceiptHandle) -> u64 {
        self.check(&[
            b"pop",
            group.as_bytes(),
            topic.as_bytes(),
            &h.queue_id.to_be_bytes(),
            &h.offset.to_be_bytes(),
            &h.attempt.to_be_bytes(),
            &h.deadline_ms.to_be_bytes(),
        ])
    }

    /// The text of a delivery's handle for `group` on `topic`.
    pub fn encode(&self, group: &str, topic: &str, h: &ReceiptHandle) -> String {
        format!(
            "{}_{}_{}_{}_{:016x}",
            h.queue_id,
            h.offset,
            h.attempt,
            h.deadline_ms,
            self.delivery_check(group, topic, h)
        )
    }

    /// Parses and checks a delivery's handle; anything malformed or unchecked is `Invalid`.
    pub fn decode(
        &self,
        group: &str,
        topic: &str,
        text: &str,
    ) -> Result<ReceiptHandle, HandleError> {
        let mut parts = text.trim().split('_');
        let mut next = || parts.next().ok_or(HandleError::Invalid);
        let queue_id = next()?.parse().map_err(|_| HandleError::Invalid)?;
        let offset = next()?.parse().map_err(|_| HandleError::Invalid)?;
        let attempt = next()?.parse().map_err(|_| HandleError::Invalid)?;
        let deadline_ms = next()?.parse().map_err(|_| HandleError::Invalid)?;
        let check = parse_check(next()?)?;
        if parts.next().is_some() {
            return Err(HandleError::Invalid);
        }
        let h = ReceiptHandle {
            queue_id,
            offset,
            attempt,
            deadline_ms,
        };
        if check != self.delivery_check(group, topic, &h) {
            return Err(HandleError::Invalid);
        }
        Ok(h)
    }

    /// The handle of a transactional half message (its sequence) of `topic`.
    pub fn encode_half(&self, topic: &str, seq: u64) -> String {
        let check = self.check(&[b"half", topic.as_bytes(), &seq.to_be_bytes()]);
        format!("T{seq}_{check:016x}")
    }

    /// The half message's sequence, when the handle is ours and of `topic`.
    pub fn decode_half(&self, topic: &str, text: &str) -> Result<u64, HandleError> {
        let rest = text.trim().strip_prefix('T').ok_or(HandleError::Invalid)?;
        let (seq, check) = rest.split_once('_').ok_or(HandleError::Invalid)?;
        let seq: u64 = seq.parse().map_err(|_| HandleError::Invalid)?;
        let check = parse_check(check)?;
        if check != self.check(&[b"half", topic.as_bytes(), &seq.to_be_bytes()]) {
            return Err(HandleError::Invalid);
        }
        Ok(seq)
    }
}

/// A check value: exactly 16 hex digits.
fn parse_check(s: &str) -> Result<u64, HandleError> {
    if s.len() != 16 {
        return Err(HandleError::Invalid);
    }
    u64::from_str_radix(s, 16).map_err(|_| HandleError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> HandleKey {
        HandleKey::new([7; 32])
    }

    #[test]
    fn a_handle_round_trips_and_names_its_delivery() {
        let h = ReceiptHandle {
            queue_id: 3,
            offset: 42,
            attempt: 2,
            deadline_ms: 1_700_000_000_123,
        };
        let text = key().encode("G", "T", &h);
        assert_eq!(key().decode("G", "T", &text), Ok(h));
    }

    #[test]
    fn forged_altered_or_foreign_handles_are_invalid() {
        let h = ReceiptHandle {
            queue_id: 0,
            offset: 1,
            attempt: 1,
            deadline_ms: 5,
        };
        let text = key().encode("G", "T", &h);
        assert_eq!(key().decode("G2", "T", &text), Err(HandleError::Invalid));
        assert_eq!(key().decode("G", "T2", &text), Err(HandleError::Invalid));
        assert_eq!(
            HandleKey::new([8; 32]).decode("G", "T", &text),
            Err(HandleError::Invalid)
        );
        let altered = text.replacen("0_1_", "0_2_", 1);
        assert_eq!(key().decode("G", "T", &altered), Err(HandleError::Invalid));
        for junk in [
            "",
            "abc",
            "1_2_3_4",
            "1_2_3_4_zz",
            "1_2_3_4_0123456789abcdef_9",
            "\u{1F600}",
        ] {
            assert_eq!(
                key().decode("G", "T", junk),
                Err(HandleError::Invalid),
                "{junk}"
            );
        }
    }

    #[test]
    fn half_handles_are_checked_too() {
        let text = key().encode_half("T", 99);
        assert_eq!(key().decode_half("T", &text), Ok(99));
        assert_eq!(key().decode_half("U", &text), Err(HandleError::Invalid));
        assert_eq!(
            key().decode_half("T", "T99_0000000000000000"),
            Err(HandleError::Invalid)
        );
        assert_eq!(key().decode_half("T", "garbage"), Err(HandleError::Invalid));
    }
}
