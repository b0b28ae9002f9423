//! Orderly-consumption queue locks of one group (digest §4.8): one owner per queue, granted to
//! a client when the queue is free, expired or already its own; a grant renews the lease. Plain
//! state owned by the `ConsumerGroup` actor; soft state, never stored (after a restart clients
//! lock again within their 20 s renewal).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a lock lives without renewal by default (Apache's
/// `rocketmq.broker.rebalance.lockMaxLiveTime`).
pub const LOCK_EXPIRY: Duration = Duration::from_secs(60);

/// A queue of a topic, as lock requests name it.
pub type QueueKey = (String, u32);

#[derive(Debug, Clone)]
struct Lease {
    client_id: String,
    connection_id: u64,
    renewed: Instant,
}

#[derive(Debug)]
pub struct QueueLocks {
    leases: HashMap<QueueKey, Lease>,
    expiry: Duration,
}

impl Default for QueueLocks {
    fn default() -> Self {
        QueueLocks::new(LOCK_EXPIRY)
    }
}

impl QueueLocks {
    pub fn new(expiry: Duration) -> Self {
        QueueLocks {
            leases: HashMap::new(),
            expiry,
        }
    }

    fn live(&self, lease: &Lease, now: Instant) -> bool {
        now.duration_since(lease.renewed) < self.expiry
    }

    /// Grants (or renews) each queue that is free, expired or already held by `client_id`;
    /// answers the granted ones, in request order.
    pub fn lock(
        &mut self,
        client_id: &str,
        connection_id: u64,
        queues: Vec<QueueKey>,
        now: Instant,
    ) -> Vec<QueueKey> {
        let mut granted = Vec::with_capacity(queues.len());
        for q in queues {
            let free = match self.leases.get(&q) {
                Some(l) => l.client_id == client_id || !self.live(l, now),
                None => true,
            };
            if free {
                let lease = Lease {
                    client_id: client_id.to_string(),
                    connection_id,
                    renewed: now,
                };
                self.leases.insert(q.clone(), lease);
                granted.push(q);
            }
        }
        granted
    }

    /// Releases the queues `client_id` holds among `queues`; others' locks stay.
    pub fn unlock(&mut self, client_id: &str, queues: &[QueueKey]) -> usize {
        let mut n = 0;
        for q in queues {
            if self.leases.get(q).is_some_and(|l| l.client_id == client_id) {
                self.leases.remove(q);
                n += 1;
            }
        }
        n
    }

    /// Releases every lock of a client (it unregistered or expired).
    pub fn release_client(&mut self, client_id: &str) -> usize {
        let before = self.leases.len();
        self.leases.retain(|_, l| l.client_id != client_id);
        before - self.leases.len()
    }

    /// Releases every lock taken over a connection that closed.
    pub fn release_connection(&mut self, connection_id: u64) -> usize {
        let before = self.leases.len();
        self.leases.retain(|_, l| l.connection_id != connection_id);
        before - self.leases.len()
    }

    /// Drops expired leases; answers how many live ones remain.
    pub fn expire(&mut self, now: Instant) -> usize {
        let expiry = self.expiry;
        self.leases
            .retain(|_, l| now.duration_since(l.renewed) < expiry);
        self.leases.len()
    }

    /// Whether any queue of the group holds a live lock (the group consumes orderly).
    pub fn any_live(&self, now: Instant) -> bool {
        self.leases.values().any(|l| self.live(l, now))
    }

    /// Leases held (live or not yet swept).
    pub fn held(&self) -> usize {
        self.leases.len()
    }

    /// The owner of a queue's live lock.
    #[cfg(test)]
    pub fn owner(&self, queue: &QueueKey, now: Instant) -> Option<&str> {
        self.leases
            .get(queue)
            .filter(|l| self.live(l, now))
            .map(|l| l.client_id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(i: u32) -> QueueKey {
        ("T".to_string(), i)
    }

    #[test]
    fn one_owner_per_queue_until_expiry() {
        let t0 = Instant::now();
        let mut l = QueueLocks::default();
        assert_eq!(l.lock("a", 1, vec![q(0), q(1)], t0), vec![q(0), q(1)]);
        // b contends: gets only the queue a does not hold.
        assert_eq!(l.lock("b", 2, vec![q(1), q(2)], t0), vec![q(2)]);
        // a renews just before expiry; b still cannot take it.
        let t1 = t0 + LOCK_EXPIRY - Duration::from_secs(1);
        assert_eq!(l.lock("a", 1, vec![q(1)], t1), vec![q(1)]);
        assert!(l.lock("b", 2, vec![q(1)], t0 + LOCK_EXPIRY).is_empty());
        // q(0) was not renewed: b takes it once the lease ran out.
        assert_eq!(l.lock("b", 2, vec![q(0)], t0 + LOCK_EXPIRY), vec![q(0)]);
        assert_eq!(l.owner(&q(0), t0 + LOCK_EXPIRY), Some("b"));
        // And q(1) too, a minute after a's renewal.
        assert_eq!(l.lock("b", 2, vec![q(1)], t1 + LOCK_EXPIRY), vec![q(1)]);
    }

    #[test]
    fn unlock_and_release() {
        let t0 = Instant::now();
        let mut l = QueueLocks::default();
        l.lock("a", 1, vec![q(0), q(1)], t0);
        l.lock("b", 2, vec![q(2)], t0);
        assert_eq!(l.unlock("b", &[q(0)]), 0, "b cannot unlock a's queue");
        assert_eq!(l.unlock("a", &[q(0)]), 1);
        assert_eq!(l.release_connection(1), 1);
        assert_eq!(l.owner(&q(1), t0), None);
        assert!(l.any_live(t0));
        assert_eq!(l.release_client("b"), 1);
        assert!(!l.any_live(t0));
        l.lock("c", 3, vec![q(5)], t0);
        assert_eq!(l.expire(t0 + LOCK_EXPIRY), 0);
    }
}
