//! torc-store
