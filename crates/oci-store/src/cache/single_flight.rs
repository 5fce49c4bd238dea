//! One fill per digest at a time: a gate per digest that is in flight, kept only while some
//! request holds or waits for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use oci_types::Digest;
use tokio::sync::OwnedMutexGuard;

type Gate = Arc<tokio::sync::Mutex<()>>;

/// The digests being filled, each with its gate.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    gates: Mutex<HashMap<Digest, Gate>>,
}

/// The right to fill one digest: while it is held, other requests for the digest wait (or stop
/// waiting and do without the cache). Dropping it lets the next one in, and forgets the gate
/// when nobody else holds or waits for it.
#[derive(Debug)]
pub(super) struct Turn {
    in_flight: Arc<InFlight>,
    digest: Digest,
    gate: Gate,
    guard: Option<OwnedMutexGuard<()>>,
}

impl InFlight {
    fn gate(&self, digest: &Digest) -> Gate {
        let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(gates.entry(digest.clone()).or_default())
    }

    /// Forgets `gate` if the only holders left are the map and the caller. Clones of a gate
    /// are made under the map's lock (or from a clone that is counted), so none appears
    /// between the count and the removal.
    fn release(&self, digest: &Digest, gate: &Gate) {
        let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        if gates.get(digest).is_some_and(|g| Arc::ptr_eq(g, gate)) && Arc::strong_count(gate) <= 2 {
            gates.remove(digest);
        }
    }

    /// Waits for `digest`'s turn, however long the fill before it takes.
    pub(super) async fn turn(self: &Arc<Self>, digest: &Digest) -> Turn {
        let gate = self.gate(digest);
        let guard = Arc::clone(&gate).lock_owned().await;
        Turn {
            in_flight: Arc::clone(self),
            digest: digest.clone(),
            gate,
            guard: Some(guard),
        }
    }

    /// Waits for `digest`'s turn for at most `wait`; `None` when another fill still holds it.
    pub(super) async fn turn_within(
        self: &Arc<Self>,
        digest: &Digest,
        wait: Duration,
    ) -> Option<Turn> {
        let gate = self.gate(digest);
        match tokio::time::timeout(wait, Arc::clone(&gate).lock_owned()).await {
            Ok(guard) => Some(Turn {
                in_flight: Arc::clone(self),
                digest: digest.clone(),
                gate,
                guard: Some(guard),
            }),
            Err(_) => {
                self.release(digest, &gate);
                None
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.gates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.in_flight.release(&self.digest, &self.gate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::sha256(&[n])
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_turn_waits_for_the_first_and_gates_are_forgotten_after() {
        let in_flight = Arc::new(InFlight::default());
        let first = in_flight.turn(&digest(1)).await;
        // Another digest is not held up.
        drop(in_flight.turn(&digest(2)).await);
        assert!(
            in_flight
                .turn_within(&digest(1), Duration::from_secs(5))
                .await
                .is_none(),
            "the first turn is still held"
        );
        assert_eq!(in_flight.len(), 1, "only the held digest's gate is kept");
        let waiting = {
            let in_flight = Arc::clone(&in_flight);
            tokio::spawn(async move { in_flight.turn(&digest(1)).await })
        };
        tokio::task::yield_now().await;
        drop(first);
        let second = waiting.await.unwrap();
        assert_eq!(in_flight.len(), 1);
        drop(second);
        assert_eq!(in_flight.len(), 0, "nobody holds or waits: forgotten");
    }
}
