//! The conformance suite, used from outside `oci-store` through its public macro, over a stack
//! of wrappers behind trait objects: a read-through cache whose remote and local stores are
//! `Arc<dyn OciInterface>` and `Box<dyn OciInterface>`.

use std::sync::Arc;

use oci_store::conformance::Fixture;
use oci_store::{Cached, MemoryStore, OciInterface};

fn stacked() -> Fixture {
    let remote = MemoryStore::new();
    let corrupter = remote.conformance_corrupter();
    let remote: Arc<dyn OciInterface> = Arc::new(remote);
    let local: Box<dyn OciInterface> = Box::new(MemoryStore::new());
    Fixture::new(Cached::new(remote, local)).with_corrupter(corrupter)
}

mod cached_behind_trait_objects {
    oci_store::conformance_tests!(|| async { super::stacked() });
}
