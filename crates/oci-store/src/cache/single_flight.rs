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

/// One request's hold on a digest's gate (waiting for it or holding it). The gate is
/// forgotten by the last hold to go, whichever way it goes (cancelled included): each hold's
/// own clone of the gate is dropped under the map's lock, after any other clone the hold made
/// (a lock's guard or a waiting future).
#[derive(Debug)]
struct Hold {
    in_flight: Arc<InFlight>,
    digest: Digest,
    gate: Option<Gate>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut gates = self
            .in_flight
            .gates
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        drop(self.gate.take());
        if gates
            .get(&self.digest)
            .is_some_and(|gate| Arc::strong_count(gate) == 1)
        {
            gates.remove(&self.digest);
        }
    }
}

/// The right to fill one digest: while it is held, other requests for the digest wait (or stop
/// waiting and do without the cache). Dropping it lets the next one in, and forgets the gate
/// when nobody else holds or waits for it.
#[derive(Debug)]
pub(super) struct Turn {
    // Dropped in this order: the guard before the hold.
    _guard: OwnedMutexGuard<()>,
    _hold: Hold,
}

impl InFlight {
    fn hold(self: &Arc<Self>, digest: &Digest) -> (Hold, Gate) {
        let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        let gate = Arc::clone(gates.entry(digest.clone()).or_default());
        let hold = Hold {
            in_flight: Arc::clone(self),
            digest: digest.clone(),
            gate: Some(Arc::clone(&gate)),
        };
        (hold, gate)
    }

    /// Waits for `digest`'s turn, however long the fill before it takes.
    pub(super) async fn turn(self: &Arc<Self>, digest: &Digest) -> Turn {
        let (hold, gate) = self.hold(digest);
        let guard = gate.lock_owned().await;
        Turn {
            _guard: guard,
            _hold: hold,
        }
    }

    /// Waits for `digest`'s turn for at most `wait`; `None` when another fill still holds it.
    pub(super) async fn turn_within(
        self: &Arc<Self>,
        digest: &Digest,
        wait: Duration,
    ) -> Option<Turn> {
        let (hold, gate) = self.hold(digest);
        let guard = tokio::time::timeout(wait, gate.lock_owned()).await.ok()?;
        Some(Turn {
            _guard: guard,
            _hold: hold,
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.gates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
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
