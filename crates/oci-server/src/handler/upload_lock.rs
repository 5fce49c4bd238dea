//! One request at a time per upload session.
//!
//! A PATCH whose connection broke is still writing what arrived before the break when the
//! client, having seen the reset, asks where the upload stands; without an order between the
//! two, the answer is an offset the upload has already passed, and the client's resumed PATCH
//! is refused. Two PATCHes of one upload at once would also both append at the same offset.
//! So every request on an upload (PATCH, the closing PUT, the status GET, DELETE) waits for the
//! one before it to finish.
//!
//! Only uploads with a request in progress or waiting have an entry: the map is as large as the
//! requests the server is answering, never as large as the uploads it holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// The locks of the upload sessions that have requests in progress.
#[derive(Debug, Default)]
pub(crate) struct UploadLocks {
    held: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// The right to act on one upload; released, and forgotten when no one waits, on drop.
pub(crate) struct UploadTurn<'a> {
    locks: &'a UploadLocks,
    id: String,
    lock: Arc<AsyncMutex<()>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl UploadLocks {
    /// Waits until no other request is acting on upload `id`.
    pub(crate) async fn turn(&self, id: &str) -> UploadTurn<'_> {
        let lock = {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(held.entry(id.to_owned()).or_default())
        };
        let guard = Arc::clone(&lock).lock_owned().await;
        UploadTurn {
            locks: self,
            id: id.to_owned(),
            lock,
            guard: Some(guard),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for UploadTurn<'_> {
    fn drop(&mut self) {
        self.guard = None;
        let mut held = self
            .locks
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The map's reference and this one: nobody else holds or waits for the lock. Checked
        // under the map's lock, so a request cannot take a reference in between.
        if Arc::strong_count(&self.lock) == 2 {
            held.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_second_request_on_an_upload_waits_for_the_first() {
        let locks = Arc::new(UploadLocks::default());
        let first = locks.turn("a").await;
        let waiting = {
            let locks = Arc::clone(&locks);
            tokio::spawn(async move {
                let _turn = locks.turn("a").await;
            })
        };
        // Another upload is not held up.
        drop(
            tokio::time::timeout(Duration::from_secs(5), locks.turn("b"))
                .await
                .expect("upload b waited for upload a"),
        );
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the second request did not wait");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the second request never got its turn")
            .expect("the waiting task failed");
        assert_eq!(locks.len(), 0, "entries outlived their requests");
    }

    #[tokio::test]
    async fn an_entry_stays_while_someone_waits() {
        let locks = Arc::new(UploadLocks::default());
        let first = locks.turn("a").await;
        let waiting = {
            let locks = Arc::clone(&locks);
            tokio::spawn(async move { drop(locks.turn("a").await) })
        };
        // The map's reference and the first turn's two (its own and its guard's), then the
        // waiter's.
        while Arc::strong_count(&locks.held.lock().unwrap()["a"]) <= 3 {
            tokio::task::yield_now().await;
        }
        drop(first);
        assert_eq!(
            locks.len(),
            1,
            "the entry went while a request waited on it"
        );
        waiting.await.unwrap();
        assert_eq!(locks.len(), 0);
    }
}
